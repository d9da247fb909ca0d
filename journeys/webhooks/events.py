"""Timeline events and the webhooks they fan out to: the public event types, which timeline
event maps to which, and the payload a receiver gets.

Every timeline event is written through `record_events`: it stores the events and, in the same
transaction, one delivery per event and matching subscription (verified, not disabled) of the
orgs involved (subscriptions are loaded with one query per call). The webhook sender
(`journeys.webhooks.delivery`) delivers them after the commit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from journeys.ids import new_event_id
from journeys.records import NewDelivery, TimelineEvent
from journeys.store import events as repo

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


def webhook_types(event: TimelineEvent) -> list[str]:
    """The webhook event types a timeline event maps to (step.executed first)."""
    kind = event.kind
    types: list[str] = []
    # A step's own record is written by the interpreter, which always names the flow.
    if event.step_id is not None and event.flow_name and kind not in _NOT_STEP:
        types.append("step.executed")
    if kind == "sms_status":
        status = str(event.detail.get("status") or "").lower()
        if status == "delivered":
            types.append("message.delivered")
        elif status in ("undelivered", "failed"):
            types.append("message.failed")
    elif kind in _DIRECT:
        types.append(_DIRECT[kind])
    return types


def _iso_z(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def payload(
    event: TimelineEvent, delivery_id: str, event_type: str, journey_id: str | None
) -> dict[str, Any]:
    """The JSON body a subscriber receives for one event and type."""
    return {
        "id": delivery_id,
        "type": event_type,
        "occurredDateTime": _iso_z(event.at),
        "orgId": event.org_id,
        "journeyId": journey_id,
        "instanceId": event.instance_id,
        "flowId": event.flow_id,
        "flowName": event.flow_name,
        "stepId": event.step_id,
        "event": event.kind,
        "detail": dict(event.detail),
    }


def record_events(conn: Connection, events: Sequence[TimelineEvent]) -> None:
    """Store timeline events and the webhook deliveries they fan out to (caller's transaction)."""
    if not events:
        return
    repo.insert_events(conn, events)
    subs = repo.active_subscriptions(conn, sorted({e.org_id for e in events}))
    if not subs:
        return
    journey_of = repo.journeys_of(conn, [(e.org_id, e.instance_id) for e in events if e.org_id in subs])
    deliveries: list[NewDelivery] = []
    for event in sorted(events, key=lambda e: e.event_id):
        org_subs = subs.get(event.org_id)
        if not org_subs:
            continue
        for event_type in webhook_types(event):
            for sub in org_subs:
                if "*" not in sub.event_types and event_type not in sub.event_types:
                    continue
                delivery_id = new_event_id()
                body = payload(
                    event, delivery_id, event_type, journey_of.get((event.org_id, event.instance_id))
                )
                deliveries.append(
                    NewDelivery(
                        event.org_id,
                        delivery_id,
                        sub.subscription_id,
                        event.instance_id,
                        event_type,
                        json.dumps(body, separators=(",", ":")),
                        event.at,
                    )
                )
    repo.insert_deliveries(conn, deliveries)
