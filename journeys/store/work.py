"""Claiming due work and writing a batch's effects: one claim statement per dialect.

A batch is claimed by one statement that stamps the batch's token into `lease_owner` and moves
`due_at` to the lease's expiry, and commits. The instances are then invisible to other
workers' claims until the lease expires — so a worker that dies simply lets its lease run out,
and the same claim statement recovers the work. While a batch runs its lease is renewed. The
batch's effects are written in a second transaction whose cursor update is the guard: it
changes only rows still leased to this batch at the revision it read (a cancel, subflow or
reply in between bumps `rev` and clears the lease, so it wins), and only the instances it
changed get their events and messages written.

PostgreSQL: the claim's subquery takes `FOR UPDATE SKIP LOCKED`, so concurrent workers claim
disjoint batches without waiting on each other. SQLite: transactions are exclusive writers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from journeys.records import ClaimedInstance, CursorUpdate, OutboxEntry
from journeys.store.bulk import insert_many, one_of, pg_array_type, sqlite_rows
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

# RETURNING these columns in ClaimedInstance's field order: a row is the instance's arguments.
_CLAIM_COLUMNS = ", ".join(f.name for f in fields(ClaimedInstance))
_DUE = "status = 'InProgress' AND due_at IS NOT NULL AND due_at <= :now ORDER BY due_at LIMIT :limit"
_BINDS = (
    sa.bindparam("now", type_=UTCDateTime()),
    sa.bindparam("lease_until", type_=UTCDateTime()),
    sa.bindparam("token", type_=sa.String()),
    sa.bindparam("limit", type_=sa.Integer()),
)

CLAIM_SQL = {
    "sqlite": sa.text(
        "UPDATE journey_instances SET lease_owner = :token, due_at = :lease_until "
        f"WHERE (org_id, instance_id) IN (SELECT org_id, instance_id FROM journey_instances WHERE {_DUE}) "
        f"RETURNING {_CLAIM_COLUMNS}"
    ).bindparams(*_BINDS),
    # The subquery locks the rows it picks, so their ctid cannot change before the UPDATE reads
    # them: a TID scan, whatever the planner thinks of the table's size.
    "postgresql": sa.text(
        "UPDATE journey_instances SET lease_owner = :token, due_at = :lease_until "
        f"WHERE ctid = ANY(ARRAY(SELECT ctid FROM journey_instances WHERE {_DUE} FOR UPDATE SKIP LOCKED)) "
        f"RETURNING {_CLAIM_COLUMNS}"
    ).bindparams(*_BINDS),
}


def claim_due(
    conn: Connection, now: datetime, limit: int, token: str, lease: timedelta
) -> list[ClaimedInstance]:
    """Lease up to `limit` due instances (earliest due first) to the batch `token`."""
    sql = CLAIM_SQL["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    params = {"now": now, "lease_until": now + lease, "token": token, "limit": limit}
    return [ClaimedInstance(*r) for r in conn.execute(sql, params)]


def renew_lease(conn: Connection, token: str, until: datetime) -> int:
    """Push the expiry of every instance still leased to `token`."""
    return int(conn.execute(ji.update().where(ji.c.lease_owner == token).values(due_at=until)).rowcount or 0)


def _sqlite_still_leased(conn: Connection, token: str, updates: Sequence[CursorUpdate]) -> set[Key]:
    """SQLite: which of the batch's rows are still leased to `token` at the revision claimed.
    The write transaction is exclusive (BEGIN IMMEDIATE), so nothing changes them afterwards."""
    wanted = {(u.org_id, u.instance_id): u.rev for u in updates}
    by_org: dict[str, list[str]] = {}
    for org_id, instance_id in wanted:
        by_org.setdefault(org_id, []).append(instance_id)
    kept: set[Key] = set()
    for org_id, ids in by_org.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            sql = (
                "SELECT instance_id, rev FROM journey_instances WHERE org_id = ? AND lease_owner = ? "
                f"AND instance_id IN ({', '.join('?' for _ in chunk)})"
            )
            for instance_id, rev in conn.exec_driver_sql(sql, (org_id, token, *chunk)):
                if wanted.get((org_id, instance_id)) == int(rev):
                    kept.add((org_id, instance_id))
    return kept


def notify_due(conn: Connection) -> None:
    """A wake-up hint for idle workers (PostgreSQL NOTIFY, delivered at commit)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("NOTIFY journeys_due")


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
PG_UPDATE_ROWS = 5_000


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
    if conn.dialect.name == "postgresql":
        kept: set[Key] = set()
        # Probe the primary key for each row. Left to itself the planner hashes a scan of the
        # whole table for a few hundred rows once the table is past some 10,000 rows.
        conn.exec_driver_sql(_PG_JOIN_BY_INDEX)
        for start in range(0, len(updates), PG_UPDATE_ROWS):
            chunk = [_update_binds(u) for u in updates[start : start + PG_UPDATE_ROWS]]
            params = (*([u[name] for u in chunk] for name, _ in _UPDATE_COLUMNS), [token] * len(chunk))
            kept.update((r[0], r[1]) for r in conn.exec_driver_sql(_PG_UPDATE_SQL, params))
        conn.exec_driver_sql(_PG_JOIN_DEFAULT)
        return kept
    kept = _sqlite_still_leased(conn, token, updates)
    mine = [_update_binds(u) for u in updates if (u.org_id, u.instance_id) in kept]
    rows = sqlite_rows(_SQLITE_UPDATE_COLUMNS, mine)
    if rows:
        conn.exec_driver_sql(_SQLITE_UPDATE_SQL, rows)
    return kept


