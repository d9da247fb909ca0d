"""Applying one SIU message to its feed's journey: start (S12), a subflow (S13, S14, S26), cancel
(S15, S17), as the feed's mapping says. The bulk trigger and the cancel service do the writing,
so the API's rules hold; the message's row (journeys.store.feeds) is written in the same
transaction, so a redelivery is acknowledged the same way and applied once.

`handle` takes a connection and never commits; `process` is the unit the listener runs: one
transaction per message, committed only when the message is accepted (AA), so a message that
gets AE or AR writes nothing."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

import journeys.catalog.service as catalog
from journeys.accounts import audit
from journeys.accounts.audit import Action, ActorKind
from journeys.catalog.service import JourneyVersion
from journeys.definitions.values import get_zone, parse_datetime
from journeys.feeds import ack as acks
from journeys.feeds.ack import Ack
from journeys.feeds.bind import Feed
from journeys.feeds.mapping import EventAction
from journeys.feeds.siu import VERSIONS, FieldRef, Message, MessageProblem, parse_message
from journeys.feeds.transforms import ValueProblem, read_source
from journeys.instances import service as instance_service
from journeys.instances.trigger import ConcurrentChange, TriggerError, identifier_key, trigger
from journeys.keys.phi import OrgPhi
from journeys.store import feeds as repo
from journeys.store import instances as instances_repo

log = logging.getLogger("journeys.feeds")
MAX_CONTROL_ID = 199


@dataclass(frozen=True)
class Outcome:
    """A processed message: its header (None when it could not be read) and acknowledgement."""

    header_ok: bool
    message: Message | None
    ack: Ack


@dataclass(frozen=True)
class _Values:
    params: dict[str, str]
    origin: dict[str, FieldRef | None]  # where each value came from (for messages)


def _check_header(feed: Feed, msg: Message) -> Ack | None:
    h = msg.header
    if not h.control_id:
        return acks.reject("MSH-10 (the message control id) is empty", "101")
    if len(h.control_id) > MAX_CONTROL_ID:
        return acks.reject(f"MSH-10 is longer than {MAX_CONTROL_ID} characters", "102")
    if h.message_type != "SIU":
        return acks.reject(
            f"message type {h.message_type or '(none)'} is not handled: this feed takes SIU", "200"
        )
    if h.version not in VERSIONS:
        return acks.reject(
            f"HL7 version {h.version or '(none)'} is not supported ({', '.join(VERSIONS)})", "203"
        )
    if feed.mapping.action(h.event) is None:
        return acks.reject(
            f"event {h.event or '(none)'} is not handled by feed {feed.name} "
            "(map it in the feed's events: to handle or ignore it)",
            "201",
        )
    return None


def _values(feed: Feed, msg: Message, zone: ZoneInfo) -> _Values:
    params: dict[str, str] = {}
    origin: dict[str, FieldRef | None] = {}
    for name, src in feed.mapping.parameters:
        value, ref = read_source(msg, src, zone, feed.mapping.phone_region)
        if value:
            params[name] = value
            origin[name] = ref
    return _Values(params, origin)


def _scrub(messages: list[str], values: _Values) -> str:
    """The trigger's messages without the values they quote: each is named by its field."""
    out = []
    for text in messages:
        text = text.replace("instances[0].parameters.", "").replace("instances[0]: ", "")
        for name, value in values.params.items():
            ref = values.origin.get(name)
            text = text.replace(json.dumps(value, ensure_ascii=False), f"(from {ref or 'the mapping'})")
        out.append(text)
    return "; ".join(out)


def _refused(exc: TriggerError, values: _Values) -> Ack:
    """AE with the journey's own reasons: 101 when a required value is missing, else 102."""
    missing = any("required parameter" in m for m in exc.messages)
    return acks.error(_scrub(exc.messages, values), "101" if missing else "102")


def _admitted(feed: Feed, msg: Message) -> str | None:
    """None when the filters admit the appointment, else the filter that leaves it out."""
    for f in feed.mapping.filters:
        if not f.admits(msg.values(f.field)):
            return f.name
    return None


