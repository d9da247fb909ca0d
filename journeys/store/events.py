"""Timeline events and webhook deliveries (SQL only; which events become which deliveries is
decided by `journeys.webhooks.events`, through which every event is recorded)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.records import ActiveSubscription, NewDelivery, TimelineEvent
from journeys.store.bulk import insert_many, one_of
from journeys.store.tables import (
    instance_events,
    journey_instances,
    webhook_deliveries,
    webhook_subscriptions,
)


def event_record(e: TimelineEvent) -> dict[str, Any]:
    """A timeline event's table row, its detail as JSON text (the one conversion)."""
    return {
        "org_id": e.org_id,
        "instance_id": e.instance_id,
        "event_id": e.event_id,
        "at": e.at,
        "flow_id": e.flow_id,
        "flow_name": e.flow_name,
        "step_id": e.step_id,
        "kind": e.kind,
        "detail": orjson.dumps(e.detail).decode("utf-8") if e.detail else "{}",
    }


def insert_events(conn: Connection, events: Sequence[TimelineEvent]) -> None:
    """Insert timeline events (one set-based insert)."""
    if events:
        insert_many(conn, instance_events, [event_record(e) for e in events])


def active_subscriptions(conn: Connection, org_ids: Sequence[str]) -> dict[str, list[ActiveSubscription]]:
    """Verified, enabled subscriptions of these orgs, by org (one query)."""
    ws = webhook_subscriptions
    found: dict[str, list[ActiveSubscription]] = {}
    if not org_ids:
        return found
    rows = conn.execute(
        sa.select(ws.c.org_id, ws.c.subscription_id, ws.c.event_types).where(
            ws.c.org_id.in_(list(org_ids)), ws.c.verified_at.is_not(None), ws.c.disabled_at.is_(None)
        )
    )
    for org_id, subscription_id, event_types in rows:
        sub = ActiveSubscription(subscription_id, frozenset(str(event_types).split()))
        found.setdefault(org_id, []).append(sub)
    return found


def journeys_of(conn: Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(org, instance) → the instance's journey: one query per org (and per 10,000 instances)."""
    by_org: dict[str, set[str]] = {}
    for org_id, instance_id in keys:
        by_org.setdefault(org_id, set()).add(instance_id)
    found: dict[tuple[str, str], str] = {}
    ji = journey_instances
    for org_id, ids in by_org.items():
        listed = sorted(ids)
        for start in range(0, len(listed), 10_000):
            chunk = listed[start : start + 10_000]
            q = sa.select(ji.c.instance_id, ji.c.journey_id).where(
                ji.c.org_id == org_id, one_of(conn, ji.c.instance_id, chunk)
            )
            found.update({(org_id, iid): jid for iid, jid in conn.execute(q)})
    return found


def insert_deliveries(conn: Connection, deliveries: Sequence[NewDelivery]) -> None:
    """Write new webhook deliveries: pending, due at once."""
    insert_many(
        conn,
        webhook_deliveries,
        [
            {
                "org_id": d.org_id,
                "delivery_id": d.delivery_id,
                "subscription_id": d.subscription_id,
                "instance_id": d.instance_id,
                "event_type": d.event_type,
                "payload": d.payload,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": d.at,
                "created_at": d.at,
            }
            for d in deliveries
        ],
    )
