"""Claiming due work and writing a batch's effects.

A batch is claimed by one statement that stamps the batch's token into `lease_owner` and moves
`due_at` to the lease's expiry, and commits. The instances are then invisible to other
workers' claims until the lease expires — so a worker that dies simply lets its lease run out,
and the same claim statement recovers the work. While a batch runs its lease is renewed. The
batch's effects are written in a second transaction whose cursor update is the guard: it
changes only rows still leased to this batch at the revision it read (a cancel, subflow or
reply in between bumps `rev` and clears the lease, so it wins), and only the instances it
changed get their events and messages written.

The claim and cursor-update statements are the backends' (journeys/store/backends): on
PostgreSQL the claim's subquery takes `FOR UPDATE SKIP LOCKED`, so concurrent workers claim
disjoint batches without waiting on each other; SQLite transactions are exclusive writers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from journeys.store import events
from journeys.store.backends import CursorUpdateSpec, backend_for
from journeys.store.backends.base import Listener
from journeys.store.bulk import insert_many, one_of
from journeys.store.consent import OptOutCache
from journeys.store.tables import (
    ACTIVE_LITERAL,
    UTCDateTime,
    journey_instances,
    org_channels,
    outbox,
    worker_heartbeats,
)

ji = journey_instances
Key = tuple[str, str]  # (org_id, instance_id)


def claim_due(
    conn: Connection, now: datetime, limit: int, token: str, lease: timedelta
) -> list[dict[str, Any]]:
    """Lease up to `limit` due instances (earliest due first) to the batch `token`."""
    sql = backend_for(conn).claim_due_sql
    params = {"now": now, "lease_until": now + lease, "token": token, "limit": limit}
    return [dict(r) for r in conn.execute(sql, params).mappings()]


def renew_lease(conn: Connection, token: str, until: datetime) -> int:
    """Push the expiry of every instance still leased to `token`."""
    return int(conn.execute(ji.update().where(ji.c.lease_owner == token).values(due_at=until)).rowcount or 0)


def notify_due(conn: Connection) -> None:
    """A wake-up hint for idle workers (PostgreSQL NOTIFY, delivered at commit)."""
    backend_for(conn).notify_due(conn)


def due_listener(engine: Engine) -> Listener | None:
    """A loop for a thread of its own that sets `wake` whenever work is triggered, until `stop`
    is set (PostgreSQL LISTEN); None where the database sends no notifications (poll)."""
    return backend_for(engine).due_listener(engine)


def heartbeat(conn: Connection, worker_id: str, hostname: str, pid: int, started: datetime, now: datetime,
              batches: int, steps: int, stopped: bool = False) -> None:  # fmt: skip
    values = {"last_seen_at": now, "batches": batches, "steps": steps, "stopped_at": now if stopped else None}
    changed = conn.execute(
        worker_heartbeats.update().where(worker_heartbeats.c.worker_id == worker_id).values(**values)
    ).rowcount
    if not changed:
        conn.execute(
            worker_heartbeats.insert().values(
                worker_id=worker_id, hostname=hostname, pid=pid, started_at=started, **values
            )
        )


def list_workers(conn: Connection) -> list[dict[str, Any]]:
    q = sa.select(worker_heartbeats).order_by(worker_heartbeats.c.started_at)
    return [dict(r) for r in conn.execute(q).mappings()]


def next_due(conn: Connection) -> datetime | None:
    """The earliest due time of any active instance (served by the partial due index)."""
    q = sa.select(sa.func.min(ji.c.due_at, type_=UTCDateTime())).where(
        ji.c.status == ACTIVE_LITERAL, ji.c.due_at.is_not(None)
    )
    return conn.execute(q).scalar()


# Columns of a cursor update, with the types PostgreSQL needs to read them from VALUES.
_UPDATE_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("b_org_id", sa.String()),
    ("b_instance_id", sa.String()),
    ("b_rev", sa.Integer()),
    ("status", sa.String()),
    ("flow_id", sa.String()),
    ("step_id", sa.Integer()),
    ("due_at", UTCDateTime()),
    ("state", sa.Text()),
    ("parameters", sa.Text()),
    ("attempts", sa.Integer()),
    ("last_error", sa.Text()),
    ("last_event_at", UTCDateTime()),
    ("last_flow_name", sa.Text()),
    ("last_step_id", sa.Integer()),
    ("ended_at", UTCDateTime()),
    ("waiting_reply_phone", sa.String()),
)
# What a cursor update writes, on either database: `{name}` is the new value, `j` the row.
_SET = (
    "status = {status}, flow_id = {flow_id}, step_id = {step_id}, due_at = {due_at}, state = {state}, "
    "parameters = {parameters}, attempts = {attempts}, last_error = {last_error}, "
    "last_event_at = coalesce({last_event_at}, j.last_event_at), "
    "last_flow_name = coalesce({last_flow_name}, j.last_flow_name), "
    "last_step_id = coalesce({last_step_id}, j.last_step_id), ended_at = {ended_at}, "
    "waiting_reply_phone = {waiting_reply_phone}, lease_owner = NULL, rev = j.rev + 1"
)
_CURSOR_UPDATE = CursorUpdateSpec(_UPDATE_COLUMNS, _SET)


def write_instance_updates(conn: Connection, token: str, updates: Sequence[dict[str, Any]]) -> set[Key]:
    """Apply the new cursors and clear the leases — only on rows still leased to `token` at the
    revision claimed. Returns the (org_id, instance_id) of the rows changed: the caller writes
    events and messages for those only.

    PostgreSQL: `UPDATE … FROM unnest(…) … RETURNING`, one statement per 5,000 rows; the row
    locks it takes are held to commit, so a concurrent cancel waits and then loses on `rev`.
    SQLite: a consistent read of the leases, then one executemany.
    """
    if not updates:
        return set()
    return backend_for(conn).write_cursor_updates(conn, token, updates, _CURSOR_UPDATE)


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    events.insert_events(conn, rows)


def insert_messages(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Write queued messages. Those of an org with no provider for the channel are handed to
    the built-in outbox as they are written (status `sent`, provider `outbox`) — what the
    dispatcher's delivery to the outbox would do right after the commit, without a second write."""
    if not rows:
        return
    orgs = sorted({r["org_id"] for r in rows})
    configured = set(
        conn.execute(
            sa.select(org_channels.c.org_id, org_channels.c.channel).where(
                one_of(conn, org_channels.c.org_id, orgs)
            )
        ).all()
    )
    for r in rows:
        direct = (
            r["status"] == "queued"
            and (r["org_id"], r["channel"]) not in configured
            and r["send_after"] <= r["created_at"]
        )
        r["sent_at"] = r["created_at"] if direct else None
        r["provider"] = "outbox" if direct else None
        if direct:
            r["status"] = "sent"
    insert_many(conn, outbox, rows)


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
        .values(
            state=json.dumps(state, separators=(",", ":")), due_at=now, lease_owner=None, rev=ji.c.rev + 1
        )
    ).rowcount
    return bool(changed)


