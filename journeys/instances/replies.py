"""Patient replies: route an inbound SMS to the instance waiting for it (services; never commit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from msgspec.structs import replace
from sqlalchemy.engine import Connection

from journeys.clock import iso_z
from journeys.definitions.values import NUL_PROBLEM, has_nul
from journeys.engine.state import InstanceState, ReplyGiven
from journeys.errors import Invalid, NotFound
from journeys.ids import new_id
from journeys.keys.phi import OrgPhi
from journeys.messaging.consent import apply_keyword
from journeys.messaging.phone import normalise_phone
from journeys.store import replies as repo
from journeys.store.work import notify_due
from journeys.timeline import event_row
from journeys.webhooks.events import record_events

MAX_REPLY_CHARS = 1600  # ten SMS segments
REPLY = "reply"  # the kind of an inbound message that is a reply (else the consent keyword's)


class ReplyError(Invalid):
    pass


@dataclass(frozen=True)
class ReplyResult:
    message_id: str
    matched: bool
    instance_id: str | None
    duplicate: bool = False  # the provider's message id was seen before: nothing was done


def _check(from_: object, body: object) -> tuple[str, str]:
    """The sender's normalised number and the body; raises ReplyError naming every problem."""
    errors = []
    phone = normalise_phone(from_) if isinstance(from_, str) and not has_nul(from_) else None
    if isinstance(from_, str) and has_nul(from_):
        errors.append(f"from: {NUL_PROBLEM}")
    elif phone is None:
        errors.append("from: must be a phone number")
    if not isinstance(body, str):
        errors.append("body: must be a string")
    elif has_nul(body):
        errors.append(f"body: {NUL_PROBLEM}")
    elif len(body) > MAX_REPLY_CHARS:
        errors.append(f"body: at most {MAX_REPLY_CHARS} characters")
    if errors:
        raise ReplyError(errors)
    assert phone is not None and isinstance(body, str)
    return phone, body


def _hand_over(
    conn: Connection, phi: OrgPhi, phone: str, body: str, message_id: str, now: datetime
) -> str | None:
    """Give the reply to the instance waiting for one from `phone` (the most recent), which runs
    its reply branch at once; the instance's id, or None when none waits."""
    org_id = phi.org_id
    waiting = repo.find_waiting(conn, org_id, phi.phone_key(phone), now)
    if waiting is None:
        return None
    state = InstanceState.from_json(phi.open(waiting["state"]))
    state = replace(state, reply=ReplyGiven(body, iso_z(now), message_id))
    instance_id: str = waiting["instance_id"]
    if not repo.deliver_reply(conn, org_id, instance_id, waiting["rev"], phi.seal(state.to_json()), now):
        return None
    notify_due(conn)
    detail = {"messageId": message_id}
    record_events(conn, [event_row(org_id, instance_id, now, None, None, None, "reply_arrived", detail)])
    return instance_id


def receive_reply(
    conn: Connection,
    org_id: str,
    from_: object,
    body: object,
    now: datetime,
    source: str,
    provider_message_id: str | None = None,
    *,
    phi: OrgPhi,
) -> ReplyResult:
    """Record an inbound SMS and, when an instance of the org waits for a reply from that number
    (the most recent if several), hand it over: the instance runs its reply branch at once.
    Otherwise it is stored as an unmatched reply.

    `provider_message_id` (Twilio's MessageSid) makes a redelivery harmless: a message already
    recorded under that id is answered with the first outcome (`duplicate`) and nothing else
    happens. Two deliveries at once are settled by the unique index: the second transaction
    fails with an IntegrityError and its caller treats it as the duplicate it is."""
    phone, text = _check(from_, body)
    if provider_message_id is not None:
        seen = repo.find_by_provider_id(conn, org_id, provider_message_id)
        if seen is not None:
            instance = seen["instance_id"]
            return ReplyResult(seen["message_id"], instance is not None, instance, duplicate=True)
    message_id = new_id()
    keyword = apply_keyword(conn, org_id, phone, text, now, phi)  # STOP / START / HELP: not a reply
    instance_id = None if keyword else _hand_over(conn, phi, phone, text, message_id, now)
    repo.insert_inbound(
        conn,
        org_id=org_id,
        message_id=message_id,
        channel="sms",
        from_address=phi.seal(phone),
        body=phi.seal(text),
        received_at=now,
        instance_id=instance_id,
        source=source,
        provider_message_id=provider_message_id,
        kind=keyword or REPLY,
    )
    return ReplyResult(message_id, instance_id is not None, instance_id)


def already_received(conn: Connection, org_id: str, provider_message_id: str) -> bool:
    """Whether a message with this provider id (Twilio's MessageSid) is recorded for the org."""
    return repo.find_by_provider_id(conn, org_id, provider_message_id) is not None


@dataclass(frozen=True, slots=True)
class InboundReply:
    """An inbound SMS as recorded. `kind`: `reply`, or the consent keyword it was handled as
    (`opt_out`, `opt_in`, `help`)."""

    message_id: str
    from_address: str
    body: str
    received_at: datetime
    instance_id: str | None  # the instance it was handed to (None: unmatched)
    source: str
    kind: str
    handled_at: datetime | None = None  # an unmatched reply staff dealt with: when, and who
    handled_by: str | None = None


def _inbound(r: dict[str, Any], phi: OrgPhi) -> InboundReply:
    return InboundReply(
        r["message_id"],
        phi.open(r["from_address"]),
        phi.open(r["body"]),
        r["received_at"],
        r["instance_id"],
        r["source"],
        r["kind"],
        r.get("handled_at"),
        r.get("handled_by"),
    )


def list_replies(conn: Connection, phi: OrgPhi, unmatched_only: bool, limit: int) -> list[InboundReply]:
    """Inbound SMS of the org, newest first (for staff). `unmatched_only`: the ones that need a
    human — replies no instance was waiting for; consent keywords (STOP, START, HELP …) were
    handled and are left out (`kind` marks them in the full list)."""
    return [_inbound(r, phi) for r in repo.list_inbound(conn, phi.org_id, unmatched_only, limit)]


def inbox(
    conn: Connection,
    phi: OrgPhi,
    *,
    include_handled: bool,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[InboundReply]:
    """The replies that need a human: unmatched replies (not consent keywords), newest first,
    keyset-paged by (received_at, message_id); handled ones only with `include_handled`."""
    rows = repo.page_unmatched(conn, phi.org_id, include_handled, before, limit)
    return [_inbound(r, phi) for r in rows]


def mark_handled(conn: Connection, org_id: str, message_id: str, user_id: str, now: datetime) -> bool:
    """Record that staff member `user_id` dealt with an unmatched reply; False when it already
    was handled (by anyone: the first one stays). NotFound when the org has no unmatched reply
    with that id."""
    if has_nul(message_id) or repo.get_unmatched(conn, org_id, message_id) is None:
        raise NotFound("no unmatched reply with that id")
    return repo.set_handled(conn, org_id, message_id, user_id, now)


def replies_by_id(conn: Connection, phi: OrgPhi, message_ids: list[str]) -> dict[str, InboundReply]:
    """The org's inbound messages with these ids (e.g. those an instance's timeline names)."""
    return {r["message_id"]: _inbound(r, phi) for r in repo.inbound_by_ids(conn, phi.org_id, message_ids)}
