"""Rows stored before patient data was encrypted, read in key order and written back sealed
(`journeys encrypt-existing`; SQL only).

What marks a row as plain: an instance whose parameters are not sealed (`~…`), an outbox
message with no sealed recipient, an inbound message whose sender is not sealed, a consent
record with no sealed number. Each read takes the next `limit` such rows of an org after a
cursor (the last key read), so a pass reads each row once however large the table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.tables import (
    ACTIVE,
    inbound_messages,
    instance_parameters,
    journey_instances,
    outbox,
    sms_consent,
)

SEALED_MARK = "~"
ji, ip = journey_instances, instance_parameters


def _plain(column: Any) -> Any:
    return sa.func.substr(column, 1, 1) != SEALED_MARK


PLAIN = {
    "instances": (ji, ji.c.instance_id, sa.and_(_plain(ji.c.parameters), ji.c.purged_at.is_(None))),
    "messages": (outbox, outbox.c.message_id, outbox.c.recipient.is_(None)),
    "replies": (inbound_messages, inbound_messages.c.message_id, _plain(inbound_messages.c.from_address)),
    "opt-outs": (sms_consent, sms_consent.c.phone, sms_consent.c.number.is_(None)),
}


def count_plain(conn: Connection, org_id: str) -> dict[str, int]:
    """How many plain rows of each kind the org has."""
    out = {}
    for kind, (table, _, plain) in PLAIN.items():
        q = sa.select(sa.func.count()).select_from(table).where(table.c.org_id == org_id, plain)
        out[kind] = int(conn.execute(q).scalar_one())
    return out


def next_plain(conn: Connection, kind: str, org_id: str, after: str, limit: int) -> list[dict[str, Any]]:
    """The org's next `limit` plain rows of `kind` whose key is greater than `after`."""
    table, key, plain = PLAIN[kind]
    q = sa.select(table).where(table.c.org_id == org_id, key > after, plain).order_by(key).limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]


@dataclass(frozen=True, slots=True)
class SealedInstance:
    instance_id: str
    rev: int  # the revision read: a change since wins (the row is left for another pass)
    parameters: str
    state: str
    identifier_key: str | None
    waiting_reply_phone: str | None


def seal_instance(conn: Connection, org_id: str, s: SealedInstance) -> bool:
    """Write an instance's sealed values, guarded by its revision (bumped: a worker batch that
    holds it writes nothing and runs it again)."""
    changed = conn.execute(
        ji.update()
        .where(ji.c.org_id == org_id, ji.c.instance_id == s.instance_id, ji.c.rev == s.rev)
        .values(
            parameters=s.parameters,
            state=s.state,
            identifier_key=s.identifier_key,
            waiting_reply_phone=s.waiting_reply_phone,
            rev=ji.c.rev + 1,
        )
    ).rowcount
    return bool(changed)


def identifier_taken(conn: Connection, org_id: str, journey_id: str, key: str, instance_id: str) -> bool:
    """Whether another active instance of the journey has this identifier key."""
    q = sa.select(ji.c.instance_id).where(
        ji.c.org_id == org_id,
        ji.c.journey_id == journey_id,
        ji.c.identifier_key == key,
        ji.c.status == ACTIVE,
        ji.c.instance_id != instance_id,
    )
    return conn.execute(q.limit(1)).first() is not None


def delete_parameters(conn: Connection, org_id: str, instance_id: str) -> None:
    conn.execute(ip.delete().where(ip.c.org_id == org_id, ip.c.instance_id == instance_id))


def update_row(conn: Connection, kind: str, org_id: str, key: str, values: dict[str, Any]) -> None:
    table, key_column, _ = PLAIN[kind]
    conn.execute(table.update().where(table.c.org_id == org_id, key_column == key).values(values))


def delete_row(conn: Connection, kind: str, org_id: str, key: str) -> None:
    table, key_column, _ = PLAIN[kind]
    conn.execute(table.delete().where(table.c.org_id == org_id, key_column == key))


def consent_updated_at(conn: Connection, org_id: str, phone: str) -> datetime | None:
    """When the consent record kept under `phone` changed last (None: there is none)."""
    sc = sms_consent
    q = sa.select(sc.c.updated_at).where(sc.c.org_id == org_id, sc.c.phone == phone)
    row = conn.execute(q).first()
    return None if row is None else row[0]
