"""An org's keyring (made on first use) and key-encryption-key rotation. Services take a
connection; the caller commits."""

from __future__ import annotations

import os
from datetime import datetime

from sqlalchemy.engine import Connection

from journeys.keys.cipher import DataKey, Keyring
from journeys.keys.envelope import KeyProvider, KeyUnavailable, WrappedKey
from journeys.store import keys as repo

DATA_KEY_BYTES = 32
REWRAP_BATCH = 500


def _context(org_id: str, version: int) -> bytes:
    return f"journeys data key|{org_id}|{version}".encode("ascii")


def keyring(conn: Connection, provider: KeyProvider, org_id: str, now: datetime) -> Keyring:
    """The org's data keys, unwrapped; the first is made and stored on first use."""
    rows = repo.of_org(conn, org_id)
    if not rows:
        wrapped = provider.wrap(os.urandom(DATA_KEY_BYTES), _context(org_id, 1))
        repo.add(conn, repo.KeyRow(org_id, 1, wrapped.kek_id, wrapped.blob), now)
        rows = repo.of_org(conn, org_id)
    keys = {}
    for row in rows:
        key = provider.unwrap(WrappedKey(row.kek_id, row.wrapped), _context(org_id, row.version))
        keys[row.version] = DataKey(org_id, row.version, key)
    return Keyring(org_id, keys, max(keys))


def rewrap_batch(conn: Connection, provider: KeyProvider) -> int:
    """Rewrap up to REWRAP_BATCH data keys (any org) not wrapped by the current KEK; how many.
    Call until 0, committing between (journeys keys rotate): servers holding both the new and
    the previous secret read either wrapping meanwhile."""
    rows = repo.not_wrapped_by(conn, provider.current_id, REWRAP_BATCH)
    for row in rows:
        context = _context(row.org_id, row.version)
        try:
            key = provider.unwrap(WrappedKey(row.kek_id, row.wrapped), context)
        except KeyUnavailable as exc:
            where = f"org {row.org_id}, data key version {row.version}"
            raise KeyUnavailable([f"{where}: {m}" for m in exc.messages]) from None
        wrapped = provider.wrap(key, context)
        repo.rewrap(conn, repo.KeyRow(row.org_id, row.version, wrapped.kek_id, wrapped.blob))
    return len(rows)
