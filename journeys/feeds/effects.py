"""What an appointment update does to its journey, whatever brought it (an HL7 message, a FHIR
Appointment): start the main flow, run a subflow on the appointment's active instance, or cancel
it. The bulk trigger and the cancel service do the writing, so the API's rules hold. Takes a
connection and never commits; the caller commits only when the result is accepted."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from journeys.accounts import audit
from journeys.accounts.audit import Action, Actor
from journeys.catalog.service import JourneyVersion
from journeys.definitions.values import get_zone, parse_datetime
from journeys.feeds import ack as acks
from journeys.feeds.ack import Ack
from journeys.feeds.mapping import EventAction
from journeys.instances import service as instance_service
from journeys.instances.trigger import TriggerError, identifier_key, trigger
from journeys.keys.phi import OrgPhi
from journeys.store import instances as instances_repo


@dataclass(frozen=True)
class Incoming:
    """An appointment update, read: what to do, the parameters it carries (only those with a
    value), where each is read from (field references or FHIR paths, for messages that must
    not quote values), and the filter that leaves the appointment out, if any."""

    event: str  # S12, booked, …
    action: EventAction
    params: dict[str, str]
    sources: dict[str, str] = field(default_factory=dict)  # every mapped parameter: where it is read
    origin: dict[str, str] = field(default_factory=dict)  # those with a value: where it came from
    left_out: str | None = None


def _scrub(messages: list[str], incoming: Incoming) -> str:
    """The trigger's messages without the values they quote: each is named by its source."""
    out = []
    for text in messages:
        text = text.replace("instances[0].parameters.", "").replace("instances[0]: ", "")
        for name, value in incoming.params.items():
            where = incoming.origin.get(name) or "the mapping"
            text = text.replace(json.dumps(value, ensure_ascii=False), f"(from {where})")
        out.append(text)
    return "; ".join(out)


def _refused(exc: TriggerError, incoming: Incoming) -> Ack:
    """AE with the journey's own reasons: 101 when a required value is missing, else 102."""
    missing = any("required parameter" in m for m in exc.messages)
    return acks.error(_scrub(exc.messages, incoming), "101" if missing else "102")


class Applier:
    """Applies updates to one journey as `actor`, in the caller's transaction."""

    def __init__(
        self,
        conn: Connection,
        jv: JourneyVersion,
        zone: str,
        actor: Actor,
        by: str,
        now: datetime,
        phi: OrgPhi,
    ) -> None:
        self.conn, self.jv, self.actor, self.by, self.now, self.phi = conn, jv, actor, by, now, phi
        self.zone = get_zone(zone) or ZoneInfo("UTC")

    def apply(self, incoming: Incoming) -> Ack:
        action = incoming.action
        if action.action == "ignore":
            return acks.accept(f"{incoming.event} is ignored by {self.by}")
        ids = self.jv.definition.identifier_parameters
        empty = [p.name for p in ids if not incoming.params.get(p.name, "").strip()]
        if empty:
            fields = ", ".join(f"{n} ({incoming.sources.get(n, 'not mapped')})" for n in empty)
            return acks.error(f"the appointment cannot be identified: {fields} empty", "101")
        key = identifier_key(self.jv.definition, incoming.params, self.phi) or ""
        found = instances_repo.find_active_by_identifier(
            self.conn, self.jv.org_id, self.jv.journey_id, [key], lock=action.action != "start"
        )
        active = found.get(key)
        if action.action == "cancel":
            return self.cancel(active)
        if action.action == "start" or active is None:
            return self.start(incoming, active)
        return self.subflow(incoming, active)

    def start(self, incoming: Incoming, active: dict[str, Any] | None) -> Ack:
        action = incoming.action
        if active is not None:
            iid = str(active["instance_id"])
            return acks.accept(f"instance {iid} is already active for this appointment; nothing started", iid)
        if action.action == "subflow" and action.when_missing != "start":
            text = "no active instance for this appointment"
            if action.when_missing == "error":
                return acks.error(text, "204")
            return acks.accept(f"{text}; nothing done")
        if incoming.left_out is not None:
            return acks.accept(f"left out by the {incoming.left_out} filter; nothing started")
        body = {"flowId": None, "timeZone": self.zone.key, "instances": [{"parameters": incoming.params}]}
        try:
            # optimistic: the look-up above found no active instance; a racing one trips the
            # unique index, and the caller tries again (then it finds that instance)
            result = trigger(
                self.conn, self.jv, body, self.now, phi=self.phi, max_instances=1, optimistic=True
            )
        except TriggerError as exc:
            return _refused(exc, incoming)
        iid = result.instance_ids[0]
        self.audit(Action.INSTANCES_TRIGGER, iid)
        return acks.accept(f"started instance {iid}", iid)

    def subflow(self, incoming: Incoming, active: dict[str, Any]) -> Ack:
        action = incoming.action
        iid = str(active["instance_id"])
        if action.changes_only and not self.changed(incoming.params, active):
            return acks.accept(f"no mapped parameter changed; instance {iid} left as it is", iid)
        body = {
            "flowId": action.subflow,
            "timeZone": self.zone.key,
            "instances": [{"parameters": incoming.params}],
        }
        try:
            trigger(self.conn, self.jv, body, self.now, phi=self.phi, max_instances=1)
        except TriggerError as exc:
            return _refused(exc, incoming)
        self.audit(Action.INSTANCES_SUBFLOW, iid)
        return acks.accept(f"started subflow {action.subflow} on instance {iid}", iid)

    def cancel(self, active: dict[str, Any] | None) -> Ack:
        if active is None:
            return acks.accept("no active instance for this appointment; nothing to cancel")
        iid = str(active["instance_id"])
        instance_service.cancel(self.conn, self.jv, iid, lambda: self.now, by=self.by)
        self.audit(Action.INSTANCES_CANCEL, iid)
        return acks.accept(f"cancelled instance {iid}", iid)

    def changed(self, new: dict[str, str], active: dict[str, Any]) -> bool:
        """Whether a value differs from the instance's (a time compared as a moment)."""
        current: dict[str, str] = self.phi.open_json(active["parameters"])
        own_zone = get_zone(str(active["time_zone"])) or self.zone
        for name, value in new.items():
            p = self.jv.definition.parameter(name)
            if p is not None and p.type == "datetime":
                if parse_datetime(current.get(name, ""), own_zone) != parse_datetime(value, self.zone):
                    return True
            elif current.get(name, "").strip() != value.strip():
                return True
        return False

    def audit(self, action: Action, iid: str) -> None:
        audit.record(self.conn, self.actor.entry(self.jv.org_id, action, "instance", (iid,), 1))
