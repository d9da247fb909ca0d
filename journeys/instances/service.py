"""Looking up and cancelling instances (services: take a connection, never commit — except
`cancel_all_matching`, the loop that commits a bulk cancel one chunk at a time)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from journeys import errors
from journeys.catalog.service import JourneyVersion
from journeys.instances.search import SearchQuery
from journeys.keys.phi import OrgPhi
from journeys.keys.searchable import searchable
from journeys.store import instances as repo
from journeys.store.db import transaction
from journeys.store.errors import ErrorKind, error_kind
from journeys.store.instances import Filter
from journeys.store.tables import ACTIVE
from journeys.timeline import event_row
from journeys.webhooks.events import record_events


class NotFound(errors.NotFound):
    pass


class Conflict(errors.Conflict):
    pass


def stored_filter(jv: JourneyVersion, flt: Filter | None, phi: OrgPhi) -> Filter | None:
    """The filter as the stored rows answer it (blind indexes with encryption on); raises
    Invalid naming each condition they cannot answer (journeys.keys.searchable)."""
    return None if flt is None else searchable(flt, phi, jv.definition)


def search(conn: Connection, jv: JourneyVersion, query: SearchQuery, phi: OrgPhi) -> list[dict[str, Any]]:
    """The matching instances, newest first; `parameters` opened (a dict)."""
    flt = stored_filter(jv, query.filter, phi)
    rows = repo.search(conn, jv.org_id, jv.journey_id, flt, query.skip, query.take)
    return [{**r, "parameters": phi.open_json(r["parameters"])} for r in rows]


def get(
    conn: Connection, jv: JourneyVersion, instance_id: str, phi: OrgPhi
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The instance (`parameters` opened: a dict) and its timeline."""
    row = repo.get(conn, jv.org_id, jv.journey_id, instance_id)
    if row is None:
        raise NotFound(f"instance {instance_id} not found")
    row["parameters"] = phi.open_json(row["parameters"])
    return row, repo.events(conn, jv.org_id, instance_id)


def cancel(
    conn: Connection, jv: JourneyVersion, instance_id: str, clock: Callable[[], datetime], by: str = "api"
) -> bool:
    """Cancel an instance (`by`: who, for its timeline: api, console). True if this call
    cancelled it, False if it already was cancelled. Raises NotFound, or Conflict when it
    already completed or failed."""
    before, now = repo.cancel(conn, jv.org_id, jv.journey_id, instance_id, clock)
    if before is None:
        raise NotFound(f"instance {instance_id} not found")
    if before == ACTIVE:
        record_events(
            conn,
            [event_row(jv.org_id, instance_id, now, None, None, None, "cancelled", {"by": by})],
        )
        return True
    if before == "Cancelled":
        return False
    raise Conflict(f"instance {instance_id} is {before} and can no longer be cancelled")


# ---------------------------------------------------------------- bulk cancel
DEADLOCK_RETRIES = 3


class BulkCancelInterrupted(errors.Failed):
    """A chunk of a bulk cancel failed after earlier chunks had committed: `cancelled` of the
    matching instances are cancelled (for good), the rest not yet. Sending the same request
    again finishes the job: only InProgress instances are touched."""

    def __init__(self, cancelled: int, cause: DBAPIError) -> None:
        super().__init__(f"bulk cancel interrupted after {cancelled} instances: {type(cause).__name__}")
        self.cancelled = cancelled
        self.cause = cause


def count_matching(conn: Connection, jv: JourneyVersion, flt: Filter | None) -> int:
    """How many InProgress instances of the journey a bulk cancel with `flt` would cancel."""
    return repo.count_active(conn, jv.org_id, jv.journey_id, flt)


def cancel_matching(
    conn: Connection,
    jv: JourneyVersion,
    flt: Filter | None,
    clock: Callable[[], datetime],
    by: str,
    limit: int,
) -> int:
    """Cancel up to `limit` InProgress instances of the journey matching `flt` (None: every
    one), with the single cancel's effects: status, due time and lease cleared, `rev` bumped,
    queued messages dropped, a `cancelled` event each (and so its webhooks). Returns how many."""
    cancelled, now = repo.cancel_matching(conn, jv.org_id, jv.journey_id, flt, clock, limit)
    detail = {"by": by, "bulk": True}
    record_events(
        conn, [event_row(jv.org_id, iid, now, None, None, None, "cancelled", detail) for iid in cancelled]
    )
    return len(cancelled)


def _is_deadlock(exc: DBAPIError) -> bool:
    return error_kind(exc) is ErrorKind.DEADLOCK


def cancel_all_matching(
    engine: Engine,
    jv: JourneyVersion,
    flt: Filter | None,
    clock: Callable[[], datetime],
    by: str,
    chunk_size: int,
) -> int:
    """Cancel every InProgress instance of the journey matching `flt`, `chunk_size` per
    transaction, until a chunk finds none (not merely fewer: on PostgreSQL a row that a worker
    completed while the chunk waited for its lock drops out of that chunk, and the rows past
    its LIMIT are only looked at by the next one). A chunk that PostgreSQL picks as a deadlock
    victim (a worker batch locking the same rows in another order) is retried. Raises
    BulkCancelInterrupted when a chunk fails after earlier ones committed."""
    total = 0
    while True:
        for attempt in range(DEADLOCK_RETRIES):
            try:
                with transaction(engine) as conn:
                    done = cancel_matching(conn, jv, flt, clock, by, chunk_size)
                break
            except DBAPIError as exc:
                if _is_deadlock(exc) and attempt < DEADLOCK_RETRIES - 1:
                    continue
                if total:
                    raise BulkCancelInterrupted(total, exc) from exc
                raise
        total += done
        if done == 0:
            return total
