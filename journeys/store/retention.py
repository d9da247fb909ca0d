"""Erasing patient data: instances reduced to tombstones, and what else holds a patient's data
(SQL only; journeys.lifecycle decides what and when).

A tombstone keeps an instance's ids, journey, version, status, dates and steps (its timeline's
kinds and step ids), and loses its parameters, interpreter state, searchable rows, messages,
replies and the details of its timeline events. Set-based: one statement per table per chunk."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from journeys.store.backends import backend_for
from journeys.store.bulk import one_of
from journeys.store.tables import (
    ACTIVE,
    inbound_messages,
    instance_events,
    instance_parameters,
    journey_instances,
    orgs,
    outbox,
    sms_consent,
)

ji, ip = journey_instances, instance_parameters
CHUNK = 500
ERASED = ""  # a consent record's sealed number once erased: only its blind index is kept


def drop_erased_pages(engine: Engine) -> None:
    """After a purge or an erasure (journeys.store.backends)."""
    backend_for(engine).drop_erased_pages(engine)


def org_retention(conn: Connection, org_id: str) -> tuple[bool, int | None]:
    """(whether the org exists, its retention in days: None for the deployment's default)."""
    row = conn.execute(sa.select(orgs.c.retention_days).where(orgs.c.org_id == org_id)).first()
    return (False, None) if row is None else (True, row[0])


def set_org_retention(conn: Connection, org_id: str, days: int | None) -> bool:
    """Set the org's retention (None: the default); False when there is no such org."""
    changed = conn.execute(orgs.update().where(orgs.c.org_id == org_id).values(retention_days=days))
    return bool(changed.rowcount)


def _purgeable(org_id: str, journey_id: str, cutoff: datetime) -> Any:
    """Instances of the journey that ended before `cutoff` and still hold their data (along
    ix_journey_instances_purgeable)."""
    return sa.and_(
        ji.c.org_id == org_id,
        ji.c.journey_id == journey_id,
        ji.c.ended_at.is_not(None),
        ji.c.purged_at.is_(None),
        ji.c.ended_at < cutoff,
    )


def purgeable_ids(conn: Connection, org_id: str, journey_id: str, cutoff: datetime, limit: int) -> list[str]:
    q = sa.select(ji.c.instance_id).where(_purgeable(org_id, journey_id, cutoff))
    return [r[0] for r in conn.execute(q.order_by(ji.c.ended_at).limit(limit))]


def count_purgeable(conn: Connection, org_id: str, journey_id: str, cutoff: datetime) -> int:
    q = sa.select(sa.func.count()).select_from(ji).where(_purgeable(org_id, journey_id, cutoff))
    return int(conn.execute(q).scalar_one())


def tombstone(conn: Connection, org_id: str, instance_ids: Sequence[str], now: datetime) -> tuple[int, int]:
    """Reduce the instances to tombstones; an active one is cancelled first (ended now).
    Returns how many of their messages and replies were deleted."""
    messages = replies = 0
    for start in range(0, len(instance_ids), CHUNK):
        chunk = list(instance_ids[start : start + CHUNK])
        conn.execute(
            ji.update()
            .where(ji.c.org_id == org_id, one_of(conn, ji.c.instance_id, chunk))
            .values(
                status=sa.case((ji.c.status == ACTIVE, "Cancelled"), else_=ji.c.status),
                ended_at=sa.func.coalesce(ji.c.ended_at, now),
                due_at=None,
                lease_owner=None,
                rev=ji.c.rev + 1,
                parameters="{}",
                state="{}",
                identifier_key=None,
                waiting_reply_phone=None,
                last_error=None,
                purged_at=now,
            )
        )
        deleted = [
            conn.execute(t.delete().where(t.c.org_id == org_id, one_of(conn, t.c.instance_id, chunk)))
            for t in (instance_parameters, outbox, inbound_messages)
        ]
        messages, replies = messages + deleted[1].rowcount, replies + deleted[2].rowcount
        ev = instance_events
        of_chunk = sa.and_(ev.c.org_id == org_id, one_of(conn, ev.c.instance_id, chunk))
        conn.execute(ev.update().where(of_chunk).values(detail="{}"))
    return messages, replies


# ---------------------------------------------------------------- one patient's data
def instances_with(
    conn: Connection, org_id: str, journey_id: str, name: str, values: Sequence[str]
) -> list[str]:
    """The journey's instances (not yet erased) whose searchable parameter `name` holds one of
    `values` (as stored: blind indexes where the org's data is encrypted)."""
    q = sa.select(ip.c.instance_id).where(
        ip.c.org_id == org_id,
        ip.c.journey_id == journey_id,
        ip.c.name == name,
        one_of(conn, ip.c.value, list(values)),
    )
    return sorted({r[0] for r in conn.execute(q)})


def instance_rows(conn: Connection, org_id: str, instance_ids: Sequence[str]) -> list[dict[str, Any]]:
    """instance_id, journey_id, version, parameters (as stored) of the instances."""
    out = []
    for start in range(0, len(instance_ids), CHUNK):
        chunk = list(instance_ids[start : start + CHUNK])
        q = sa.select(ji.c.instance_id, ji.c.journey_id, ji.c.version, ji.c.parameters).where(
            ji.c.org_id == org_id, one_of(conn, ji.c.instance_id, chunk)
        )
        out += [dict(r) for r in conn.execute(q).mappings()]
    return out


def delete_messages_to(conn: Connection, org_id: str, recipients: Sequence[str]) -> int:
    """Delete the org's outbox messages to any of `recipients` (as stored in to_address)."""
    if not recipients:
        return 0
    q = outbox.delete().where(outbox.c.org_id == org_id, one_of(conn, outbox.c.to_address, list(recipients)))
    return int(conn.execute(q).rowcount)


def unmatched_inbound(conn: Connection, org_id: str, after: str, limit: int) -> list[dict[str, Any]]:
    """The org's inbound messages that answered no instance (message_id, from_address), in id
    order after `after`."""
    im = inbound_messages
    q = (
        sa.select(im.c.message_id, im.c.from_address)
        .where(im.c.org_id == org_id, im.c.instance_id.is_(None), im.c.message_id > after)
        .order_by(im.c.message_id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def delete_inbound(conn: Connection, org_id: str, message_ids: Sequence[str]) -> None:
    im = inbound_messages
    if message_ids:
        ids = list(message_ids)
        conn.execute(im.delete().where(im.c.org_id == org_id, one_of(conn, im.c.message_id, ids)))


def erase_consent_numbers(conn: Connection, org_id: str, phones: Sequence[str]) -> int:
    """Keep the consent records of `phones` (as stored) by their blind index only: the sealed
    number and staff's note go; the status stays, so a STOP is still honoured."""
    if not phones:
        return 0
    sc = sms_consent
    q = (
        sc.update()
        .where(sc.c.org_id == org_id, one_of(conn, sc.c.phone, list(phones)), sc.c.number.is_not(None))
        .values(number=ERASED, reason=None)
    )
    return int(conn.execute(q).rowcount)
