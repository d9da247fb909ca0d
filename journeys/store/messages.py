"""The outbox: messages the engine has queued, and their delivery state (SQL only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.backends import backend_for
from journeys.store.tables import ACTIVE_LITERAL, instance_events, journey_instances, outbox


def deliver_to_outbox(conn: Connection, now: datetime) -> int:
    """Hand the due queued messages of orgs with no provider for their channel to the built-in
    outbox (status `sent`), in one set-based statement, unless their instance was cancelled."""
    return int(conn.execute(backend_for(conn).deliver_to_outbox_sql, {"now": now}).rowcount or 0)


def list_messages(
    conn: Connection, org_id: str | None = None, instance_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    q = sa.select(outbox).order_by(outbox.c.created_at.desc(), outbox.c.message_id.desc()).limit(limit)
    if org_id is not None:
        q = q.where(outbox.c.org_id == org_id)
    if instance_id is not None:
        q = q.where(outbox.c.instance_id == instance_id)
    return [dict(r) for r in conn.execute(q).mappings()]


# Sends that wait at their step (outside the send window, or deferred by the frequency cap): the
# instance's latest event is the hold, at the step its cursor is on. A hold lasts at most a day
# (window) or a week (cap deferral), so only hold events since `since` are read (partial index).
_HELD_PREDICATE = sa.text("instance_events.kind IN ('send_held', 'sms_deferred')")


def list_held_sends(
    conn: Connection, since: datetime, org_id: str | None, instance_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """Instances holding a send at their current step, newest hold first."""
    e, i = instance_events, journey_instances
    q = (
        sa.select(
            e.c.org_id, e.c.instance_id, e.c.at, e.c.kind, e.c.detail, e.c.flow_id, e.c.step_id,
            i.c.journey_id, i.c.version, i.c.time_zone, i.c.parameters, i.c.due_at,
        )  # fmt: skip
        .join(i, sa.and_(i.c.org_id == e.c.org_id, i.c.instance_id == e.c.instance_id))
        .where(
            _HELD_PREDICATE,  # literal, as in the partial index, so both databases use it
            e.c.at >= since,
            i.c.status == ACTIVE_LITERAL,
            i.c.step_id == e.c.step_id,
            i.c.last_event_at == e.c.at,
        )
        .order_by(e.c.at.desc(), e.c.event_id.desc())
        .limit(limit)
    )
    if org_id is not None:
        q = q.where(e.c.org_id == org_id)
    if instance_id is not None:
        q = q.where(e.c.instance_id == instance_id)
    return [dict(r) for r in conn.execute(q).mappings()]


# ---------------------------------------------------------------- the console's paged listing
def _before(time_col: Any, id_col: Any, before: tuple[datetime, str] | None) -> Any:
    """Keyset paging: rows after `before` in (time, id) descending order."""
    if before is None:
        return sa.true()
    at, key = before
    # `time <= at` as well: a range both databases can start the index scan from.
    return sa.and_(time_col <= at, sa.or_(time_col < at, sa.and_(time_col == at, id_col < key)))


def page_outbox(
    conn: Connection,
    org_id: str,
    *,
    statuses: tuple[str, ...] | None,
    channel: str | None,
    journey_id: str | None,
    since: datetime | None,
    until: datetime | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The org's outbox rows, newest first, filtered, along ix_outbox_org_created (org_id,
    created_at, message_id); a rare status or journey reads further along it."""
    o = outbox
    q = sa.select(o).where(o.c.org_id == org_id, _before(o.c.created_at, o.c.message_id, before))
    if statuses is not None:
        q = q.where(o.c.status.in_(statuses))
    if channel is not None:
        q = q.where(o.c.channel == channel)
    if journey_id is not None:
        q = q.where(o.c.journey_id == journey_id)
    if since is not None:
        q = q.where(o.c.created_at >= since)
    if until is not None:
        q = q.where(o.c.created_at < until)
    q = q.order_by(o.c.created_at.desc(), o.c.message_id.desc()).limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]


def page_held_sends(
    conn: Connection,
    org_id: str,
    *,
    horizon: datetime,
    journey_id: str | None,
    since: datetime | None,
    until: datetime | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The org's sends held at their step (as list_held_sends), newest hold first, keyset-paged
    by (at, event_id)."""
    e, i = instance_events, journey_instances
    q = (
        sa.select(
            e.c.org_id, e.c.instance_id, e.c.event_id, e.c.at, e.c.kind, e.c.detail, e.c.flow_id,
            e.c.step_id, i.c.journey_id, i.c.version, i.c.time_zone, i.c.parameters, i.c.due_at,
        )  # fmt: skip
        .join(i, sa.and_(i.c.org_id == e.c.org_id, i.c.instance_id == e.c.instance_id))
        .where(
            _HELD_PREDICATE,
            e.c.org_id == org_id,
            e.c.at >= max(horizon, since) if since is not None else e.c.at >= horizon,
            i.c.status == ACTIVE_LITERAL,
            i.c.step_id == e.c.step_id,
            i.c.last_event_at == e.c.at,
            _before(e.c.at, e.c.event_id, before),
        )
        .order_by(e.c.at.desc(), e.c.event_id.desc())
        .limit(limit)
    )
    if journey_id is not None:
        q = q.where(i.c.journey_id == journey_id)
    if until is not None:
        q = q.where(e.c.at < until)
    return [dict(r) for r in conn.execute(q).mappings()]
