"""Secret keys for the tests: strong enough for JOURNEYS_SECRET_KEY (32 bytes, as URL-safe base64),
derived from a name so that each test module has its own and the same every run."""

from __future__ import annotations

import base64
import hashlib


def strong_key(name: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(name.encode("utf-8")).digest()).decode("ascii").rstrip("=")
