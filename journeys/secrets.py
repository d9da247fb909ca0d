"""Provider credentials (and staff TOTP secrets) are stored encrypted (Fernet: AES-128-CBC +
HMAC-SHA256) under a key derived from JOURNEYS_SECRET_KEY with HKDF (journeys.keys.material).
They are never printed back.

Values sealed before (under a single SHA-256 of the secret) are still opened: `open` tries the
HKDF key first, then that one; sealing again (`journeys channel set`) moves a value to the new."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from journeys.errors import Invalid, Unavailable
from journeys.keys.material import HOW_TO, WeakSecretKey, derive, secret_bytes


class SecretKeyMissing(Unavailable):
    pass


PURPOSE = "provider credentials v1"


class SecretBox:
    def __init__(self, secret_key: str | None) -> None:
        self._fernet: Fernet | None = None
        self._legacy: Fernet | None = None
        if secret_key:
            try:
                key = derive(secret_bytes(secret_key), PURPOSE)
            except WeakSecretKey as exc:
                raise Invalid(f"JOURNEYS_SECRET_KEY {exc}") from None
            self._fernet = Fernet(base64.urlsafe_b64encode(key))
            legacy = hashlib.sha256(("journeys:" + secret_key).encode("utf-8")).digest()
            self._legacy = Fernet(base64.urlsafe_b64encode(legacy))

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
        try:
            sealed = token.encode("ascii")
            try:
                plain = self._require().decrypt(sealed)
            except InvalidToken:
                if self._legacy is None:
                    raise
                plain = self._legacy.decrypt(sealed)  # sealed before HKDF: still readable
            return dict(json.loads(plain))
        except (InvalidToken, UnicodeEncodeError):
            raise SecretKeyMissing(
                "stored provider credentials cannot be decrypted with this JOURNEYS_SECRET_KEY"
            ) from None
