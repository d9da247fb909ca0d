"""The schema: the same Alembic migrations give the same schema on SQLite and PostgreSQL, it
matches the SQLAlchemy tables, and every table leads its primary key with org_id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from conftest import make_postgres_database, require_postgres

from journeys.store.db import create_db_engine
from journeys.store.migrate import upgrade
from journeys.store.tables import metadata


def _describe(engine: sa.Engine) -> dict[str, Any]:
    insp = sa.inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        if table == "alembic_version":
            continue
        cols = {c["name"]: (c["nullable"], _kind(c["type"])) for c in insp.get_columns(table)}
        pk = tuple(insp.get_pk_constraint(table)["constrained_columns"])
        indexes = {
            i["name"]: (tuple(i["column_names"]), bool(i["unique"]))
            for i in insp.get_indexes(table)
            # PostgreSQL also lists the index behind each unique constraint; compare constraints once.
            if not i["name"].startswith("sqlite_autoindex") and not i.get("duplicates_constraint")
        }
        uniques = {u["name"]: tuple(u["column_names"]) for u in insp.get_unique_constraints(table)}
        out[table] = {"columns": cols, "pk": pk, "indexes": indexes, "uniques": uniques}
    return out


def _kind(type_: Any) -> str:
    """A portable name for a column type (dialects spell them differently)."""
    name = type(type_).__name__.upper()
    if "INT" in name:
        return "integer"
    if "TIME" in name or "DATE" in name:
        return "datetime"
    return "text"


def _migrated_sqlite(tmp_path: Path) -> sa.Engine:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'schema.db'}")
    upgrade(engine)
    return engine


# Operational tables that hold no tenant data (reference tables when distributed by org).
NOT_TENANT_DATA = {"worker_heartbeats"}


def test_every_table_leads_its_primary_key_with_org_id(tmp_path: Path) -> None:
    schema = _describe(_migrated_sqlite(tmp_path))
    assert set(schema) == set(metadata.tables)
    for table, info in schema.items():
        if table in NOT_TENANT_DATA:
            continue
        assert "org_id" in info["columns"], table
        assert info["pk"][0] == "org_id", (table, info["pk"])


def test_migrations_match_the_table_definitions(tmp_path: Path) -> None:
    """Migrating to head gives exactly the tables, columns and indexes tables.py declares."""
    migrated = _describe(_migrated_sqlite(tmp_path))
    declared = create_db_engine(f"sqlite:///{tmp_path / 'declared.db'}")
    metadata.create_all(declared)
    assert migrated == _describe(declared)


def test_migrations_give_the_same_schema_on_sqlite_and_postgresql(tmp_path: Path) -> None:
    require_postgres()
    url, drop = make_postgres_database()
    try:
        pg = create_db_engine(url)
        upgrade(pg)
        assert _describe(pg) == _describe(_migrated_sqlite(tmp_path))
        pg.dispose()
    finally:
        drop()


def test_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    engine = _migrated_sqlite(tmp_path)
    before = _describe(engine)
    upgrade(engine)
    assert _describe(engine) == before
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar_one() == 1
