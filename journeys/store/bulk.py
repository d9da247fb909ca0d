"""Set-based writes, one path per dialect.

SQLite: `executemany` of one prepared INSERT inside the transaction (in-process, no round
trips: the fastest path SQLite has). PostgreSQL: multi-row `INSERT … VALUES (…), (…)`
statements, each within the 65,535-bind-parameter limit of the wire protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

PG_MAX_BINDS = 65_535
PG_MAX_ROWS = 2_000


def insert_many(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), list(rows))
        return
    per_statement = max(1, min(PG_MAX_ROWS, PG_MAX_BINDS // max(1, len(rows[0]))))
    for start in range(0, len(rows), per_statement):
        conn.execute(table.insert().values(list(rows[start : start + per_statement])))
