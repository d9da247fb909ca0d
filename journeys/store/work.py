"""Claiming due work and writing a batch's effects: one claim statement per dialect.

SQLite: the claim runs inside the worker's `BEGIN IMMEDIATE` transaction, so the worker is
the only writer until it commits. PostgreSQL: `FOR UPDATE SKIP LOCKED` lets many workers
claim disjoint batches; the rows stay locked until the batch commits, so a cancel or subflow
either waits for the step to finish or (if it came first) makes the worker's `rev` guard fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.bulk import insert_many
from journeys.store.tables import ACTIVE_LITERAL, UTCDateTime, instance_events, journey_instances, outbox

ji = journey_instances

_CLAIM_COLUMNS = (
    "org_id, instance_id, journey_id, version, flow_id, step_id, time_zone, parameters, state, rev, attempts"
)

_CLAIM_WHERE = (
    "WHERE status = 'InProgress' AND due_at IS NOT NULL AND due_at <= :now ORDER BY due_at LIMIT :limit"
)
_BINDS = (sa.bindparam("now", type_=UTCDateTime()), sa.bindparam("limit", type_=sa.Integer()))

CLAIM_SQL = {
    "sqlite": sa.text(f"SELECT {_CLAIM_COLUMNS} FROM journey_instances {_CLAIM_WHERE}").bindparams(*_BINDS),
    "postgresql": sa.text(
        f"SELECT {_CLAIM_COLUMNS} FROM journey_instances {_CLAIM_WHERE} FOR UPDATE SKIP LOCKED"
    ).bindparams(*_BINDS),
}


def claim_due(conn: Connection, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Lock and return up to `limit` due instances, earliest first."""
    sql = CLAIM_SQL["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    return [dict(r) for r in conn.execute(sql, {"now": now, "limit": limit}).mappings()]


def next_due(conn: Connection) -> datetime | None:
    """The earliest due time of any active instance (served by the partial due index)."""
    q = sa.select(sa.func.min(ji.c.due_at, type_=UTCDateTime())).where(
        ji.c.status == ACTIVE_LITERAL, ji.c.due_at.is_not(None)
    )
    return conn.execute(q).scalar()


def write_instance_updates(conn: Connection, updates: Sequence[dict[str, Any]]) -> int:
    """Apply the new cursors in one executemany, guarded by `rev`. Returns rows changed."""
    if not updates:
        return 0
    stmt = (
        ji.update()
        .where(
            ji.c.org_id == sa.bindparam("b_org_id"),
            ji.c.instance_id == sa.bindparam("b_instance_id"),
            ji.c.rev == sa.bindparam("b_rev"),  # every other change bumps rev: this is the guard
        )
        .values(
            status=sa.bindparam("status"),
            flow_id=sa.bindparam("flow_id"),
            step_id=sa.bindparam("step_id"),
            due_at=sa.bindparam("due_at"),
            state=sa.bindparam("state"),
            parameters=sa.bindparam("parameters"),
            attempts=sa.bindparam("attempts"),
            last_error=sa.bindparam("last_error"),
            last_event_at=sa.func.coalesce(
                sa.bindparam("last_event_at", type_=ji.c.last_event_at.type), ji.c.last_event_at
            ),
            last_flow_name=sa.func.coalesce(
                sa.bindparam("last_flow_name", type_=sa.Text), ji.c.last_flow_name
            ),
            last_step_id=sa.func.coalesce(sa.bindparam("last_step_id", type_=sa.Integer), ji.c.last_step_id),
            ended_at=sa.bindparam("ended_at"),
            rev=ji.c.rev + 1,
        )
    )
    return int(conn.execute(stmt, list(updates)).rowcount or 0)


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    insert_many(conn, instance_events, rows)


def insert_messages(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    insert_many(conn, outbox, rows)
