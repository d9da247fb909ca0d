"""Looking up and cancelling instances (services: take a connection, never commit)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from journeys.catalog import JourneyVersion
from journeys.engine.search import SearchQuery
from journeys.engine.timeline import event_row
from journeys.store import instances as repo
from journeys.store.events import insert_events
from journeys.store.tables import ACTIVE


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


def search(conn: Connection, jv: JourneyVersion, query: SearchQuery) -> list[dict[str, Any]]:
    return repo.search(conn, jv.org_id, jv.journey_id, query.filter, query.skip, query.take)


def get(
    conn: Connection, jv: JourneyVersion, instance_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    row = repo.get(conn, jv.org_id, jv.journey_id, instance_id)
    if row is None:
        raise NotFound(instance_id)
    return row, repo.events(conn, jv.org_id, instance_id)


def cancel(conn: Connection, jv: JourneyVersion, instance_id: str, clock: Callable[[], datetime]) -> bool:
    """Cancel an instance. True if this call cancelled it, False if it already was cancelled.
    Raises NotFound, or Conflict when it already completed or failed."""
    before, now = repo.cancel(conn, jv.org_id, jv.journey_id, instance_id, clock)
    if before is None:
        raise NotFound(instance_id)
    if before == ACTIVE:
        insert_events(
            conn,
            [event_row(jv.org_id, instance_id, now, None, None, None, "cancelled", {"by": "api"})],
        )
        return True
    if before == "Cancelled":
        return False
    raise Conflict(f"instance {instance_id} is {before} and can no longer be cancelled")
