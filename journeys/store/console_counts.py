"""The console's counts (SQL only): instances by journey, version and status; the active
instances at each step and how many passed each step in a period; the instances at a step.

Each is an index range read — `ix_journey_instances_console_counts` (org, journey, version,
status, step, instance) for the instances, the primary key of `step_passes` (org, journey,
version, hour, …) for the passes — never a scan of the instances or of their events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.backends import backend_for
from journeys.store.tables import ACTIVE_LITERAL, journey_instances, step_passes

KEY = ["org_id", "journey_id", "version", "hour", "step_id", "shard"]


@dataclass(frozen=True)
class StatusCount:
    journey_id: str
    version: int
    status: str
    count: int


@dataclass(frozen=True)
class StepPass:
    """`passes` instances passed step `step_id` of a journey version in the hour from `hour`."""

    org_id: str
    journey_id: str
    version: int
    hour: datetime
    step_id: int
    passes: int


@dataclass(frozen=True)
class InstanceAtStep:
    instance_id: str
    created_at: datetime
    due_at: datetime | None
    time_zone: str


def status_counts(conn: Connection, org_id: str) -> list[StatusCount]:
    """Instances of each of the org's journeys by version and status."""
    ji = journey_instances
    n = sa.func.count().label("n")
    q = (
        sa.select(ji.c.journey_id, ji.c.version, ji.c.status, n)
        .where(ji.c.org_id == org_id)
        .group_by(ji.c.journey_id, ji.c.version, ji.c.status)
    )
    return [StatusCount(str(j), int(v), str(s), int(c)) for j, v, s, c in conn.execute(q)]


def waiting_by_step(conn: Connection, org_id: str, journey_id: str, version: int) -> dict[int, int]:
    """Active instances of a journey version by the step they are at (their cursor)."""
    ji = journey_instances
    q = (
        sa.select(ji.c.step_id, sa.func.count())
        .where(
            ji.c.org_id == org_id,
            ji.c.journey_id == journey_id,
            ji.c.version == version,
            ji.c.status == ACTIVE_LITERAL,
            ji.c.step_id.is_not(None),
        )
        .group_by(ji.c.step_id)
    )
    return {int(step): int(count) for step, count in conn.execute(q)}


def passes_by_step(
    conn: Connection, org_id: str, journey_id: str, version: int, since: datetime
) -> dict[int, int]:
    """How many passed each step of a journey version in the hours from `since`'s hour on."""
    sp = step_passes
    q = (
        sa.select(sp.c.step_id, sa.func.sum(sp.c.passes))
        .where(
            sp.c.org_id == org_id,
            sp.c.journey_id == journey_id,
            sp.c.version == version,
            sp.c.hour >= since,
        )
        .group_by(sp.c.step_id)
    )
    return {int(step): int(total) for step, total in conn.execute(q)}


def add_passes(conn: Connection, shard: int, passes: Sequence[StepPass]) -> None:
    """Add to the hourly pass counts (in the transaction that writes the steps' events); keys in
    order, so two writers of one shard cannot deadlock."""
    backend = backend_for(conn)
    sp = step_passes
    for p in sorted(passes, key=lambda p: (p.org_id, p.journey_id, p.version, p.hour, p.step_id)):
        row = {
            "org_id": p.org_id,
            "journey_id": p.journey_id,
            "version": p.version,
            "hour": p.hour,
            "step_id": p.step_id,
            "shard": shard,
            "passes": p.passes,
        }
        conn.execute(backend.upsert(sp, row, KEY, {"passes": sp.c.passes + p.passes}, None))


def count_at_step(conn: Connection, org_id: str, journey_id: str, version: int, step_id: int) -> int:
    """How many active instances of a journey version are at a step."""
    ji = journey_instances
    q = sa.select(sa.func.count()).where(
        ji.c.org_id == org_id,
        ji.c.journey_id == journey_id,
        ji.c.version == version,
        ji.c.status == ACTIVE_LITERAL,
        ji.c.step_id == step_id,
    )
    return int(conn.execute(q).scalar_one())


def instances_at_step(
    conn: Connection,
    org_id: str,
    journey_id: str,
    version: int,
    step_id: int,
    after: str | None,
    limit: int,
) -> list[InstanceAtStep]:
    """A page of the active instances at a step, by id (after `after`)."""
    ji = journey_instances
    q = sa.select(ji.c.instance_id, ji.c.created_at, ji.c.due_at, ji.c.time_zone).where(
        ji.c.org_id == org_id,
        ji.c.journey_id == journey_id,
        ji.c.version == version,
        ji.c.status == ACTIVE_LITERAL,
        ji.c.step_id == step_id,
    )
    if after:
        q = q.where(ji.c.instance_id > after)
    q = q.order_by(ji.c.instance_id).limit(limit)
    return [InstanceAtStep(str(i), c, d, str(z)) for i, c, d, z in conn.execute(q)]
