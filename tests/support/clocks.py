"""Clocks for tests beyond journeys.clock.ManualClock."""

from __future__ import annotations

from datetime import datetime, timedelta


class LaggingClock:
    """The first reading is `at`; later readings are a minute earlier. A Worker given this clock
    runs its batch at `at` but its delivery pass sees the batch's messages as not yet due, so
    they stay queued: a queued, unsent message that a cancel can still catch."""

    def __init__(self, at: datetime) -> None:
        self.at = at
        self.readings = 0

    def now(self) -> datetime:
        self.readings += 1
        return self.at if self.readings == 1 else self.at - timedelta(minutes=1)
