"""SMS consent per org and number (SQL only)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.backends import backend_for
from journeys.store.bulk import one_of
from journeys.store.tables import ACTIVE_LITERAL, journey_instances, outbox, sms_consent


class PhoneKey(Protocol):
    def phone_key(self, phone: str) -> str: ...


OPTED_OUT = "opted_out"
OPTED_IN = "opted_in"
CHUNK = 500


def set_status(
    conn: Connection,
    org_id: str,
    phone: str,
    status: str,
    keyword: str | None,
    now: datetime,
    source: str = "sms",
    reason: str | None = None,
    *,
    only_if_changed: bool = False,
    number: str | None = None,
) -> bool:
    """Record the number's consent (an upsert: concurrent changes to one number do not collide).
    `phone` is what the number is matched by, `number` the number sealed (None: stored plain).
    With `only_if_changed`, a number that already has `status` is left as it is; returns whether
    the row was written (always True without it)."""
    values = {
        "status": status, "keyword": keyword, "source": source, "reason": reason, "updated_at": now,
        "number": number,
    }  # fmt: skip
    where = sms_consent.c.status != status if only_if_changed else None
    q = backend_for(conn).upsert(
        sms_consent, {"org_id": org_id, "phone": phone, **values}, ["org_id", "phone"], values, where
    )
    return conn.execute(q.returning(sms_consent.c.phone)).first() is not None


def opt_in_if_opted_out(
    conn: Connection, org_id: str, phone: str, now: datetime, source: str, reason: str | None = None
) -> bool:
    """Opt the number back in if it is opted out (`reason`: staff's note); returns whether it was."""
    sc = sms_consent
    changed = conn.execute(
        sc.update()
        .where(sc.c.org_id == org_id, sc.c.phone == phone, sc.c.status == OPTED_OUT)
        .values(status=OPTED_IN, keyword=None, source=source, reason=reason, updated_at=now)
        .returning(sc.c.phone)
    ).first()
    return changed is not None


def _not_erased() -> sa.ColumnElement[bool]:
    """Records whose number is known (plain, or sealed): an erased patient's record is kept by
    its blind index only, to honour the STOP, and listed no more (journeys.store.retention)."""
    return sa.or_(sms_consent.c.number.is_(None), sms_consent.c.number != "")


def list_opted_out(conn: Connection, org_id: str, phone: str | None, limit: int) -> list[dict[str, Any]]:
    """The org's opted-out numbers, most recently changed first."""
    sc = sms_consent
    q = sa.select(sc).where(sc.c.org_id == org_id, sc.c.status == OPTED_OUT, _not_erased())
    if phone is not None:
        q = q.where(sc.c.phone == phone)
    q = q.order_by(sc.c.updated_at.desc(), sc.c.phone).limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]


def page_opted_out(
    conn: Connection, org_id: str, before: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    """The org's opted-out numbers, most recently changed first, keyset-paged by
    (updated_at, phone) (ix_sms_consent_org_status_updated)."""
    sc = sms_consent
    q = sa.select(sc).where(sc.c.org_id == org_id, sc.c.status == OPTED_OUT, _not_erased())
    if before is not None:
        at, phone = before
        q = q.where(
            sc.c.updated_at <= at,  # a range the index scan can start from
            sa.or_(sc.c.updated_at < at, sa.and_(sc.c.updated_at == at, sc.c.phone < phone)),
        )
    q = q.order_by(sc.c.updated_at.desc(), sc.c.phone.desc()).limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]


def get(conn: Connection, org_id: str, phone: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            sa.select(sms_consent).where(sms_consent.c.org_id == org_id, sms_consent.c.phone == phone)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def opted_out_among(conn: Connection, org_id: str, phones: Iterable[str]) -> set[str]:
    """Which of `phones` opted out of the org's SMS."""
    phones = sorted(set(phones))
    out: set[str] = set()
    for start in range(0, len(phones), CHUNK):
        q = sa.select(sms_consent.c.phone).where(
            sms_consent.c.org_id == org_id,
            one_of(conn, sms_consent.c.phone, phones[start : start + CHUNK]),
            sms_consent.c.status == OPTED_OUT,
        )
        out.update(r[0] for r in conn.execute(q))
    return out


def drop_queued_sms(conn: Connection, org_id: str, phone: str, reason: str) -> list[dict[str, Any]]:
    """SMS to `phone` queued but not yet handed to a provider will not go out; returns them."""
    where = (
        outbox.c.org_id == org_id,
        outbox.c.channel == "sms",
        outbox.c.to_address == phone,
        outbox.c.status == "queued",
    )
    rows = [
        dict(r)
        for r in conn.execute(
            sa.select(outbox.c.message_id, outbox.c.instance_id, outbox.c.flow_id, outbox.c.step_id)
            .where(*where)
            .with_for_update()
        ).mappings()
    ]
    if rows:
        conn.execute(outbox.update().where(*where).values(status="dropped", last_error=reason))
    return rows


def instances_waiting_on(conn: Connection, org_id: str, phone_key: str) -> list[str]:
    """Active instances of the org waiting for a reply from the number `phone_key` stands for."""
    q = sa.select(journey_instances.c.instance_id).where(
        journey_instances.c.org_id == org_id,
        journey_instances.c.waiting_reply_phone == phone_key,
        journey_instances.c.status == ACTIVE_LITERAL,
    )
    return [r[0] for r in conn.execute(q)]


class OptOutCache:
    """Opted-out numbers for a worker batch: one query per org and chunk for the batch's phones
    (`prefetch`), one per number for any other. Numbers are looked up by what `stand_for` gives
    (per org: the number's blind index, or the number itself where data is stored plain)."""

    def __init__(self, conn: Connection, stand_for: Mapping[str, PhoneKey]) -> None:
        self.conn = conn
        self.stand_for = stand_for
        self._known: dict[tuple[str, str], bool] = {}

    def prefetch(self, pairs: Iterable[tuple[str, str]]) -> None:
        by_org: dict[str, list[str]] = {}
        for org_id, phone in pairs:
            if (org_id, phone) not in self._known:
                by_org.setdefault(org_id, []).append(phone)
        for org_id, phones in by_org.items():
            keys = {self.stand_for[org_id].phone_key(phone): phone for phone in phones}
            out = opted_out_among(self.conn, org_id, list(keys))
            for key, phone in keys.items():
                self._known[(org_id, phone)] = key in out

    def opted_out(self, org_id: str, phone: str) -> bool:
        pair = (org_id, phone)
        if pair not in self._known:
            key = self.stand_for[org_id].phone_key(phone)
            self._known[pair] = bool(opted_out_among(self.conn, org_id, [key]))
        return self._known[pair]
