"""Patient data at rest: what each org's values look like in the database.

`Vault` (one per process) hands out an `OrgPhi` per org. With JOURNEYS_SECRET_KEY set, an
OrgPhi seals values with the org's data key (journeys.keys.cipher) and turns searchable values
into blind indexes; without it, values are stored as they are (and blind indexes are the values
themselves), so every caller writes the same code either way.

Stored forms:
- a sealed value is `~` + base64 of the sealed bytes (a JSON object stored plain starts with
  `{`, so `open_json` reads either form: data written before encryption stays readable);
- a blind index is base64url (22 characters) of the keyed HMAC of the purpose and the value.

Get an org's OrgPhi before opening a write transaction: its keyring is made (on first use, in a
transaction of its own, committed) and then cached, so that a key is never cached that a rolled
back transaction did not keep."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import Engine

from journeys.errors import NotFound
from journeys.keys.cipher import Keyring
from journeys.keys.envelope import KeyProvider, KeyUnavailable
from journeys.keys.service import keyring
from journeys.store import keys as repo
from journeys.store.db import read_only, transaction

SEALED = "~"
PHONE = "~phone"  # the purpose of phone numbers' blind indexes (reply matching, consent)
PREFIX_LENGTHS = 12  # `search: prefix` parameters: blind indexes of their first 1..12 characters


class OrgPhi:
    """One org's way of storing patient data: sealed and blinded (`ring`), or plain (None)."""

    def __init__(self, org_id: str, ring: Keyring | None) -> None:
        self.org_id = org_id
        self.ring = ring

    @property
    def encrypted(self) -> bool:
        return self.ring is not None

    def seal(self, text: str) -> str:
        if self.ring is None:
            return text
        return SEALED + base64.b64encode(self.ring.seal(text)).decode("ascii")

    def open(self, stored: str) -> str:
        if not stored.startswith(SEALED):
            return stored
        if self.ring is None:
            raise KeyUnavailable("patient data is stored encrypted and JOURNEYS_SECRET_KEY is not set")
        return self.ring.open(base64.b64decode(stored[len(SEALED) :]))

    def seal_json(self, value: Any) -> str:
        return self.seal(orjson.dumps(value).decode("utf-8"))

    def open_json(self, stored: str | None) -> Any:
        """A JSON value stored by `seal_json` (or plain, written before encryption)."""
        if not stored:
            return None
        return orjson.loads(self.open(stored))

    def phone_key(self, phone: str) -> str:
        """What stands for a normalised phone number where numbers are matched."""
        return self.blind(PHONE, phone)

    def blind(self, purpose: str, value: str) -> str:
        """What to store and look up instead of `value` for `purpose` (e.g. a parameter's name):
        equal values give equal indexes within the org and purpose."""
        if self.ring is None:
            return value
        return base64.urlsafe_b64encode(self.ring.blind(purpose, value)).decode("ascii").rstrip("=")


class Vault:
    """Each org's OrgPhi, cached for the life of the process (an org's data keys, once made,
    never change; a key rotation changes only how they are wrapped)."""

    def __init__(self, engine: Engine, provider: KeyProvider | None, now: Callable[[], datetime]) -> None:
        self.engine = engine
        self.provider = provider
        self._now = now
        self._orgs: dict[str, OrgPhi] = {}
        self._lock = threading.Lock()

    @property
    def encrypted(self) -> bool:
        return self.provider is not None

    def org(self, org_id: str) -> OrgPhi:
        found = self._orgs.get(org_id)
        if found is not None:
            return found
        if self.provider is None:
            with read_only(self.engine) as conn:
                if repo.of_org(conn, org_id):  # its data is sealed: never read or write it as plain
                    raise KeyUnavailable(
                        f"the patient data of org {org_id} is stored encrypted: set JOURNEYS_SECRET_KEY "
                        "to the key it was stored with"
                    )
            phi = OrgPhi(org_id, None)
        else:
            phi = OrgPhi(org_id, self._ring(org_id, self.provider))
        with self._lock:
            return self._orgs.setdefault(org_id, phi)

    def orgs(self, org_ids: set[str]) -> dict[str, OrgPhi]:
        return {org_id: self.org(org_id) for org_id in sorted(org_ids)}

    def _ring(self, org_id: str, provider: KeyProvider) -> Keyring:
        with read_only(self.engine) as conn:  # the usual case: the key exists (no write lock)
            if repo.of_org(conn, org_id):
                return keyring(conn, provider, org_id, self._now())
        with transaction(self.engine) as conn:
            if not repo.org_exists(conn, org_id):
                raise NotFound(f"unknown org {org_id}")
            return keyring(conn, provider, org_id, self._now())


def plain() -> OrgPhi:
    """Values stored as they are (tools that never see patient data, and tests of the store)."""
    return OrgPhi("", None)
