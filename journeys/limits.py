"""Rate limits, in memory and per process: token buckets for request rates, and sliding windows
of failures (failed authentications) — the abuse resistance of journeys.api.limits.

Several server processes each keep their own buckets, so the effective limit is the configured
one times the number of processes. Keys are bounded: beyond `MAX_KEYS` the least recently used
key is forgotten (an attacker rotating addresses cannot grow memory without bound)."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

MAX_KEYS = 100_000


@dataclass(frozen=True)
class Rate:
    """`per_second` on average, up to `burst` at once."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("a rate needs per_second > 0 and burst >= 1")


@dataclass(frozen=True)
class LimitSettings:
    """The server's limits (journeys.api.limits): requests per address and per token, and failed
    authentications per address within a window."""

    enabled: bool
    per_address: Rate
    per_token: Rate
    auth_failures: int
    auth_window_seconds: float


class Buckets:
    """A token bucket per key: each request takes one token; tokens come back at `rate.per_second`
    up to `rate.burst`."""

    def __init__(self, rate: Rate, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, datetime]] = OrderedDict()  # key → (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: str, now: datetime) -> int | None:
        """Take a token for `key`: None when allowed, else the seconds to wait (Retry-After)."""
        rate = self.rate
        with self._lock:
            tokens, then = self._buckets.pop(key, (float(rate.burst), now))
            elapsed = max(0.0, (now - then).total_seconds())
            tokens = min(float(rate.burst), tokens + elapsed * rate.per_second)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        if allowed:
            return None
        return max(1, math.ceil((1.0 - tokens) / rate.per_second))


class Failures:
    """Failures per key in a sliding window: `blocked` says how long a key that reached
    `limit` failures within `window_seconds` must wait."""

    def __init__(self, limit: int, window_seconds: float, max_keys: int = MAX_KEYS) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit and window must be positive")
        self.limit = limit
        self.window = window_seconds
        self.max_keys = max_keys
        self._times: OrderedDict[str, list[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: datetime) -> list[datetime]:
        times = [t for t in self._times.get(key, ()) if (now - t).total_seconds() < self.window]
        if times:
            self._times[key] = times
        else:
            self._times.pop(key, None)
        return times

    def blocked(self, key: str, now: datetime) -> int | None:
        """None when `key` may go on, else the seconds until its oldest counted failure expires."""
        with self._lock:
            if key not in self._times:
                return None
            times = self._recent(key, now)
            if len(times) < self.limit:
                return None
            return max(1, math.ceil(self.window - (now - times[0]).total_seconds()))

    def failed(self, key: str, now: datetime) -> None:
        with self._lock:
            times = self._recent(key, now)
            times.append(now)
            del times[: max(0, len(times) - self.limit)]  # only the last `limit` matter
            self._times[key] = times
            self._times.move_to_end(key)
            if len(self._times) > self.max_keys:
                self._times.popitem(last=False)
