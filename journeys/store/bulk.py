"""Set-based writes, one path per dialect.

SQLite: the driver's `executemany` of one prepared INSERT inside the transaction (in-process,
no round trips: the fastest path SQLite has). PostgreSQL: `COPY … FROM STDIN` on the
transaction's own connection — one statement per table and call, rows streamed without a
bind-parameter limit; 2–3 times the rows per second of `INSERT … SELECT FROM unnest(arrays)`
on this project's tables (bench/README.md). Driver errors are re-raised as SQLAlchemy's, so a
unique violation is an `IntegrityError` and a lost connection is recognised as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

PG_SMALL_ROWS = 20


def one_of(conn: Connection, column: Any, values: Sequence[Any]) -> Any:
    """`column IN (values)`; on PostgreSQL `column = ANY(:array)` — one bind parameter, so the
    statement is compiled and planned alike whatever the number of values."""
    if conn.dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(list(values))


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


def sqlite_rows(columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Parameter tuples for the driver, column by column: `columns` is (key, kind) with kind
    "datetime" (stored as SQLAlchemy's SQLite DateTime stores it: naive UTC text; a batch's rows
    mostly share their times, so each distinct value is formatted once), "bool" or "plain"."""
    data: list[list[Any]] = []
    for key, kind in columns:
        values = [r.get(key) for r in rows]
        if kind == "datetime":
            memo: dict[Any, str] = {}
            for i, v in enumerate(values):
                if v is not None:
                    text = memo.get(v)
                    if text is None:
                        text = memo[v] = v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
                    values[i] = text
        elif kind == "bool":
            values = [None if v is None else int(v) for v in values]
        data.append(values)
    return list(zip(*data, strict=True))


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
        sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        data = sqlite_rows([(c, _sqlite_kind(table.c[c].type)) for c in cols], rows)
        conn.exec_driver_sql(sql, data)
        return
    if len(rows) <= PG_SMALL_ROWS:  # a COPY costs more round trips than one small INSERT
        conn.execute(table.insert(), [dict(r) for r in rows])
        return
    _pg_copy(conn, table.name, cols, rows)


def _pg_copy(conn: Connection, table: str, cols: list[str], rows: Sequence[dict[str, Any]]) -> None:
    import psycopg

    sql = f"COPY {table} ({', '.join(cols)}) FROM STDIN"
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(sql) as copy:
            write = copy.write_row
            for r in rows:
                write(tuple([r.get(c) for c in cols]))
    except psycopg.Error as exc:
        # No values in the message (hide_parameters): the statement names only table and columns.
        raise sa.exc.DBAPIError.instance(
            sql, None, exc, psycopg.Error, hide_parameters=True, dialect=conn.dialect,
            connection_invalidated=conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor),
        ) from exc  # fmt: skip
    finally:
        cursor.close()
