"""Patient replies: route an inbound SMS to the instance waiting for it (services; never commit)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from journeys.channels.phone import normalise_phone
from journeys.clock import iso_z
from journeys.definitions.values import NUL_PROBLEM, has_nul
from journeys.engine.consent import apply_keyword
from journeys.engine.timeline import event_row
from journeys.errors import Invalid
from journeys.ids import new_id
from journeys.store import replies as repo
from journeys.store.events import insert_events
from journeys.store.work import notify_due

MAX_REPLY_CHARS = 1600  # ten SMS segments
REPLY = "reply"
# The stored kind of an inbound message, as the API names it: a consent keyword was handled.
KIND_JSON = {REPLY: "reply", "opt_out": "optOut", "opt_in": "optIn", "help": "help"}


class ReplyError(Invalid):
    pass


@dataclass(frozen=True)
class ReplyResult:
    message_id: str
    matched: bool
    instance_id: str | None
    duplicate: bool = False  # the provider's message id was seen before: nothing was done


def receive_reply(
    conn: Connection,
    org_id: str,
    from_: object,
    body: object,
    now: datetime,
    source: str,
    provider_message_id: str | None = None,
) -> ReplyResult:
    """Record an inbound SMS and, when an instance of the org waits for a reply from that number
    (the most recent if several), hand it over: the instance runs its reply branch at once.
    Otherwise it is stored as an unmatched reply.

    `provider_message_id` (Twilio's MessageSid) makes a redelivery harmless: a message already
    recorded under that id is answered with the first outcome (`duplicate`) and nothing else
    happens. Two deliveries at once are settled by the unique index: the second transaction
    fails with an IntegrityError and its caller treats it as the duplicate it is."""
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
    if provider_message_id is not None:
        seen = repo.find_by_provider_id(conn, org_id, provider_message_id)
        if seen is not None:
            instance = seen["instance_id"]
            return ReplyResult(seen["message_id"], instance is not None, instance, duplicate=True)
    message_id = new_id()
    keyword = apply_keyword(conn, org_id, phone, body, now)  # STOP / START / HELP: not a reply
    waiting = None if keyword else repo.find_waiting(conn, org_id, phone, now)
    instance_id = None
    if waiting is not None:
        state = json.loads(waiting["state"] or "{}")
        state["reply"] = {"text": body, "at": iso_z(now), "messageId": message_id}
        if repo.deliver_reply(conn, org_id, waiting["instance_id"], waiting["rev"], json.dumps(state), now):
            instance_id = waiting["instance_id"]
            notify_due(conn)
            insert_events(
                conn,
                [
                    event_row(
                        org_id, instance_id, now, None, None, None, "reply_arrived", {"messageId": message_id}
                    )
                ],
            )
    repo.insert_inbound(
        conn,
        org_id=org_id,
        message_id=message_id,
        channel="sms",
        from_address=phone,
        body=body,
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


def list_replies(conn: Connection, org_id: str, unmatched_only: bool, limit: int) -> list[dict[str, object]]:
    """Inbound SMS of the org, newest first (for staff). `unmatched_only`: the ones that need a
    human — replies no instance was waiting for; consent keywords (STOP, START, HELP …) were
    handled and are left out (`kind` marks them in the full list)."""
    return [
        {
            "id": r["message_id"],
            "from": r["from_address"],
            "body": r["body"],
            "receivedDateTime": iso_z(r["received_at"]),
            "instanceId": r["instance_id"],
            "matched": r["instance_id"] is not None,
            "source": r["source"],
            "kind": KIND_JSON.get(r["kind"], r["kind"]),
        }
        for r in repo.list_inbound(conn, org_id, unmatched_only, limit)
    ]