_SET = (
    "status = {status}, flow_id = {flow_id}, step_id = {step_id}, due_at = {due_at}, state = {state}, "
    "parameters = {parameters}, attempts = {attempts}, last_error = {last_error}, "
    "last_event_at = coalesce({last_event_at}, j.last_event_at), "
    "last_flow_name = coalesce({last_flow_name}, j.last_flow_name), "
    "last_step_id = coalesce({last_step_id}, j.last_step_id), ended_at = {ended_at}, "
    "waiting_reply_phone = {waiting_reply_phone}, lease_owner = NULL, rev = j.rev + 1"
)
_NAMES = [name for name, _ in _UPDATE_COLUMNS]
_PG_UPDATE_SQL = (
    f"UPDATE journey_instances AS j SET {_SET.format(**{n: f'v.{n}' for n in _NAMES})} "
    f"FROM unnest({', '.join(f'%b::{pg_array_type(t)}' for _, t in _UPDATE_COLUMNS)}, %b::text[]) "
    f"AS v({', '.join(_NAMES)}, b_token) "
    # The token is a joined column, not a constant: a constant filter on lease_owner looks
    # selective to the planner and turns the join into a scan of the table.
    "WHERE j.org_id = v.b_org_id AND j.instance_id = v.b_instance_id AND j.rev = v.b_rev "
    "AND j.lease_owner = v.b_token RETURNING j.org_id, j.instance_id"
)
_PG_JOIN_BY_INDEX = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
_PG_JOIN_DEFAULT = "RESET enable_hashjoin; RESET enable_mergejoin"
# SQLite: positional parameters (SET columns, then the key), values stored as SQLAlchemy would.
_SQLITE_UPDATE_COLUMNS = [
    (n, "datetime" if isinstance(t, UTCDateTime) else "plain")
    for n, t in [*_UPDATE_COLUMNS[3:], *_UPDATE_COLUMNS[:3]]
]
_SQLITE_UPDATE_SQL = (
    f"UPDATE journey_instances AS j SET {_SET.format(**{n: '?' for n in _NAMES})} "
    "WHERE j.org_id = ? AND j.instance_id = ? AND j.rev = ?"
)


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


_PG_LEDGER = (
    sa.text(
        "SELECT p.phone, o.created_at FROM unnest(CAST(:phones AS text[])) AS p(phone) "
        "JOIN LATERAL (SELECT created_at FROM outbox WHERE org_id = :org_id AND to_address = p.phone "
        "AND created_at >= :since AND capped AND status IN ('queued', 'sent') OFFSET 0) AS o ON true"
    )
    .bindparams(
        sa.bindparam("phones", type_=postgresql.ARRAY(sa.Text())),
        sa.bindparam("since", type_=UTCDateTime()),
    )
    .columns(sa.column("phone", sa.Text()), sa.column("created_at", UTCDateTime()))
)


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
    if conn.dialect.name == "postgresql":
        # One index range per phone (org_id, to_address, created_at), whatever the
        # planner's statistics say about the org's outbox (OFFSET 0 keeps the
        # subquery from being flattened into a scan of the org's recent messages).
        rows = conn.execute(_PG_LEDGER, {"phones": list(phones), "org_id": org_id, "since": since})
    else:
        rows = conn.execute(
            sa.select(outbox.c.to_address, outbox.c.created_at).where(
                outbox.c.org_id == org_id,
                outbox.c.to_address.in_(list(phones)),
                outbox.c.created_at >= since,
                outbox.c.capped.is_(True),
                outbox.c.status.in_(("queued", "sent")),
            )
        )
    return [(phone, created) for phone, created in rows]
