"""Provider credentials (and staff TOTP secrets) are stored encrypted (Fernet: AES-128-CBC +
HMAC-SHA256) under a key derived from JOURNEYS_SECRET_KEY with HKDF (journeys.keys.material).
They are never printed back.

`open` tries the current secret's key first, then those of JOURNEYS_PREVIOUS_SECRET_KEYS (after
a rotation), then the form used before HKDF (a single SHA-256 of the secret); `journeys keys
rotate` seals every value again under the current key (`is_current` tells which need it)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from journeys.errors import Invalid, Unavailable
from journeys.keys.material import HOW_TO, WeakSecretKey, derive, secret_bytes


class SecretKeyMissing(Unavailable):
    pass


PURPOSE = "provider credentials v1"


def _legacy(secret_key: str) -> Fernet:
    """The Fernet values were sealed with before HKDF (when any key was accepted)."""
    legacy = hashlib.sha256(("journeys:" + secret_key).encode("utf-8")).digest()
    return Fernet(base64.urlsafe_b64encode(legacy))


def _fernet(secret_key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive(secret_bytes(secret_key), PURPOSE)))


def _previous(secret_key: str) -> list[Fernet]:
    """What a previous key opens: an old weak key only ever sealed the legacy form."""
    try:
        return [_fernet(secret_key)]
    except WeakSecretKey:
        return []


class SecretBox:
    def __init__(self, secret_key: str | None, previous: Sequence[str] = ()) -> None:
        self._fernet: Fernet | None = None
        self._others: list[Fernet] = []  # tried in order after the current key
        if secret_key:
            try:
                self._fernet = _fernet(secret_key)
            except WeakSecretKey as exc:
                raise Invalid(f"JOURNEYS_SECRET_KEY {exc}") from None
            self._others = [f for p in previous for f in _previous(p)]
            self._others += [_legacy(k) for k in (secret_key, *previous)]

    @property
    def available(self) -> bool:
        return self._fernet is not None

    def _require(self) -> Fernet:
        if self._fernet is None:
            raise SecretKeyMissing(
                "JOURNEYS_SECRET_KEY is not set: it is needed to store and use provider credentials "
                f"({HOW_TO}: changing it makes stored credentials unreadable)"
            )
        return self._fernet

    def seal(self, config: dict[str, Any]) -> str:
        return self._require().encrypt(json.dumps(config).encode("utf-8")).decode("ascii")

    def open(self, token: str) -> dict[str, Any]:
        return dict(json.loads(self._decrypt(token)[0]))

    def is_current(self, token: str) -> bool:
        """Whether `token` is sealed under the current key (False: a previous one; reseal it)."""
        return self._decrypt(token)[1]

    def _decrypt(self, token: str) -> tuple[bytes, bool]:
        current = self._require()
        try:
            sealed = token.encode("ascii")
        except UnicodeEncodeError:
            sealed = b""
        for i, fernet in enumerate([current, *self._others]):
            try:
                return fernet.decrypt(sealed), i == 0
            except InvalidToken:
                continue
        raise SecretKeyMissing(
            "stored credentials cannot be decrypted with this JOURNEYS_SECRET_KEY "
            "(or JOURNEYS_PREVIOUS_SECRET_KEYS)"
        )
