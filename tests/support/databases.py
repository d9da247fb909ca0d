"""Databases for tests: the PostgreSQL server the suite may use, and a database of a test's own
on the backend the suite runs on (`JOURNEYS_TEST_DATABASE`)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from journeys.store.db import create_db_engine
from journeys.store.migrate import upgrade

PG_ADMIN_URL = os.environ.get("JOURNEYS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def on_postgresql() -> bool:
    """Whether the suite runs on PostgreSQL (`JOURNEYS_TEST_DATABASE=postgresql`)."""
    return os.environ.get("JOURNEYS_TEST_DATABASE", "sqlite") == "postgresql"


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        engine = create_db_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {type(exc).__name__}"


def require_postgres() -> None:
    reason = postgres_available()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
    pytest.skip(reason)


def make_postgres_database() -> tuple[str, Callable[[], None]]:
    """Create a fresh database; returns (url, drop callable)."""
    name = f"journeys_test_{uuid.uuid4().hex[:10]}"
    admin = create_db_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return url, drop


_template: list[Path] = []  # the migrated SQLite file, made once per test run


def migrated_sqlite(directory: Path, name: str = "journeys.db") -> str:
    """The URL of a new SQLite file `directory / name` holding the schema at the latest
    migration: a copy of one file migrated once per run (what a server's start-up would make
    of an empty file; test_schema and the CLI tests migrate empty files themselves)."""
    if not _template:
        folder = Path(tempfile.mkdtemp(prefix="journeys-template-"))
        atexit.register(shutil.rmtree, folder, True)
        engine = create_db_engine(f"sqlite:///{folder / 'template.db'}")
        upgrade(engine)
        engine.dispose()  # the last connection closed: the WAL is checkpointed into the file
        _template.append(folder / "template.db")
    shutil.copyfile(_template[0], directory / name)
    return f"sqlite:///{directory / name}"


@contextmanager
def own_database(directory: Path, name: str = "journeys.db") -> Iterator[str]:
    """A database of the caller's own on the suite's backend: a fresh PostgreSQL database
    (dropped at the end), or the SQLite file `directory / name`, migrated."""
    if not on_postgresql():
        yield migrated_sqlite(directory, name)
        return
    require_postgres()
    url, drop = make_postgres_database()
    try:
        yield url
    finally:
        drop()
