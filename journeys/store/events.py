"""Timeline events, and the webhook deliveries they fan out to.

Every write of `instance_events` goes through `insert_events`: it inserts the rows and, in the
same transaction, one `webhook_deliveries` row per event and matching subscription (verified,
not disabled) of the orgs involved. Subscriptions are loaded with one query per call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.ids import new_event_id
from journeys.store.bulk import insert_many, one_of
from journeys.store.tables import (
    instance_events,
    journey_instances,
    webhook_deliveries,
    webhook_subscriptions,
)

EVENT_TYPES = (
    "instance.started",
    "instance.subflow_started",
    "step.executed",
    "message.sent",
    "message.delivered",
    "message.failed",
    "reply.received",
    "opted_out",
    "instance.completed",
    "instance.cancelled",
    "instance.failed",
)

_DIRECT = {
    "started": "instance.started",
    "subflow_started": "instance.subflow_started",
    "sms_sent": "message.sent",
    "email_sent": "message.sent",
    "sms_failed": "message.failed",
    "email_failed": "message.failed",
    "reply_received": "reply.received",
    "opted_out": "opted_out",
    "completed": "instance.completed",
    "end": "instance.completed",
    "cancelled": "instance.cancelled",
    "failed": "instance.failed",
}
# Events that carry a step id but are not that step's own record.
_NOT_STEP = {
    "sms_sent", "email_sent", "sms_failed", "email_failed", "sms_retry", "email_retry",
    "sms_status", "step_retry", "failed", "reply_arrived", "opted_out", "cancelled",
    "completed", "started", "subflow_started", "sms_dropped", "email_dropped",
}  # fmt: skip


def _detail(row: dict[str, Any]) -> dict[str, Any]:
    raw = row.get("detail") or "{}"
    try:
        value = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def webhook_types(row: dict[str, Any]) -> list[str]:
    """The webhook event types a timeline event row maps to (step.executed first)."""
    kind = row["kind"]
    types: list[str] = []
    # A step's own record is written by the interpreter, which always names the flow.
    if row.get("step_id") is not None and row.get("flow_name") and kind not in _NOT_STEP:
        types.append("step.executed")
    if kind == "sms_status":
        status = str(_detail(row).get("status") or "").lower()
        if status == "delivered":
            types.append("message.delivered")
        elif status in ("undelivered", "failed"):
            types.append("message.failed")
    elif kind in _DIRECT:
        types.append(_DIRECT[kind])
    return types


def _iso_z(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def active_subscriptions(conn: Connection, org_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Verified, enabled subscriptions of these orgs, by org."""
    ws = webhook_subscriptions
    found: dict[str, list[dict[str, Any]]] = {}
    if not org_ids:
        return found
    rows = conn.execute(
        sa.select(ws.c.org_id, ws.c.subscription_id, ws.c.event_types).where(
            ws.c.org_id.in_(list(org_ids)), ws.c.verified_at.is_not(None), ws.c.disabled_at.is_(None)
        )
    ).mappings()
    for r in rows:
        types = set(str(r["event_types"]).split())
        found.setdefault(r["org_id"], []).append({"id": r["subscription_id"], "types": types})
    return found


def _journeys_of(conn: Connection, rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(org, instance) → the instance's journey, for the events that fan out to webhooks: one
    query per org (and per 10,000 instances)."""
    by_org: dict[str, set[str]] = {}
    for r in rows:
        by_org.setdefault(r["org_id"], set()).add(r["instance_id"])
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


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert timeline events and the webhook deliveries they fan out to."""
    if not rows:
        return
    insert_many(conn, instance_events, rows)
    subs = active_subscriptions(conn, sorted({r["org_id"] for r in rows}))
    if not subs:
        return
    journey_of = _journeys_of(conn, [r for r in rows if r["org_id"] in subs])
    deliveries: list[dict[str, Any]] = []
    for row in sorted(rows, key=lambda r: r["event_id"]):
        org_subs = subs.get(row["org_id"])
        if not org_subs:
            continue
        for event_type in webhook_types(row):
            for sub in org_subs:
                if "*" not in sub["types"] and event_type not in sub["types"]:
                    continue
                delivery_id = new_event_id()
                payload = {
                    "id": delivery_id,
                    "type": event_type,
                    "occurredDateTime": _iso_z(row["at"]),
                    "orgId": row["org_id"],
                    "journeyId": journey_of.get((row["org_id"], row["instance_id"])),
                    "instanceId": row["instance_id"],
                    "flowId": row.get("flow_id"),
                    "flowName": row.get("flow_name"),
                    "stepId": row.get("step_id"),
                    "event": row["kind"],
                    "detail": _detail(row),
                }
                deliveries.append(
                    {
                        "org_id": row["org_id"],
                        "delivery_id": delivery_id,
                        "subscription_id": sub["id"],
                        "instance_id": row["instance_id"],
                        "event_type": event_type,
                        "payload": json.dumps(payload, separators=(",", ":")),
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": row["at"],
                        "created_at": row["at"],
                    }
                )
    insert_many(conn, webhook_deliveries, deliveries)
