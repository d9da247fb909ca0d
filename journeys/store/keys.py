"""Each org's wrapped data keys, and the sealed secrets a key rotation reseals (SQL only;
wrapping and sealing are journeys.keys' and journeys.keys.box')."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from journeys.store.tables import org_apis, org_channels, org_keys, orgs, users, webhook_subscriptions


@dataclass(frozen=True)
class KeyRow:
    org_id: str
    version: int
    kek_id: str
    wrapped: bytes


def org_exists(conn: Connection, org_id: str) -> bool:
    return conn.execute(sa.select(orgs.c.org_id).where(orgs.c.org_id == org_id)).first() is not None


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


# Values sealed by journeys.keys.box (provider credentials, webhook secrets, TOTP secrets): each
# table's key columns and sealed column, for resealing them under a new secret key.
_SEALED = {
    "org_channels": (org_channels, ("org_id", "channel"), "config_encrypted"),
    "webhook_subscriptions": (webhook_subscriptions, ("org_id", "subscription_id"), "secret_encrypted"),
    "users": (users, ("org_id", "user_id"), "totp_secret_encrypted"),
    "org_apis": (org_apis, ("org_id", "name"), "config_encrypted"),
}


@dataclass(frozen=True)
class SealedValue:
    table: str
    key: tuple[str, ...]
    sealed: str


def sealed_values(conn: Connection) -> list[SealedValue]:
    """Every sealed secret of every org (a few per org: read at once)."""
    out: list[SealedValue] = []
    for name, (table, keys, column) in _SEALED.items():
        q = sa.select(*(table.c[k] for k in keys), table.c[column]).where(table.c[column].is_not(None))
        out.extend(SealedValue(name, tuple(r[: len(keys)]), r[len(keys)]) for r in conn.execute(q))
    return out


def reseal(conn: Connection, value: SealedValue, sealed: str) -> None:
    """Replace a sealed value, only if it is still the one read (a concurrent change wins)."""
    table, keys, column = _SEALED[value.table]
    where = [table.c[k] == v for k, v in zip(keys, value.key, strict=True)]
    conn.execute(table.update().where(*where, table.c[column] == value.sealed).values({column: sealed}))


def count_by_kek(conn: Connection) -> dict[str, int]:
    """How many data keys (all orgs) each key-encryption key wraps."""
    q = sa.select(org_keys.c.kek_id, sa.func.count()).group_by(org_keys.c.kek_id)
    return {r[0]: int(r[1]) for r in conn.execute(q)}
