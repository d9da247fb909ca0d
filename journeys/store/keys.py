"""Each org's wrapped data keys (SQL only; wrapping is journeys.keys')."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from journeys.store.tables import org_keys


@dataclass(frozen=True)
class KeyRow:
    org_id: str
    version: int
    kek_id: str
    wrapped: bytes


def of_org(conn: Connection, org_id: str) -> list[KeyRow]:
    q = (
        sa.select(org_keys.c.org_id, org_keys.c.version, org_keys.c.kek_id, org_keys.c.wrapped)
        .where(org_keys.c.org_id == org_id)
        .order_by(org_keys.c.version)
    )
    return [KeyRow(r.org_id, r.version, r.kek_id, bytes(r.wrapped)) for r in conn.execute(q)]


def add(conn: Connection, row: KeyRow, now: datetime) -> bool:
    """Store a new key version; False when that version exists already (another process made it
    first: read it back instead)."""
    try:
        with conn.begin_nested():
            values = {"kek_id": row.kek_id, "wrapped": row.wrapped, "created_at": now}
            conn.execute(org_keys.insert().values(org_id=row.org_id, version=row.version, **values))
    except IntegrityError:
        return False
    return True


def not_wrapped_by(conn: Connection, kek_id: str, limit: int) -> list[KeyRow]:
    """Up to `limit` keys (any org) wrapped by another KEK than `kek_id`, locked for rewrapping."""
    q = (
        sa.select(org_keys.c.org_id, org_keys.c.version, org_keys.c.kek_id, org_keys.c.wrapped)
        .where(org_keys.c.kek_id != kek_id)
        .order_by(org_keys.c.org_id, org_keys.c.version)
        .limit(limit)
        .with_for_update()
    )
    return [KeyRow(r.org_id, r.version, r.kek_id, bytes(r.wrapped)) for r in conn.execute(q)]


def rewrap(conn: Connection, row: KeyRow) -> None:
    conn.execute(
        org_keys.update()
        .where(org_keys.c.org_id == row.org_id, org_keys.c.version == row.version)
        .values(kek_id=row.kek_id, wrapped=row.wrapped)
    )
