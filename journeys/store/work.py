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

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from journeys.records import ClaimedInstance, CursorUpdate, OutboxEntry
from journeys.store.backends import CursorUpdateSpec, backend_for
from journeys.store.backends.base import Listener
from journeys.store.bulk import insert_many, one_of
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
    conn: Connection, now: datetime, limit: int, token: str, lease: timedelta, *, sealed: bool = True
) -> list[ClaimedInstance]:
    """Lease up to `limit` due instances (earliest due first) to the batch `token`; without
    `sealed`, only instances whose parameters are not sealed (a worker that has no key)."""
    backend = backend_for(conn)
    sql = backend.claim_due_sql if sealed else backend.claim_plain_sql
    params = {"now": now, "lease_until": now + lease, "token": token, "limit": limit}
    return [ClaimedInstance(**r) for r in conn.execute(sql, params).mappings()]


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


def _update_binds(u: CursorUpdate) -> dict[str, Any]:
    """A cursor update's bind parameters, named as in `_UPDATE_COLUMNS` (the one conversion)."""
    return {
        "b_org_id": u.org_id,
        "b_instance_id": u.instance_id,
        "b_rev": u.rev,
        "status": u.status,
        "flow_id": u.flow_id,
        "step_id": u.step_id,
        "due_at": u.due_at,
        "state": u.state,
        "parameters": u.parameters,
        "attempts": u.attempts,
        "last_error": u.last_error,
        "last_event_at": u.last_event_at,
        "last_flow_name": u.last_flow_name,
        "last_step_id": u.last_step_id,
        "ended_at": u.ended_at,
        "waiting_reply_phone": u.waiting_reply_phone,
    }


def write_instance_updates(conn: Connection, token: str, updates: Sequence[CursorUpdate]) -> set[Key]:
    """Apply the new cursors and clear the leases — only on rows still leased to `token` at the
    revision claimed. Returns the (org_id, instance_id) of the rows changed: the caller writes
    events and messages for those only.

    PostgreSQL: `UPDATE … FROM unnest(…) … RETURNING`, one statement per 5,000 rows; the row
    locks it takes are held to commit, so a concurrent cancel waits and then loses on `rev`.
    SQLite: a consistent read of the leases, then one executemany.
    """
    if not updates:
        return set()
    binds = [_update_binds(u) for u in updates]
    return backend_for(conn).write_cursor_updates(conn, token, binds, _CURSOR_UPDATE)


def configured_channels(conn: Connection, org_ids: Sequence[str]) -> set[tuple[str, str]]:
    """(org, channel) pairs that have a provider configured, among these orgs."""
    q = sa.select(org_channels.c.org_id, org_channels.c.channel).where(
        one_of(conn, org_channels.c.org_id, list(org_ids))
    )
    return {(org_id, channel) for org_id, channel in conn.execute(q)}


def _outbox_row(e: OutboxEntry) -> dict[str, Any]:
    """An outbox entry's table row (the one conversion)."""
    m = e.message
    return {
        "org_id": m.org_id,
        "message_id": m.message_id,
        "instance_id": m.instance_id,
        "journey_id": m.journey_id,
        "flow_id": m.flow_id,
        "step_id": m.step_id,
        "channel": m.channel,
        "to_address": m.to_address,
        "recipient": m.recipient,
        "subject": m.subject,
        "body": m.body,
        "html": m.html,
        "capped": m.capped,
        "status": e.status,
        "idempotency_key": m.idempotency_key,
        "send_after": e.send_after,
        "created_at": m.created_at,
        "sent_at": e.sent_at,
        "provider": e.provider,
    }


def insert_messages(conn: Connection, entries: Sequence[OutboxEntry]) -> None:
    """Write outbox entries (one set-based insert)."""
    if entries:
        insert_many(conn, outbox, [_outbox_row(e) for e in entries])


def read_state(conn: Connection, org_id: str, instance_id: str, rev: int) -> tuple[bool, str | None]:
    """(found, state JSON text) of the instance at revision `rev`; found is False when it has
    changed since (or does not exist)."""
    row = conn.execute(
        sa.select(ji.c.state).where(ji.c.org_id == org_id, ji.c.instance_id == instance_id, ji.c.rev == rev)
    ).first()
    return (False, None) if row is None else (True, row[0])


def resume_with_state(
    conn: Connection, org_id: str, instance_id: str, rev: int, state: str, now: datetime
) -> bool:
    """Store an active instance's new state (JSON text) and make it due now, guarded by `rev`:
    False (nothing written) when the instance changed since."""
    changed = conn.execute(
        ji.update()
        .where(
            ji.c.org_id == org_id,
            ji.c.instance_id == instance_id,
            ji.c.rev == rev,
            ji.c.status == "InProgress",
        )
        .values(state=state, due_at=now, lease_owner=None, rev=ji.c.rev + 1)
    ).rowcount
    return bool(changed)


def capped_sms_times(conn: Connection, org_id: str, phone: str, since: datetime) -> list[datetime]:
    """When the capped SMS to `phone` of the org (queued or sent) since `since` were created."""
    q = sa.select(outbox.c.created_at).where(
        outbox.c.org_id == org_id,
        outbox.c.to_address == phone,
        outbox.c.created_at >= since,
        outbox.c.capped.is_(True),
        outbox.c.status.in_(("queued", "sent")),
    )
    return [r[0] for r in conn.execute(q)]


def capped_sms_of_phones(
    conn: Connection, org_id: str, phones: Sequence[str], since: datetime
) -> list[tuple[str, datetime]]:
    """(phone, created_at) of the org's capped SMS (queued or sent) since `since` to any of
    `phones` (at most 500): one query."""
    rows = backend_for(conn).recent_capped_sms(conn, org_id, list(phones), since)
    return [(phone, created) for phone, created in rows]
