"""A sliding-window throttle for failed logins per client address (in memory, per process).

Each account also locks after repeated failures (journeys.accounts.users.LockoutPolicy); this
stops one address from trying many accounts. Several server processes each keep their own
window, so the effective limit is `max_failures` per process."""

from __future__ import annotations

import math
import threading
from collections import deque
from datetime import datetime, timedelta

MAX_KEYS = 100_000  # addresses remembered at once; the oldest windows are dropped beyond it


class LoginThrottle:
    def __init__(self, max_failures: int, window: timedelta) -> None:
        if max_failures < 1 or window <= timedelta(0):
            raise ValueError("max_failures and window must be positive")
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def _trim(self, key: str, now: datetime) -> deque[datetime]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, key: str, now: datetime) -> int | None:
        """Seconds until `key` may try again, or None when it may try now."""
        with self._lock:
            times = self._trim(key, now)
            if len(times) < self.max_failures:
                return None
            wait = (times[0] + self.window - now).total_seconds()
            return max(1, math.ceil(wait))

    def failed(self, key: str, now: datetime) -> None:
        with self._lock:
            times = self._trim(key, now)
            if not times:
                if len(self._failures) >= MAX_KEYS:
                    self._failures.pop(next(iter(self._failures)))
                self._failures[key] = times
            times.append(now)
