"""The schema: the same Alembic migrations give the same schema on SQLite and PostgreSQL, it
matches the SQLAlchemy tables, and every table leads its primary key with org_id."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.databases import make_postgres_database, require_postgres

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


@pytest.mark.same_on_every_database
def test_every_table_leads_its_primary_key_with_org_id(tmp_path: Path) -> None:
    schema = _describe(_migrated_sqlite(tmp_path))
    assert set(schema) == set(metadata.tables)
    for table, info in schema.items():
        if table in NOT_TENANT_DATA:
            continue
        assert "org_id" in info["columns"], table
        assert info["pk"][0] == "org_id", (table, info["pk"])


@pytest.mark.same_on_every_database
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


@pytest.mark.same_on_every_database
def test_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    engine = _migrated_sqlite(tmp_path)
    before = _describe(engine)
    upgrade(engine)
    assert _describe(engine) == before
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar_one() == 1


# ---------------------------------------------------------------------------- docs/operations.md
OPERATIONS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def _citus_section() -> str:
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.index("## Distributing by org (Citus)")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _leads_with_org_id(table: sa.Table) -> bool:
    pk = list(table.primary_key.columns)
    return bool(pk) and pk[0].name == "org_id"


@pytest.mark.same_on_every_database
def test_the_citus_section_places_every_table(tmp_path: Path) -> None:
    """docs/operations.md's Citus section names every table (so a new one cannot be forgotten):
    each once in its table of placements and once in its SQL, as a reference table or
    distributed by org_id; only tables that lead their primary key with org_id are distributed."""
    section = _citus_section()
    tables = set(metadata.tables)
    assert set(_describe(_migrated_sqlite(tmp_path))) == tables  # the tables are what migrations make

    placed = [
        name
        for row in re.findall(r"^\|(.*?)\|", section, flags=re.MULTILINE)
        for name in re.findall(r"`([a-z_]+)`", row)
    ]
    assert sorted(placed) == sorted(tables), f"not placed: {tables - set(placed)}; twice or unknown: {placed}"

    reference = re.findall(r"create_reference_table\('([a-z_]+)'\)", section)
    distributed = re.findall(r"create_distributed_table\('([a-z_]+)', 'org_id'", section)
    in_sql = reference + distributed
    assert sorted(in_sql) == sorted(tables), f"not in the SQL: {tables - set(in_sql)}; all: {in_sql}"
    for name in distributed:
        assert _leads_with_org_id(metadata.tables[name]), f"{name} is distributed by org_id"


@pytest.mark.same_on_every_database
def test_the_citus_section_says_which_tables_have_no_org_id() -> None:
    """The claim "Every table but X carries `org_id` and leads its primary key with it" names
    exactly the tables that do not, and those are reference tables."""
    section = _citus_section()
    claim = re.search(r"Every table but (.+?) carries `org_id` and leads its primary key with it", section)
    assert claim, "the section states which tables carry org_id"
    named = set(re.findall(r"`([a-z_]+)`", claim.group(1)))
    without = {name for name, table in metadata.tables.items() if not _leads_with_org_id(table)}
    assert named == without
    assert without <= NOT_TENANT_DATA
    reference = set(re.findall(r"create_reference_table\('([a-z_]+)'\)", section))
    assert without <= reference