class _Apply:
    """One message's effect, in the caller's transaction."""

    def __init__(
        self, conn: Connection, feed: Feed, jv: JourneyVersion, msg: Message, now: datetime, phi: OrgPhi
    ) -> None:
        self.conn, self.feed, self.jv, self.msg, self.now, self.phi = conn, feed, jv, msg, now, phi
        self.zone = get_zone(feed.mapping.time_zone) or ZoneInfo("UTC")

    def run(self, action: EventAction) -> Ack:
        if action.action == "ignore":
            return acks.accept(f"{self.msg.header.event} is ignored by feed {self.feed.name}")
        try:
            values = _values(self.feed, self.msg, self.zone)
        except ValueProblem as exc:
            return acks.error(str(exc), "102")
        ids = self.jv.definition.identifier_parameters
        empty = [p.name for p in ids if not values.params.get(p.name, "").strip()]
        if empty:
            fields = ", ".join(f"{n} ({_refs(self.feed, n)})" for n in empty)
            return acks.error(f"the appointment cannot be identified: {fields} empty", "101")
        key = identifier_key(self.jv.definition, values.params, self.phi)
        found = instances_repo.find_active_by_identifier(
            self.conn, self.jv.org_id, self.jv.journey_id, [key or ""], lock=action.action != "start"
        )
        active = found.get(key or "")
        if action.action == "cancel":
            return self.cancel(active)
        if action.action == "start" or active is None:
            return self.start(values, active, action)
        return self.subflow(values, active, action)

    def start(self, values: _Values, active: dict[str, Any] | None, action: EventAction) -> Ack:
        if active is not None:
            iid = str(active["instance_id"])
            return acks.accept(f"instance {iid} is already active for this appointment; nothing started", iid)
        if action.action == "subflow" and action.when_missing != "start":
            text = "no active instance for this appointment"
            if action.when_missing == "error":
                return acks.error(text, "204")
            return acks.accept(f"{text}; nothing done")
        left_out = _admitted(self.feed, self.msg)
        if left_out is not None:
            return acks.accept(f"left out by the feed's {left_out} filter; nothing started")
        body = {"flowId": None, "timeZone": self.zone.key, "instances": [{"parameters": values.params}]}
        try:
            # optimistic: the look-up above found no active instance; a racing one trips the unique
            # index, and `process` tries the message again (then it finds that instance)
            result = trigger(
                self.conn, self.jv, body, self.now, phi=self.phi, max_instances=1, optimistic=True
            )
        except TriggerError as exc:
            return _refused(exc, values)
        iid = result.instance_ids[0]
        self.audit(Action.INSTANCES_TRIGGER, iid)
        return acks.accept(f"started instance {iid}", iid)

    def subflow(self, values: _Values, active: dict[str, Any], action: EventAction) -> Ack:
        iid = str(active["instance_id"])
        if action.changes_only and not self.changed(values.params, active):
            return acks.accept(f"no mapped parameter changed; instance {iid} left as it is", iid)
        body = {
            "flowId": action.subflow,
            "timeZone": self.zone.key,
            "instances": [{"parameters": values.params}],
        }
        try:
            trigger(self.conn, self.jv, body, self.now, phi=self.phi, max_instances=1)
        except TriggerError as exc:
            return _refused(exc, values)
        self.audit(Action.INSTANCES_SUBFLOW, iid)
        return acks.accept(f"started subflow {action.subflow} on instance {iid}", iid)

    def cancel(self, active: dict[str, Any] | None) -> Ack:
        if active is None:
            return acks.accept("no active instance for this appointment; nothing to cancel")
        iid = str(active["instance_id"])
        instance_service.cancel(self.conn, self.jv, iid, lambda: self.now, by=f"feed:{self.feed.name}")
        self.audit(Action.INSTANCES_CANCEL, iid)
        return acks.accept(f"cancelled instance {iid}", iid)

    def changed(self, new: dict[str, str], active: dict[str, Any]) -> bool:
        current: dict[str, str] = self.phi.open_json(active["parameters"])
        own_zone = get_zone(str(active["time_zone"])) or self.zone
        for name, value in new.items():
            p = self.jv.definition.parameter(name)
            if p is not None and p.type == "datetime":
                old = parse_datetime(current.get(name, ""), own_zone)
                if old != parse_datetime(value, self.zone):
                    return True
            elif current.get(name, "").strip() != value.strip():
                return True
        return False

    def audit(self, action: Action, iid: str) -> None:
        actor = audit.Actor(ActorKind.FEED, self.feed.name, self.now)
        audit.record(self.conn, actor.entry(self.jv.org_id, action, "instance", (iid,), 1))


def _refs(feed: Feed, name: str) -> str:
    src = feed.mapping.source(name)
    if src is None or src.value is not None:
        return "not mapped"
    return " or ".join(str(r) for r in src.fields)


def handle(conn: Connection, feed: Feed, msg: Message, now: datetime, phi: OrgPhi) -> Ack:
    """Apply the message (or find it applied before); the caller commits when it is accepted."""
    bad = _check_header(feed, msg)
    if bad is not None:
        return bad
    h = msg.header
    sender = h.sender[:255]
    before = repo.applied(conn, feed.org_id, feed.name, sender, h.control_id)
    if before is not None:
        return Ack(before["ack_code"], before["ack_text"], None, before["instance_id"], duplicate=True)
    jv = catalog.get_latest(conn, feed.org_id, feed.journey_id)
    if jv is None:
        return acks.error(f"feed {feed.name}'s journey no longer exists", "207")
    action = feed.mapping.action(h.event)
    assert action is not None  # _check_header
    result = _Apply(conn, feed, jv, msg, now, phi).run(action)
    if result.accepted:
        repo.record_applied(
            conn,
            feed.org_id,
            feed.name,
            sender,
            h.control_id,
            h.event,
            now,
            result.code,
            result.text,
            result.instance_id,
        )
    return result


RETRIES = 3


def process(engine: Engine, feed: Feed, data: bytes, clock: Callable[[], datetime], phi: OrgPhi) -> Outcome:
    """Parse and apply one message in its own transaction, committed only when accepted. A
    concurrent delivery of the same message, or a change racing the subflow, is tried again; a
    database that cannot be reached gets AE (the sender sends it again)."""
    try:
        msg = parse_message(data)
    except MessageProblem as exc:
        return Outcome(False, None, acks.reject(str(exc), exc.code))
    for attempt in range(RETRIES):
        try:
            with engine.connect() as conn:
                tx = conn.begin()
                result = handle(conn, feed, msg, clock(), phi)
                if result.accepted and not result.duplicate:
                    tx.commit()
                else:
                    tx.rollback()
                return Outcome(True, msg, result)
        except (IntegrityError, ConcurrentChange):
            if attempt == RETRIES - 1:
                return Outcome(
                    True, msg, acks.error("the appointment changed meanwhile; send it again", "206")
                )
        except DBAPIError as exc:
            log.warning(
                "feed %s: message %s not applied: %s", feed.name, msg.header.control_id, type(exc).__name__
            )
            return Outcome(
                True, msg, acks.error("the database is unavailable; send the message again", "207")
            )
    raise AssertionError("unreachable")
