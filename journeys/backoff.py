"""Exponential backoff with jitter, for everything that retries (steps, sends, webhook deliveries)."""

from __future__ import annotations

import random
from datetime import timedelta

HALF_TO_FULL = (0.5, 1.0)  # "full jitter" above half the delay: retries spread, never too early


def backoff(
    attempt: int, base: timedelta, cap: timedelta, jitter: tuple[float, float] = HALF_TO_FULL
) -> timedelta:
    """The delay after the `attempt`-th failure: `base` doubling per attempt (the first waits
    `base`), capped at `cap`, then multiplied by a random factor in `jitter`."""
    delay = min(base * (1 << min(max(attempt - 1, 0), 20)), cap)
    factor: float = random.uniform(*jitter)
    return delay * factor
