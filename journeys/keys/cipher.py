"""An org's data keys, and what they do: seal and open values (AES-256-GCM, bound to the org),
and blind indexes (keyed HMAC-SHA256) for finding a value without decrypting.

Sealed form: version byte 1, the data key's version (4 bytes, big-endian), a 12-byte nonce, the
ciphertext and tag. Opening reads the version and uses that key, so values sealed under an older
data key stay readable after a new one becomes current."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from journeys.keys.envelope import KeyUnavailable
from journeys.keys.material import derive

FORMAT = 1
HEADER = 5
NONCE = 12
BLIND_BYTES = 16


@dataclass(frozen=True)
class DataKey:
    org_id: str
    version: int
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class Keyring:
    """An org's data keys by version; `current` seals."""

    org_id: str
    keys: dict[int, DataKey] = field(repr=False)
    current: int

    @cached_property
    def _ciphers(self) -> dict[int, AESGCM]:
        return {version: AESGCM(key.key) for version, key in self.keys.items()}

    @cached_property
    def _blind_mac(self) -> Any:
        """The blind indexes' HMAC, keyed once (each index copies it)."""
        key = derive(self.keys[min(self.keys)].key, "blind index v1")
        return hmac.new(key, digestmod=hashlib.sha256)

    def seal(self, plaintext: str) -> bytes:
        nonce = os.urandom(NONCE)
        header = bytes([FORMAT]) + self.current.to_bytes(4, "big")
        body = self._ciphers[self.current].encrypt(nonce, plaintext.encode("utf-8"), self._aad(header))
        return header + nonce + body

    def open(self, sealed: bytes) -> str:
        if len(sealed) < HEADER + NONCE + 16 or sealed[0] != FORMAT:
            raise KeyUnavailable("a stored value is not in a sealed form this server reads")
        version = int.from_bytes(sealed[1:HEADER], "big")
        cipher = self._ciphers.get(version)
        if cipher is None:
            raise KeyUnavailable(f"a stored value is sealed with data key version {version}, not found")
        nonce, body = sealed[HEADER : HEADER + NONCE], sealed[HEADER + NONCE :]
        try:
            return cipher.decrypt(nonce, body, self._aad(sealed[:HEADER])).decode("utf-8")
        except InvalidTag:
            raise KeyUnavailable("a stored value does not open with its org's data key") from None

    def blind(self, purpose: str, value: str) -> bytes:
        """The blind index of `value` (already normalised) for `purpose` (e.g. a parameter name):
        equal values give equal indexes within one org and purpose. Keyed by the org's first data
        key, so a new data key does not change the indexes (re-keying them is a re-index)."""
        mac = self._blind_mac.copy()
        mac.update(purpose.encode("utf-8") + b"\x00" + value.encode("utf-8"))
        return bytes(mac.digest()[:BLIND_BYTES])

    def _aad(self, header: bytes) -> bytes:
        return b"journeys value|" + self.org_id.encode("ascii") + b"|" + header
