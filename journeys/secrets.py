"""Provider credentials are stored encrypted (Fernet: AES-128-CBC + HMAC-SHA256) under a key
derived from JOURNEYS_SECRET_KEY. They are never printed back."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from journeys.errors import Unavailable


class SecretKeyMissing(Unavailable):
    pass


class SecretBox:
    def __init__(self, secret_key: str | None) -> None:
        self._fernet = None
        if secret_key:
            digest = hashlib.sha256(("journeys:" + secret_key).encode("utf-8")).digest()
            self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    @property
    def available(self) -> bool:
        return self._fernet is not None

    def _require(self) -> Fernet:
        if self._fernet is None:
            raise SecretKeyMissing(
                "JOURNEYS_SECRET_KEY is not set: it is needed to store and use provider credentials "
                "(set it to a long random string and keep it: changing it makes stored credentials "
                "unreadable)"
            )
        return self._fernet

    def seal(self, config: dict[str, Any]) -> str:
        return self._require().encrypt(json.dumps(config).encode("utf-8")).decode("ascii")

    def open(self, token: str) -> dict[str, Any]:
        try:
            return dict(json.loads(self._require().decrypt(token.encode("ascii"))))
        except InvalidToken:
            raise SecretKeyMissing(
                "stored provider credentials cannot be decrypted with this JOURNEYS_SECRET_KEY"
            ) from None