class SmsLedger:
    """SMS per (org, phone) for frequency caps: the capped outbox rows of the last 8 days (queued
    or sent), read once per phone per batch, plus what this batch adds."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._times: dict[tuple[str, str], list[datetime]] = {}
        self.consent = OptOutCache(conn)

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
        and chunk, instead of one per phone. Their opt-outs too."""
        self.consent.prefetch(pairs)
        by_org: dict[str, list[str]] = {}
        for org_id, phone in pairs:
            if (org_id, phone) not in self._times:
                by_org.setdefault(org_id, []).append(phone)
        backend = backend_for(self.conn)
        for org_id, phones in by_org.items():
            for start in range(0, len(phones), 500):
                chunk = phones[start : start + 500]
                for phone in chunk:
                    self._times[(org_id, phone)] = []
                since = now - timedelta(days=8)
                for phone, created in backend.recent_capped_sms(self.conn, org_id, chunk, since):
                    self._times[(org_id, phone)].append(created)

    def count(self, org_id: str, phone: str, since: datetime) -> int:
        return sum(1 for t in self._load(org_id, phone, since) if t >= since)

    def add(self, org_id: str, phone: str, at: datetime) -> None:
        self._load(org_id, phone, at).append(at)

    def opted_out(self, org_id: str, phone: str) -> bool:
        return self.consent.opted_out(org_id, phone)
