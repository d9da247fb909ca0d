"""Set-based writes and key look-ups, as each database does them fastest (the backends:
SQLite, the driver's `executemany` of one prepared INSERT; PostgreSQL, `COPY … FROM STDIN`
and keys as one array)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.backends import backend_for


def one_of(conn: Connection, column: Any, values: Sequence[Any]) -> Any:
    """`column IN (values)`; on PostgreSQL `column = ANY(:array)` — one bind parameter, so the
    statement is compiled and planned alike whatever the number of values."""
    return backend_for(conn).one_of(column, values)


def insert_many(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (dicts with the same keys) in the fewest round trips. Driver errors are
    SQLAlchemy's, so a unique violation is an `IntegrityError`."""
    backend_for(conn).insert_many(conn, table, rows)
