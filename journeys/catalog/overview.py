"""What the console shows of the org's journeys: each with its versions and its instances by
status, and for one version the instances at each step now and how many passed each step in a
period, and the instances at a step (a page at a time). Every count is an index range read
(journeys.store.console_counts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from journeys.catalog.service import JourneyVersion, load_version
from journeys.errors import Invalid, NotFound
from journeys.store import catalog as repo
from journeys.store import console_counts as counts
from journeys.store.console_counts import InstanceAtStep
from journeys.store.tables import STATUSES

# The periods the journey page offers for "passed": (value, label, length).
PERIODS: tuple[tuple[str, str, timedelta], ...] = (
    ("24h", "last 24 hours", timedelta(hours=24)),
    ("7d", "last 7 days", timedelta(days=7)),
    ("30d", "last 30 days", timedelta(days=30)),
)
DEFAULT_PERIOD = "24h"
PAGE_SIZE = 50


@dataclass(frozen=True)
class JourneySummary:
    journey_id: str
    name: str
    latest_version: int
    by_version: Mapping[int, Mapping[str, int]]  # version -> status -> instances

    @property
    def versions(self) -> list[int]:
        return list(range(self.latest_version, 0, -1))  # versions are 1..latest, never removed

    def total(self, status: str) -> int:
        return sum(c.get(status, 0) for c in self.by_version.values())


@dataclass(frozen=True)
class ShownVersion(JourneyVersion):
    """A version of a journey, and the journey's latest version number (for a version picker)."""

    latest_version: int = 1


@dataclass(frozen=True)
class StepCounts:
    waiting: Mapping[int, int] = field(default_factory=dict)  # step id -> active instances there now
    passed: Mapping[int, int] = field(default_factory=dict)  # step id -> passes in the period


@dataclass(frozen=True)
class StepPage:
    instances: list[InstanceAtStep]
    next_after: str | None  # the `after` of the next page, or None on the last
    total: int  # active instances at the step (on every page)


def summaries(conn: Connection, org_id: str) -> list[JourneySummary]:
    by_journey: dict[str, dict[int, dict[str, int]]] = {}
    for c in counts.status_counts(conn, org_id):
        by_journey.setdefault(c.journey_id, {}).setdefault(c.version, {})[c.status] = c.count
    return [
        JourneySummary(
            row["journey_id"], row["name"], int(row["latest_version"]), by_journey.get(row["journey_id"], {})
        )
        for row in repo.list_journeys(conn, org_id)
    ]


def parse_version(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise Invalid(f"version must be a whole number from 1 (given: {text[:20]!r})")
    return int(text)


def parse_period(text: str | None) -> tuple[str, timedelta]:
    value = text or DEFAULT_PERIOD
    for key, _, length in PERIODS:
        if key == value:
            return key, length
    choices = ", ".join(key for key, _, _ in PERIODS)
    raise Invalid(f"period must be one of {choices} (given: {value[:20]!r})")


def journey_version(conn: Connection, org_id: str, journey_id: str, version: int | None) -> ShownVersion:
    """The journey's version (the latest when None); NotFound for another org's or no journey."""
    row = repo.get_journey(conn, org_id, journey_id)
    if row is None:
        raise NotFound(f"there is no journey {journey_id[:64]!r} in this organisation")
    number = int(row["latest_version"]) if version is None else version
    if number > int(row["latest_version"]):
        raise NotFound(
            f"journey {row['name']!r} has no version {number} (the latest is {row['latest_version']})"
        )
    latest = int(row["latest_version"])
    definition = load_version(conn, org_id, journey_id, number)
    return ShownVersion(org_id, journey_id, row["name"], number, definition, latest)


def step_counts(conn: Connection, jv: JourneyVersion, since: datetime) -> StepCounts:
    """Active instances at each step now, and passes of each step from `since`'s hour on (passes
    are counted by the hour: the period starts at the beginning of its first hour)."""
    since = since.replace(minute=0, second=0, microsecond=0)
    return StepCounts(
        counts.waiting_by_step(conn, jv.org_id, jv.journey_id, jv.version),
        counts.passes_by_step(conn, jv.org_id, jv.journey_id, jv.version, since),
    )


def step_ids(jv: JourneyVersion) -> list[int]:
    return [step.id for flow in jv.definition.flows for step in flow.steps]


def instances_at_step(conn: Connection, jv: JourneyVersion, step_id: int, after: str | None) -> StepPage:
    """A page of the active instances at a step of the version (NotFound for a step it lacks)."""
    if step_id not in step_ids(jv):
        raise NotFound(f"version {jv.version} of {jv.name!r} has no step {step_id}")
    found = counts.instances_at_step(
        conn, jv.org_id, jv.journey_id, jv.version, step_id, after, PAGE_SIZE + 1
    )
    more = len(found) > PAGE_SIZE
    page = found[:PAGE_SIZE]
    total = counts.count_at_step(conn, jv.org_id, jv.journey_id, jv.version, step_id)
    return StepPage(page, page[-1].instance_id if more else None, total)


__all__ = [
    "STATUSES",
    "InstanceAtStep",
    "JourneySummary",
    "JourneyVersion",
    "ShownVersion",
    "StepCounts",
    "StepPage",
]
