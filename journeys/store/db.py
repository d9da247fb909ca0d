"""Database engines.

SQLite: WAL journal, a busy timeout, and `BEGIN IMMEDIATE` for every transaction that may
write, so two writers queue on the lock instead of failing with SQLITE_BUSY halfway through.
Read-only work opens its transaction with `read_only(conn)` (a deferred BEGIN) and does not
wait for writers. PostgreSQL: psycopg 3 with a pool sized by configuration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine

from journeys.store.backends import backend_for, backend_for_url, normalise_url

__all__ = ["check_database", "create_db_engine", "normalise_url", "read_only", "rolled_back", "transaction"]


def create_db_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> Engine:
    url = normalise_url(url)
    return backend_for_url(url).create_engine(url, pool_size=pool_size, max_overflow=max_overflow)


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


@contextmanager
def rolled_back(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction that is always rolled back: a dry run sees what it
    wrote (a later chunk sees an earlier chunk's identifiers) and leaves nothing behind."""
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            yield conn
        finally:
            tx.rollback()


def check_database(engine: Engine, timeout: float) -> None:
    """Raise unless the database answers a query within `timeout` seconds (the readiness check).

    PostgreSQL: `SELECT 1` on a pooled connection (pre-pinged, so a restarted server is found
    out) under a statement timeout. SQLite: a new connection to the file, opened read-write
    without creating it, reads the schema — the pool's open connections would go on reading a
    file that has been deleted or replaced."""
    backend_for(engine).check_database(engine, timeout)
