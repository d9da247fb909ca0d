"""JOURNEYS_SECRET_KEY: checked for strength, and turned into keys with HKDF (RFC 5869).

The secret must hold at least 32 random bytes (256 bits). It is read as
- hex (64 or more hex digits, e.g. `openssl rand -hex 32`), else
- base64, standard or URL-safe, padded or not (43 or more characters, e.g.
  `openssl rand -base64 32` or `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`), else
- a passphrase of 64 or more characters (its UTF-8 bytes).
A key with few distinct symbols (`aaaa…`, `0101…`) is refused whatever its length.

Every key journeys uses is derived from the secret with HKDF-SHA256 and its own `purpose`, so keys
for different uses are independent and none reveals the secret."""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_BYTES = 32
MIN_PASSPHRASE = 64
MIN_DISTINCT = 16  # distinct bytes a key's material must hold
SALT = b"journeys secret key v1"
HOW_TO = (
    "generate one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'` "
    "or `openssl rand -base64 32`, and keep it"
)
_HEX = re.compile(r"[0-9a-fA-F]+")
_B64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


class WeakSecretKey(ValueError):
    pass


def secret_bytes(value: str) -> bytes:
    """The key material of a secret key, or WeakSecretKey saying why it is refused (the message
    never quotes the key)."""
    text = value.strip()
    if not text:
        raise WeakSecretKey(f"is empty; {HOW_TO}")
    material = _material(text)
    if len(set(material)) < MIN_DISTINCT:
        raise WeakSecretKey(f"uses too few distinct characters to be random; {HOW_TO}")
    return material


def _material(text: str) -> bytes:
    if _HEX.fullmatch(text):  # hex digits carry 4 bits each, whatever else they could be read as
        if len(text) % 2 == 0 and len(text) >= 2 * MIN_BYTES:
            return bytes.fromhex(text)
        if len(text) < MIN_PASSPHRASE:
            raise _too_short()
    elif _B64.fullmatch(text) and len(text) >= 43:
        decoded = _base64(text)
        if decoded is not None and len(decoded) >= MIN_BYTES:
            return decoded
    if len(text) >= MIN_PASSPHRASE:
        return text.encode("utf-8")
    raise _too_short()


def _too_short() -> WeakSecretKey:
    return WeakSecretKey(
        f"is too short: it must hold at least {MIN_BYTES} random bytes (256 bits) — 64 hex digits, "
        f"43 base64 characters, or a passphrase of {MIN_PASSPHRASE} characters or more; {HOW_TO}"
    )


def _base64(text: str) -> bytes | None:
    padded = text + "=" * (-len(text) % 4)
    alphabet = padded.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(alphabet, validate=True)
    except (binascii.Error, ValueError):
        return None


def derive(material: bytes, purpose: str, length: int = 32) -> bytes:
    """A key for `purpose` (e.g. "kek v1", "provider credentials") from the secret's material."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=SALT, info=purpose.encode("ascii"))
    return hkdf.derive(material)
