"""Publishing journeys and loading their versions.

A published version is immutable, so parsed definitions are cached per (org, journey, version).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from journeys.definitions.model import JourneyDefinition
from journeys.ids import new_id
from journeys.store import catalog as repo


@dataclass(frozen=True)
class JourneyVersion:
    org_id: str
    journey_id: str
    name: str
    version: int
    definition: JourneyDefinition


_cache: dict[tuple[str, str, int], JourneyDefinition] = {}
_cache_lock = threading.Lock()
_CACHE_MAX = 4096


def publish(conn: Connection, org_id: str, definition: JourneyDefinition, now: datetime) -> JourneyVersion:
    """Store `definition` as a new version of the org's journey with the same name (or a new journey)."""
    existing = repo.find_journey_by_name(conn, org_id, definition.name)
    if existing is None:
        journey_id = new_id()
        repo.insert_journey(conn, org_id, journey_id, definition.name, now)
        version = 1
    else:
        journey_id = existing["journey_id"]
        version = repo.bump_latest_version(conn, org_id, journey_id, now)
    repo.insert_version(conn, org_id, journey_id, version, definition.model_dump_json(by_alias=True), now)
    return JourneyVersion(org_id, journey_id, definition.name, version, definition)


def load_version(conn: Connection, org_id: str, journey_id: str, version: int) -> JourneyDefinition:
    key = (org_id, journey_id, version)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    text = repo.get_version_definition(conn, org_id, journey_id, version)
    if text is None:
        raise LookupError(f"journey {journey_id} has no version {version}")
    definition = JourneyDefinition.model_validate_json(text)
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[key] = definition
    return definition


def get_latest(conn: Connection, org_id: str, journey_id: str) -> JourneyVersion | None:
    """The journey's latest version, or None if the org has no such journey."""
    row = repo.get_journey(conn, org_id, journey_id)
    if row is None:
        return None
    version = int(row["latest_version"])
    return JourneyVersion(
        org_id, journey_id, row["name"], version, load_version(conn, org_id, journey_id, version)
    )


def list_latest(conn: Connection, org_id: str) -> list[JourneyVersion]:
    out = []
    for row in repo.list_journeys(conn, org_id):
        version = int(row["latest_version"])
        definition = load_version(conn, org_id, row["journey_id"], version)
        out.append(JourneyVersion(org_id, row["journey_id"], row["name"], version, definition))
    return out
