"""Moving to a new JOURNEYS_SECRET_KEY (`journeys keys rotate`): every org's data keys are
rewrapped by the new key-encryption key (in batches, committed between: servers configured with
the new key and the previous one read both wrappings meanwhile), and every sealed secret
(provider credentials, webhook secrets, TOTP secrets) is sealed again under the new key. Data
sealed with the data keys is not touched: the data keys themselves do not change."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from journeys.keys.box import SecretBox, SecretKeyMissing
from journeys.keys.envelope import KeyProvider
from journeys.store import keys as repo


@dataclass(frozen=True)
class KeyStatus:
    current_kek: str
    data_keys_current: int  # wrapped by the current key-encryption key
    data_keys_other: int  # wrapped by a previous one: `journeys keys rotate` moves them
    secrets_current: int
    secrets_other: int  # sealed under a previous secret key
    secrets_unreadable: int  # under no key this server has

    @property
    def done(self) -> bool:
        return not self.data_keys_other and not self.secrets_other


def status(conn: Connection, provider: KeyProvider, box: SecretBox) -> KeyStatus:
    by_kek = repo.count_by_kek(conn)
    current = by_kek.pop(provider.current_id, 0)
    counts = {True: 0, False: 0, None: 0}
    for value in repo.sealed_values(conn):
        counts[_is_current(box, value.sealed)] += 1
    return KeyStatus(
        provider.current_id, current, sum(by_kek.values()), counts[True], counts[False], counts[None]
    )


def reseal_secrets(conn: Connection, box: SecretBox) -> tuple[int, int]:
    """Seal again under the current key every secret sealed under a previous one; (resealed,
    unreadable): an unreadable value is left as it is (its provider or webhook fails until set
    again)."""
    resealed = unreadable = 0
    for value in repo.sealed_values(conn):
        current = _is_current(box, value.sealed)
        if current is None:
            unreadable += 1
        elif not current:
            repo.reseal(conn, value, box.seal(box.open(value.sealed)))
            resealed += 1
    return resealed, unreadable


def _is_current(box: SecretBox, sealed: str) -> bool | None:
    try:
        return box.is_current(sealed)
    except SecretKeyMissing:
        return None
