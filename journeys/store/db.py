"""Database engines.

SQLite: WAL journal, a busy timeout, and `BEGIN IMMEDIATE` for every transaction that may
write, so two writers queue on the lock instead of failing with SQLITE_BUSY halfway through.
Read-only work opens its transaction with `read_only(conn)` (a deferred BEGIN) and does not
wait for writers. PostgreSQL: psycopg 3 with a pool sized by configuration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

SQLITE_BUSY_TIMEOUT_MS = 30_000


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
    return sa.create_engine(
        url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True, hide_parameters=True
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
