"""Retention: an instance that ended more than N days ago is reduced to a tombstone (its ids,
journey, status, dates and steps stay; its parameters, messages, replies and timeline details go;
journeys.store.retention).

N is the journey's `retention_days` (its latest version's definition), else the org's (`journeys
org retention`), else JOURNEYS_RETENTION_DAYS (365). The worker purges on a schedule, a bounded
batch at a time (`RetentionSweep`); `journeys purge` does the same on demand, or counts
(`--dry-run`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection, Engine

from journeys.catalog.service import list_latest
from journeys.errors import Invalid, NotFound
from journeys.store import feeds as feeds_repo
from journeys.store import retention as repo
from journeys.store.accounts import list_orgs
from journeys.store.db import read_only, transaction

log = logging.getLogger("journeys.retention")
MAX_DAYS = 36_500


@dataclass(frozen=True, slots=True)
class JourneyRetention:
    """How long one journey's ended instances keep their data, and the moment that makes."""

    journey_id: str
    name: str
    days: int
    source: str  # journey | org | default: where `days` comes from
    cutoff: datetime  # instances that ended before it are purged


def plan(conn: Connection, org_id: str, now: datetime, default_days: int) -> list[JourneyRetention]:
    """Each of the org's journeys' retention; NotFound for an unknown org."""
    exists, org_days = repo.org_retention(conn, org_id)
    if not exists:
        raise NotFound(f"unknown org {org_id}")
    out = []
    for jv in list_latest(conn, org_id):
        days, source = jv.definition.retention_days, "journey"
        if days is None:
            days, source = (org_days, "org") if org_days is not None else (default_days, "default")
        out.append(JourneyRetention(jv.journey_id, jv.name, days, source, now - timedelta(days=days)))
    return out


def purge_batch(conn: Connection, org_id: str, journey: JourneyRetention, now: datetime, limit: int) -> int:
    """Reduce up to `limit` of the journey's instances past its retention to tombstones; how many."""
    ids = repo.purgeable_ids(conn, org_id, journey.journey_id, journey.cutoff, limit)
    repo.tombstone(conn, org_id, ids, now)
    return len(ids)


def purgeable(conn: Connection, org_id: str, journey: JourneyRetention) -> int:
    return repo.count_purgeable(conn, org_id, journey.journey_id, journey.cutoff)


def forget_old_pages(engine: Engine) -> None:
    """After a purge or an erasure is committed: drop the database's own older copies of the
    pages the erased data was on (SQLite's WAL), so that nothing of it is left in the files."""
    repo.drop_erased_pages(engine)


def parse_days(value: object) -> int | None:
    """An org's retention as given: whole days from 1 to 36,500, or None (`default`: the
    deployment's); Invalid otherwise."""
    if value is None or value == "default":
        return None
    try:
        days = int(str(value))
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        raise Invalid([f"days: must be a whole number of days from 1 to {MAX_DAYS:,}, or 'default'"])
    return days


def org_days(conn: Connection, org_id: str) -> tuple[bool, int | None]:
    """(whether the org exists, its own retention in days: None when it uses the default)."""
    return repo.org_retention(conn, org_id)


def set_org_days(conn: Connection, org_id: str, value: object) -> int | None:
    """Set the org's retention (see parse_days); NotFound for an unknown org."""
    days = parse_days(value)
    if not repo.set_org_retention(conn, org_id, days):
        raise NotFound(f"unknown org {org_id}")
    return days


# How long a feed's applied messages are remembered (journeys.feeds): a redelivery within this
# time is acknowledged as the first delivery was and not applied again. Interface engines resend
# within minutes or hours.
FEED_MESSAGES_KEPT = timedelta(days=30)


class RetentionSweep:
    """The worker's retention chore: every `interval`, purge at most `batch` instances over all
    orgs (each journey's in its own committed transaction); when it found a full batch, again at
    the next tick, until the backlog is gone."""

    def __init__(self, engine: Engine, default_days: int, interval: timedelta, batch: int) -> None:
        self.engine = engine
        self.default_days = default_days
        self.interval = interval
        self.batch = batch
        self.next_at: datetime | None = None

    def __call__(self, now: datetime) -> None:
        if self.next_at is not None and now < self.next_at:
            return
        self.next_at = now + self.interval  # also when the sweep fails: not again at once
        purged = self.sweep(now)
        self.next_at = now if purged >= self.batch else now + self.interval

    def sweep(self, now: datetime) -> int:
        budget = self.batch
        with read_only(self.engine) as conn:
            org_ids = [str(o["org_id"]) for o in list_orgs(conn)]
        for org_id in org_ids:
            with transaction(self.engine) as conn:  # ids and acknowledgements only: no purge budget
                feeds_repo.forget_before(conn, org_id, now - FEED_MESSAGES_KEPT)
            with read_only(self.engine) as conn:
                journeys = plan(conn, org_id, now, self.default_days)
            for journey in journeys:
                with transaction(self.engine) as conn:
                    n = purge_batch(conn, org_id, journey, now, budget)
                if n:
                    log.info("retention: %d instances of org %s reduced to tombstones", n, org_id)
                budget -= n
                if budget <= 0:
                    forget_old_pages(self.engine)
                    return self.batch
        if budget < self.batch:
            forget_old_pages(self.engine)
        return self.batch - budget
