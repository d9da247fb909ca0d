"""Inbound replies (SQL only)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.tables import ACTIVE_LITERAL, inbound_messages, journey_instances

ji = journey_instances


def find_waiting(conn: Connection, org_id: str, phone_key: str, now: Any) -> dict[str, Any] | None:
    """The instance of the org that most recently started waiting for a reply from the number
    `phone_key` stands for (journeys.keys.phi), and
    whose wait has not timed out (a reply after the deadline does not count as the answer)."""
    q = (
        sa.select(ji.c.instance_id, ji.c.journey_id, ji.c.state, ji.c.rev)
        .where(
            ji.c.org_id == org_id,
            ji.c.waiting_reply_phone == phone_key,
            ji.c.status == ACTIVE_LITERAL,
            ji.c.due_at > now,
        )
        .order_by(ji.c.last_event_at.desc(), ji.c.instance_id.desc())
        .limit(1)
        .with_for_update()
    )
    row = conn.execute(q).mappings().first()
    return dict(row) if row else None


def deliver_reply(
    conn: Connection, org_id: str, instance_id: str, rev: int, state_json: str, now: Any
) -> bool:
    """Hand the reply to the instance and make it due now (guarded by rev)."""
    result = conn.execute(
        ji.update()
        .where(ji.c.org_id == org_id, ji.c.instance_id == instance_id, ji.c.rev == rev)
        .values(state=state_json, due_at=now, waiting_reply_phone=None, lease_owner=None, rev=ji.c.rev + 1)
    )
    return bool(result.rowcount)


def insert_inbound(conn: Connection, **values: Any) -> None:
    conn.execute(inbound_messages.insert().values(**values))


def find_by_provider_id(conn: Connection, org_id: str, provider_message_id: str) -> dict[str, Any] | None:
    im = inbound_messages
    row = (
        conn.execute(
            sa.select(im.c.message_id, im.c.instance_id).where(
                im.c.org_id == org_id, im.c.provider_message_id == provider_message_id
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def list_inbound(conn: Connection, org_id: str, unmatched_only: bool, limit: int) -> list[dict[str, Any]]:
    q = (
        sa.select(inbound_messages)
        .where(inbound_messages.c.org_id == org_id)
        # newest first; replies received at the same moment by id (time-ordered): a stable order
        .order_by(inbound_messages.c.received_at.desc(), inbound_messages.c.message_id.desc())
        .limit(limit)
    )
    if unmatched_only:
        q = q.where(inbound_messages.c.instance_id.is_(None), inbound_messages.c.kind == "reply")
    return [dict(r) for r in conn.execute(q).mappings()]


def inbound_by_ids(conn: Connection, org_id: str, message_ids: list[str]) -> list[dict[str, Any]]:
    """The org's inbound messages with these ids (by primary key)."""
    if not message_ids:
        return []
    im = inbound_messages
    q = sa.select(im).where(im.c.org_id == org_id, im.c.message_id.in_(sorted(set(message_ids))))
    return [dict(r) for r in conn.execute(q).mappings()]


# The predicates of the partial indexes ix_inbound_messages_unmatched and _unhandled, as literals so
# both databases can prove the index applies.
_UNMATCHED = sa.text("inbound_messages.instance_id IS NULL AND inbound_messages.kind = 'reply'")
_UNHANDLED = sa.text(
    "inbound_messages.instance_id IS NULL AND inbound_messages.kind = 'reply' "
    "AND inbound_messages.handled_at IS NULL"
)


def page_unmatched(
    conn: Connection,
    org_id: str,
    include_handled: bool,
    before: tuple[Any, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The org's unmatched replies (not consent keywords), newest first, keyset-paged by
    (received_at, message_id); handled ones only with `include_handled`."""
    im = inbound_messages
    q = sa.select(im).where(im.c.org_id == org_id, _UNMATCHED if include_handled else _UNHANDLED)
    if before is not None:
        at, key = before
        q = q.where(
            im.c.received_at <= at,  # a range the index scan can start from
            sa.or_(im.c.received_at < at, sa.and_(im.c.received_at == at, im.c.message_id < key)),
        )
    q = q.order_by(im.c.received_at.desc(), im.c.message_id.desc()).limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]


def get_unmatched(conn: Connection, org_id: str, message_id: str) -> dict[str, Any] | None:
    im = inbound_messages
    q = sa.select(im).where(im.c.org_id == org_id, im.c.message_id == message_id, _UNMATCHED)
    row = conn.execute(q.with_for_update()).mappings().first()
    return dict(row) if row else None


def set_handled(conn: Connection, org_id: str, message_id: str, user_id: str, now: Any) -> bool:
    """Mark an unmatched reply handled by `user_id` unless it already is; whether it was marked."""
    im = inbound_messages
    result = conn.execute(
        im.update()
        .where(im.c.org_id == org_id, im.c.message_id == message_id, im.c.handled_at.is_(None))
        .values(handled_at=now, handled_by=user_id)
    )
    return bool(result.rowcount)
