"""Claiming due work and writing a batch's effects: one claim statement per dialect.

SQLite: the claim runs inside the worker's `BEGIN IMMEDIATE` transaction, so the worker is
the only writer until it commits. PostgreSQL: `FOR UPDATE SKIP LOCKED` lets many workers
claim disjoint batches; the rows stay locked until the batch commits, so a cancel or subflow
either waits for the step to finish or (if it came first) makes the worker's `rev` guard fail.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.bulk import insert_many
from journeys.store.tables import (
    ACTIVE_LITERAL,
    UTCDateTime,
    instance_events,
    instance_parameters,
    journey_instances,
    outbox,
)

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
            waiting_reply_phone=sa.bindparam("waiting_reply_phone"),
            rev=ji.c.rev + 1,
        )
    )
    return int(conn.execute(stmt, list(updates)).rowcount or 0)


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    insert_many(conn, instance_events, rows)


def insert_messages(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    insert_many(conn, outbox, rows)


def replace_parameters(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert searchable parameter rows changed by steps (delete by key, then insert)."""
    if not rows:
        return
    ip = instance_parameters
    conn.execute(
        ip.delete().where(
            ip.c.org_id == sa.bindparam("b_org_id"),
            ip.c.instance_id == sa.bindparam("b_instance_id"),
            ip.c.name == sa.bindparam("b_name"),
        ),
        [{"b_org_id": r["org_id"], "b_instance_id": r["instance_id"], "b_name": r["name"]} for r in rows],
    )
    insert_many(conn, ip, rows)


def store_http_result(
    conn: Connection,
    org_id: str,
    instance_id: str,
    rev: int,
    step_id: int,
    result: dict[str, Any],
    now: datetime,
) -> bool:
    """Record an http_request step's result and make the instance due now. Guarded by `rev`:
    False (nothing written) when the instance changed since the call was decided."""
    row = conn.execute(
        sa.select(ji.c.state).where(ji.c.org_id == org_id, ji.c.instance_id == instance_id, ji.c.rev == rev)
    ).first()
    if row is None:
        return False
    state = json.loads(row[0] or "{}")
    state.setdefault("http", {})[str(step_id)] = result
    changed = conn.execute(
        ji.update()
        .where(
            ji.c.org_id == org_id,
            ji.c.instance_id == instance_id,
            ji.c.rev == rev,
            ji.c.status == "InProgress",
        )
        .values(state=json.dumps(state, separators=(",", ":")), due_at=now, rev=ji.c.rev + 1)
    ).rowcount
    return bool(changed)


class SmsLedger:
    """SMS per (org, phone) for frequency caps: the capped outbox rows of the last 8 days (queued
    or sent), read once per phone per batch, plus what this batch adds."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._times: dict[tuple[str, str], list[datetime]] = {}

    def _load(self, org_id: str, phone: str, since: datetime) -> list[datetime]:
        key = (org_id, phone)
        times = self._times.get(key)
        if times is None:
            q = sa.select(outbox.c.created_at).where(
                outbox.c.org_id == org_id,
                outbox.c.to_address == phone,
                outbox.c.created_at >= since - timedelta(days=8),
                outbox.c.capped.is_(True),
                outbox.c.status.in_(("queued", "sent")),
            )
            times = [r[0] for r in self.conn.execute(q)]
            self._times[key] = times
        return times

    def prefetch(self, pairs: set[tuple[str, str]], now: datetime) -> None:
        """Load the last 8 days of SMS for many (org, phone) pairs at once: one query per org
        and chunk, instead of one per phone."""
        by_org: dict[str, list[str]] = {}
        for org_id, phone in pairs:
            if (org_id, phone) not in self._times:
                by_org.setdefault(org_id, []).append(phone)
        for org_id, phones in by_org.items():
            for start in range(0, len(phones), 500):
                chunk = phones[start : start + 500]
                for phone in chunk:
                    self._times[(org_id, phone)] = []
                q = sa.select(outbox.c.to_address, outbox.c.created_at).where(
                    outbox.c.org_id == org_id,
                    outbox.c.to_address.in_(chunk),
                    outbox.c.created_at >= now - timedelta(days=8),
                    outbox.c.capped.is_(True),
                    outbox.c.status.in_(("queued", "sent")),
                )
                for phone, created in self.conn.execute(q):
                    self._times[(org_id, phone)].append(created)

    def count(self, org_id: str, phone: str, since: datetime) -> int:
        return sum(1 for t in self._load(org_id, phone, since) if t >= since)

    def add(self, org_id: str, phone: str, at: datetime) -> None:
        self._load(org_id, phone, at).append(at)
