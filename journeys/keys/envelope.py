"""Envelope encryption: each org's data keys are stored wrapped (AES-256-GCM) by a
key-encryption key (KEK) that never touches the database.

A `KeyProvider` wraps and unwraps; `LocalKeyProvider` derives its KEKs from JOURNEYS_SECRET_KEY
(HKDF, journeys.keys.material) and from the previous secrets still listed in
JOURNEYS_PREVIOUS_SECRET_KEYS, which it only unwraps with. A KMS provider would implement the
same three members. Each wrapped key names the KEK that wrapped it (`kek_id`, derived from the
KEK, revealing nothing of it), and is bound to its org and version (the AEAD's associated data):
a wrapped key moved to another org or version does not unwrap."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from journeys.errors import Unavailable
from journeys.keys.material import derive

NONCE = 12


class KeyUnavailable(Unavailable):
    """A data key this server cannot unwrap (another secret key, or a tampered row)."""


@dataclass(frozen=True)
class WrappedKey:
    kek_id: str
    blob: bytes  # nonce + ciphertext + tag


class KeyProvider(Protocol):
    @property
    def current_id(self) -> str: ...

    def wrap(self, key: bytes, context: bytes) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes: ...


def kek_id(material: bytes) -> str:
    return derive(material, "kek id v1", 8).hex()


class LocalKeyProvider:
    def __init__(self, current: bytes, previous: Sequence[bytes] = ()) -> None:
        self._keks: dict[str, AESGCM] = {}
        for material in (current, *previous):
            self._keks.setdefault(kek_id(material), AESGCM(derive(material, "kek v1")))
        self._current = kek_id(current)

    @property
    def current_id(self) -> str:
        return self._current

    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        nonce = os.urandom(NONCE)
        return WrappedKey(self._current, nonce + self._keks[self._current].encrypt(nonce, key, context))

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        kek = self._keks.get(wrapped.kek_id)
        if kek is None:
            raise KeyUnavailable(
                f"a data key is wrapped by key-encryption key {wrapped.kek_id}, which this server does not "
                "have: set JOURNEYS_SECRET_KEY (or JOURNEYS_PREVIOUS_SECRET_KEYS) to the key it was made with"
            )
        try:
            return kek.decrypt(wrapped.blob[:NONCE], wrapped.blob[NONCE:], context)
        except InvalidTag:
            raise KeyUnavailable(
                f"a data key wrapped by {wrapped.kek_id} does not unwrap: it was changed or moved"
            ) from None
