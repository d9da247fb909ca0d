"""Applying one SIU message to its feed's journey: start (S12), a subflow (S13, S14, S26), cancel
(S15, S17), as the feed's mapping says (journeys.feeds.effects does it). The message's row
(journeys.store.feeds) is written in the same transaction, so a redelivery is acknowledged the
same way and applied once.

`handle` takes a connection and never commits; `process` is the unit the listener runs: one
transaction per message, committed only when the message is accepted (AA), so a message that
gets AE or AR writes nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

import journeys.catalog.service as catalog
from journeys.accounts.audit import Actor, ActorKind
from journeys.definitions.values import get_zone
from journeys.feeds import ack as acks
from journeys.feeds.ack import Ack
from journeys.feeds.bind import Feed
from journeys.feeds.effects import Applier, Incoming
from journeys.feeds.mapping import EventAction
from journeys.feeds.siu import VERSIONS, FieldRef, Message, MessageProblem, parse_message
from journeys.feeds.transforms import ValueProblem, read_source
from journeys.instances.trigger import ConcurrentChange
from journeys.keys.phi import OrgPhi
from journeys.store import feeds as repo

log = logging.getLogger("journeys.feeds")
MAX_CONTROL_ID = 199


@dataclass(frozen=True)
class Outcome:
    """A processed message (None when it could not be read) and its acknowledgement."""

    message: Message | None
    ack: Ack


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


def _values(msg: Message, ref: object) -> list[str]:
    return msg.values(ref) if isinstance(ref, FieldRef) else []


def read_incoming(feed: Feed, msg: Message, action: EventAction) -> Incoming:
    """The message's parameters as the mapping reads them; raises ValueProblem."""
    zone = get_zone(feed.mapping.time_zone) or ZoneInfo("UTC")
    params: dict[str, str] = {}
    sources: dict[str, str] = {}
    origin: dict[str, str] = {}
    for name, src in feed.mapping.parameters:
        sources[name] = src.describe()
        value, ref = read_source(msg, src, zone, feed.mapping.phone_region)
        if value:
            params[name] = value
            origin[name] = str(ref) if ref is not None else "the mapping"
    refused = [f for f in feed.mapping.filters if not f.admits(_values(msg, f.field))]
    left_out = refused[0].name if refused else None
    return Incoming(msg.header.event, action, params, sources, origin, left_out)


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
    try:
        incoming = read_incoming(feed, msg, action)
    except ValueProblem as exc:
        return acks.error(str(exc), "102")
    actor = Actor(ActorKind.FEED, feed.name, now)
    applier = Applier(conn, jv, feed.mapping.time_zone, actor, f"feed:{feed.name}", now, phi)
    result = applier.apply(incoming)
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
        return Outcome(None, acks.reject(str(exc), exc.code))
    for attempt in range(RETRIES):
        try:
            with engine.connect() as conn:
                tx = conn.begin()
                result = handle(conn, feed, msg, clock(), phi)
                if result.accepted and not result.duplicate:
                    tx.commit()
                else:
                    tx.rollback()
                return Outcome(msg, result)
        except (IntegrityError, ConcurrentChange):
            if attempt == RETRIES - 1:
                return Outcome(
                    msg, acks.error("the appointment changed meanwhile; send it again", "206")
                )
        except DBAPIError as exc:
            log.warning(
                "feed %s: message %s not applied: %s", feed.name, msg.header.logged_id, type(exc).__name__
            )
            return Outcome(
                msg, acks.error("the database is unavailable; send the message again", "207")
            )
    raise AssertionError("unreachable")
