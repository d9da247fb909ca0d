"""Set-based writes, one path per dialect.

SQLite: the driver's `executemany` of one prepared INSERT inside the transaction (in-process,
no round trips: the fastest path SQLite has). PostgreSQL: one `INSERT … SELECT * FROM unnest(…)` per
table and call — every column travels as one array parameter, so a batch of any size is a
single statement with a fixed SQL text (no bind-parameter limit, nothing to re-compile).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

PG_CHUNK_ROWS = 20_000


def pg_array_type(type_: Any) -> str:
    """The PostgreSQL array type to send a column's values as."""
    if isinstance(type_, sa.types.TypeDecorator):
        type_ = type_.impl
    if isinstance(type_, sa.BigInteger):
        return "int8[]"
    if isinstance(type_, sa.Integer):
        return "int4[]"
    if isinstance(type_, sa.Boolean):
        return "bool[]"
    if isinstance(type_, sa.DateTime):
        return "timestamptz[]"
    return "text[]"


def _sqlite_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "datetime":  # the text form SQLAlchemy's SQLite DateTime stores (naive UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if kind == "bool":
        return int(value)
    return value


def _sqlite_kind(type_: Any) -> str:
    if isinstance(type_, sa.types.TypeDecorator):
        type_ = type_.impl
    if isinstance(type_, sa.DateTime):
        return "datetime"
    if isinstance(type_, sa.Boolean):
        return "bool"
    return "plain"


def insert_many(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = list(rows[0].keys())
    if conn.dialect.name != "postgresql":
        # The driver's executemany directly, values converted as SQLAlchemy would store them:
        # the per-row work of the generic path costs more than SQLite's own insert.
        kinds = [_sqlite_kind(table.c[c].type) for c in cols]
        sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        if all(k == "plain" for k in kinds):
            data = [tuple(r.get(c) for c in cols) for r in rows]
        else:
            data = [tuple(_sqlite_value(k, r.get(c)) for k, c in zip(kinds, cols, strict=True)) for r in rows]
        conn.exec_driver_sql(sql, data)
        return
    arrays = ", ".join(f"%s::{pg_array_type(table.c[c].type)}" for c in cols)
    sql = f"INSERT INTO {table.name} ({', '.join(cols)}) SELECT * FROM unnest({arrays})"
    for start in range(0, len(rows), PG_CHUNK_ROWS):
        chunk = rows[start : start + PG_CHUNK_ROWS]
        conn.exec_driver_sql(sql, tuple([r.get(c) for r in chunk] for c in cols))
