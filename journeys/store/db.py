"""Database engines.

SQLite: WAL journal, a busy timeout, and `BEGIN IMMEDIATE` for every transaction that may
write, so two writers queue on the lock instead of failing with SQLITE_BUSY halfway through.
Read-only work opens its transaction with `read_only(conn)` (a deferred BEGIN) and does not
wait for writers. PostgreSQL: psycopg 3 with a pool sized by configuration.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 10


def normalise_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def create_db_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
        )
        _configure_sqlite(engine)
        return engine
    # A bounded wait for a server that does not answer (libpq waits indefinitely by default).
    connect_args = {} if "connect_timeout=" in url else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args=connect_args,
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("journeys_read_only"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A connection in a read transaction (deferred on SQLite), rolled back at the end."""
    with engine.connect() as conn:
        conn = conn.execution_options(journeys_read_only=True)
        with conn.begin():
            yield conn


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction, committed at the end (rolled back on error)."""
    with engine.begin() as conn:
        yield conn


def check_database(engine: Engine, timeout: float) -> None:
    """Raise unless the database answers a query within `timeout` seconds (the readiness check).

    PostgreSQL: `SELECT 1` on a pooled connection (pre-pinged, so a restarted server is found
    out) under a statement timeout. SQLite: a new connection to the file, opened read-write
    without creating it, reads the schema — the pool's open connections would go on reading a
    file that has been deleted or replaced."""
    if engine.dialect.name == "sqlite":
        _check_sqlite_file(engine, timeout)
        return
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
        conn.exec_driver_sql("SELECT 1").scalar_one()


def _check_sqlite_file(engine: Engine, timeout: float) -> None:
    path = engine.url.database or ""
    if path in ("", ":memory:"):
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1").scalar_one()
        return
    conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=timeout)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()
