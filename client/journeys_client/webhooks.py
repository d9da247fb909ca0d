"""Verifying a webhook delivery's signature (docs/webhooks.md): the `X-Journeys-Signature` header
is `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + the raw body, under the subscription's secret>`."""

from __future__ import annotations

import hashlib
import hmac
import time

REPLAY_WINDOW = 300  # seconds


def verify_signature(
    secret: str, header: str, body: bytes, *, window: int = REPLAY_WINDOW, now: float | None = None
) -> bool:
    """Whether `body` (the raw bytes, before any JSON parsing) was signed with `secret` within
    `window` seconds of `now` (the current time unless given). Never raises on a malformed header:
    it is simply not a valid signature."""
    try:
        parts = dict(p.strip().split("=", 1) for p in header.split(","))
        t = int(parts["t"])
        given = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - t) > window:
        return False
    expected = hmac.new(secret.encode("utf-8"), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
