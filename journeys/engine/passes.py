"""Which timeline events mean an instance passed a step (ran it and went on), counted by
journey version, step and hour for the console's journey page (no I/O)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from journeys.records import ClaimedInstance, TimelineEvent
from journeys.store.console_counts import StepPass

# A step's own records that leave the instance at that step (it has not passed it yet), or that
# end it there without going on.
STILL_AT_STEP = frozenset({"send_held", "sms_deferred", "waiting_for_reply", "step_retry", "failed"})
SHARDS = 8


def passed(event: TimelineEvent) -> bool:
    """Whether the event is a step's own record of being passed: the interpreter writes exactly
    one such per step run (e.g. sms_queued, wait, branch, reply_received, end)."""
    return event.step_id is not None and event.flow_name is not None and event.kind not in STILL_AT_STEP


def hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def step_passes(runs: Iterable[tuple[ClaimedInstance, Sequence[TimelineEvent]]]) -> list[StepPass]:
    """The passes of a batch, one value per journey version, hour and step."""
    counts: dict[tuple[str, str, int, datetime, int], int] = {}
    for row, events in runs:
        for event in events:
            if passed(event):
                assert event.step_id is not None
                key = (row.org_id, row.journey_id, row.version, hour_of(event.at), event.step_id)
                counts[key] = counts.get(key, 0) + 1
    return [StepPass(o, j, v, h, s, n) for (o, j, v, h, s), n in counts.items()]


def shard_of(worker_id: str) -> int:
    """The worker's own shard of the pass counts (workers then never wait on each other's rows)."""
    return zlib.crc32(worker_id.encode("utf-8")) % SHARDS
