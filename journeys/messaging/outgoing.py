"""What is going out to patients: the outbox's messages and the sends still waiting at their step
(held for the send window, or deferred by the frequency cap), with the time each will go.

A held send has no outbox row yet: its text is written when it goes (parameters may change
until then). The listing shows it rendered from the current parameters as a preview.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.engine import Connection

import journeys.catalog.service as catalog
from journeys.definitions.model import JourneyDefinition, SendEmailStep, SendSmsStep
from journeys.definitions.templates import TemplateRenderError, render
from journeys.definitions.values import get_zone
from journeys.keys.phi import OrgPhi
from journeys.messaging.phone import normalise_phone
from journeys.messaging.queue import recipient_of
from journeys.store import messages as repo

# A window hold lasts at most a day and a cap deferral at most a week (then the send goes or is
# skipped); older hold events are not read.
HOLD_HORIZON = timedelta(days=14)


@dataclass(frozen=True)
class OutgoingMessage:
    """A message in the outbox, or a send held at its step (`status` "held", `id` None)."""

    id: str | None
    org_id: str
    instance_id: str
    step_id: int | None
    channel: str
    to: str | None
    body: str | None
    status: str  # held | queued | sending | sent | failed | dropped
    created_at: datetime
    sent_at: datetime | None
    goes_at: datetime | None  # held or queued: when it is due to go
    reason: str | None  # held: why it waits; dropped/failed: why it did not go
    time_zone: str | None = None  # held: the instance's zone (to show goes_at locally)
    journey_id: str | None = None
    provider: str | None = None  # twilio, smtp, outbox (the built-in one)
    error_code: str | None = None  # the provider's, when it failed (or reported a status with one)
    subject: str | None = None  # email

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "orgId": self.org_id,
            "instanceId": self.instance_id,
            "stepId": self.step_id,
            "channel": self.channel,
            "to": self.to,
            "body": self.body,
            "status": self.status,
            "createdDateTime": self.created_at,
            "sentDateTime": self.sent_at,
            "goesDateTime": self.goes_at,
            "reason": self.reason,
            "timeZone": self.time_zone,
        }


def list_outgoing(
    conn: Connection,
    now: datetime,
    org_id: str | None = None,
    instance_id: str | None = None,
    limit: int = 100,
    *,
    phi_of: Callable[[str], OrgPhi],
) -> list[OutgoingMessage]:
    """Outbox messages and held sends, newest first (at most `limit`); `phi_of` gives an org's
    way of storing patient data (Vault.org), to read a held send's parameters."""
    out = [from_outbox(r, phi_of(r["org_id"])) for r in repo.list_messages(conn, org_id, instance_id, limit)]
    held = repo.list_held_sends(conn, now - HOLD_HORIZON, org_id, instance_id, limit)
    out += [from_hold(conn, r, phi_of(r["org_id"])) for r in held]
    out.sort(key=lambda m: m.created_at, reverse=True)
    return out[:limit]


def from_outbox(r: dict[str, Any], phi: OrgPhi) -> OutgoingMessage:
    waiting = r["status"] in ("queued", "sending")
    return OutgoingMessage(
        id=r["message_id"],
        org_id=r["org_id"],
        instance_id=r["instance_id"],
        step_id=r["step_id"],
        channel=r["channel"],
        to=recipient_of(phi, r),
        body=phi.open(r["body"]),
        status=r["status"],
        created_at=r["created_at"],
        sent_at=r["sent_at"],
        goes_at=r["send_after"] if waiting else None,
        reason=r["last_error"] if r["status"] in ("dropped", "failed") else None,
        journey_id=r["journey_id"],
        provider=r["provider"],
        error_code=r["error_code"],
        subject=None if r["subject"] is None else phi.open(r["subject"]),
    )


def from_hold(conn: Connection, r: dict[str, Any], phi: OrgPhi) -> OutgoingMessage:
    definition = catalog.load_version(conn, r["org_id"], r["journey_id"], int(r["version"]))
    step = _step(definition, int(r["step_id"]))
    detail = orjson.loads(r["detail"] or "{}")
    channel, to, body = "sms", None, None
    if step is not None:
        params = {str(k): str(v) for k, v in (phi.open_json(r["parameters"]) or {}).items() if v is not None}
        canonical = definition.parameter(step.to)
        raw = params.get(canonical.name if canonical else step.to, "")
        channel = "sms" if isinstance(step, SendSmsStep) else "email"
        to = (normalise_phone(raw) or raw) if channel == "sms" else raw
        zone = get_zone(r["time_zone"])
        types: dict[str, str] = {p.name: p.type for p in definition.parameters}
        try:
            body = render(step.body, params, types, zone) if zone is not None else None
        except TemplateRenderError:
            body = None  # it fails when it is due, and the timeline says why
    reason = detail.get("reason") or ("frequency cap" if r["kind"] == "sms_deferred" else None)
    if r["kind"] == "sms_deferred" and detail.get("limit"):
        reason = f"frequency cap ({detail['limit']})"
    return OutgoingMessage(
        id=None,
        org_id=r["org_id"],
        instance_id=r["instance_id"],
        step_id=r["step_id"],
        channel=channel,
        to=to,
        body=body,
        status="held",
        created_at=r["at"],
        sent_at=None,
        goes_at=r["due_at"],
        reason=reason,
        time_zone=r["time_zone"],
        journey_id=r["journey_id"],
    )


def _step(definition: JourneyDefinition, step_id: int) -> SendSmsStep | SendEmailStep | None:
    for flow in definition.flows:
        for step in flow.steps:
            if step.id == step_id and isinstance(step, SendSmsStep | SendEmailStep):
                return step
    return None
