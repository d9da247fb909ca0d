"""One instance as staff see it (the console's instance page): its parameters and status, and
its timeline with what each event is about — the message a step sent (its text as rendered and
its delivery status), the reply that arrived, the time a wait, hold or deferral ends — and the
sends still held at their step. Services: take a connection, never commit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from journeys.catalog.service import JourneyVersion, load_version
from journeys.definitions.model import Flow, JourneyDefinition, Parameter
from journeys.errors import Conflict, Invalid
from journeys.instances import service as instance_service
from journeys.instances.replies import InboundReply, replies_by_id
from journeys.instances.trigger import TriggerError, trigger
from journeys.keys.phi import OrgPhi
from journeys.messaging.outgoing import OutgoingMessage, list_outgoing
from journeys.store import instances as repo
from journeys.store.tables import ACTIVE

MAX_MESSAGES = 1000  # an instance's messages read for its timeline


@dataclass(frozen=True)
class TimelineItem:
    """One event of the instance's timeline, with what it is about."""

    at: datetime
    kind: str
    flow_name: str | None
    step_id: int | None
    detail: Mapping[str, Any]  # as stored: ids, outcomes, reasons — never PHI
    until: datetime | None  # a wait, a held send, a deferral, a reply's deadline: when it ends
    message: OutgoingMessage | None  # the message the event is about
    reply: InboundReply | None  # the reply that arrived

    @property
    def problem(self) -> bool:
        return self.kind == "failed" or self.kind.endswith(("_failed", "_retry", "_dropped"))


@dataclass(frozen=True)
class InstanceDetail:
    journey: JourneyVersion  # the journey's latest version
    definition: JourneyDefinition  # the version the instance runs
    instance_id: str
    version: int
    status: str
    time_zone: str
    parameters: dict[str, str]
    created_at: datetime
    start_at: datetime
    due_at: datetime | None  # when its next step runs (InProgress)
    current_flow: str | None  # the flow and step it is at
    current_step: int | None
    last_error: str | None
    timeline: tuple[TimelineItem, ...]
    held: tuple[OutgoingMessage, ...]  # sends waiting at their step (send window, frequency cap)

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    @property
    def subflows(self) -> list[Flow]:
        """The subflows of the version it runs (what a subflow trigger can start)."""
        main = self.definition.main_flow
        return [f for f in self.definition.flows if f is not main]

    @property
    def subflow_parameters(self) -> list[Parameter]:
        """The parameters a subflow trigger may change: all but the identifiers (which find it)."""
        return [p for p in self.journey.definition.parameters if not p.identifier]

    def flow_name(self, flow_id: str | None) -> str | None:
        flow = self.definition.flow(flow_id) if flow_id else None
        return flow.name if flow else flow_id


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def instance_detail(
    conn: Connection, jv: JourneyVersion, instance_id: str, now: datetime, phi: OrgPhi
) -> InstanceDetail:
    """The instance of the journey with its timeline; raises NotFound (also for another org's)."""
    row, events = instance_service.get(conn, jv, instance_id, phi)
    definition = load_version(conn, jv.org_id, jv.journey_id, int(row["version"]))
    outgoing = list_outgoing(conn, now, jv.org_id, instance_id, MAX_MESSAGES, phi_of=lambda _: phi)
    messages = {m.id: m for m in outgoing if m.id is not None}
    details = [json.loads(e["detail"]) if e["detail"] else {} for e in events]
    reply_ids = [
        str(d["messageId"]) for e, d in zip(events, details, strict=True) if e["kind"] == "reply_arrived"
    ]
    replies = replies_by_id(conn, phi, reply_ids)
    items = []
    for e, d in zip(events, details, strict=True):
        about = str(d.get("messageId", ""))
        flow = definition.flow(e["flow_id"]) if e["flow_id"] else None
        items.append(
            TimelineItem(
                at=e["at"],
                kind=e["kind"],
                flow_name=e["flow_name"] or (flow.name if flow else None),
                step_id=e["step_id"],
                detail=d,
                until=_moment(d.get("until")),
                message=messages.get(about) if e["kind"] != "reply_arrived" else None,
                reply=replies.get(about) if e["kind"] == "reply_arrived" else None,
            )
        )
    return InstanceDetail(
        journey=jv,
        definition=definition,
        instance_id=row["instance_id"],
        version=int(row["version"]),
        status=row["status"],
        time_zone=row["time_zone"],
        parameters=row["parameters"],
        created_at=row["created_at"],
        start_at=row["start_at"],
        due_at=row["due_at"] if row["status"] == ACTIVE else None,
        current_flow=row["flow_id"],
        current_step=row["step_id"],
        last_error=row["last_error"],
        timeline=tuple(items),
        held=tuple(m for m in outgoing if m.status == "held"),
    )


def _one_instance(message: str) -> str:
    """A bulk trigger's problem about its only instance, without the `instances[0]` path."""
    for prefix in ("instances[0].parameters.", "instances[0]: ", "instances[0]."):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def start_subflow(
    conn: Connection,
    jv: JourneyVersion,
    instance_id: str,
    flow_id: str,
    given: Mapping[str, str],
    now: datetime,
    phi: OrgPhi,
) -> None:
    """Start subflow `flow_id` on this InProgress instance through the bulk trigger (the API's
    path: the same checks, messages and effects), with the non-empty `given` parameters merged
    into its own (datetime values are local to the instance's zone). The instance is found by
    its identifier parameters, as the API finds it. Raises TriggerError (the API's 400
    messages, without the `instances[0]` path), NotFound, or Conflict; nothing is written then."""
    row = repo.get(conn, jv.org_id, jv.journey_id, instance_id)
    if row is None:
        raise instance_service.NotFound(f"instance {instance_id} not found")
    if row["status"] != ACTIVE:
        raise Conflict(
            f"instance {instance_id} is {row['status']}: only an InProgress instance can start a subflow"
        )
    identifiers = jv.definition.identifier_parameters
    if not identifiers:
        raise Invalid(
            f"journey {jv.name!r} has no identifier parameters, so a subflow cannot find its instances"
        )
    own = phi.open_json(row["parameters"])
    parameters = {p.name: own.get(p.name, "") for p in identifiers}
    names = {p.name for p in identifiers}
    parameters.update({k: v for k, v in given.items() if v.strip() and k not in names})
    body = {"flowId": flow_id, "timeZone": row["time_zone"], "instances": [{"parameters": parameters}]}
    try:
        result = trigger(conn, jv, body, now, phi=phi, max_instances=1)
    except TriggerError as exc:
        raise TriggerError([_one_instance(m) for m in exc.messages]) from None
    if result.instance_ids != [instance_id]:  # its identifiers found another instance: undo
        raise Conflict(f"instance {instance_id} could not be found by its identifier parameters")
