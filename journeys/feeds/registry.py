"""An org's stored FHIR feeds: a mapping file checked, bound to its org and journey, and kept as
written (`journeys fhir set FILE`); the FHIR endpoints apply every one of the org's feeds."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from journeys.accounts import audit
from journeys.accounts.audit import Action, Actor
from journeys.definitions.problems import DefinitionError, Problem
from journeys.errors import NotFound
from journeys.feeds.bind import Feed, bind
from journeys.feeds.mapping import FeedMapping, load_mapping_text
from journeys.store import feeds as repo

_cache: dict[str, FeedMapping] = {}  # mapping text -> its parsed mapping (texts were checked when stored)
_lock = threading.Lock()
_CACHE_MAX = 256


@dataclass(frozen=True)
class StoredFeed:
    org_id: str
    name: str
    kind: str
    journey_id: str
    updated_at: datetime


def set_fhir_feed(conn: Connection, actor: Actor, text: str, filename: str) -> StoredFeed:
    """Check the mapping (raises DefinitionError), bind it (raises Invalid), store it; audited."""
    now = actor.at
    mapping = load_mapping_text(text, filename)
    if mapping.kind != "fhir":
        raise DefinitionError(
            [Problem("must be fhir for a stored feed (an HL7 feed runs `journeys hl7 listen`)", "kind")],
            filename,
        )
    feed = bind(conn, mapping)
    repo.set_feed(conn, feed.org_id, feed.name, "fhir", feed.journey_id, text, now)
    audit.record(conn, actor.entry(feed.org_id, Action.FEED_SET, "feed", (feed.name,)))
    return StoredFeed(feed.org_id, feed.name, "fhir", feed.journey_id, now)


def list_feeds(conn: Connection, org_id: str) -> list[StoredFeed]:
    return [
        StoredFeed(r["org_id"], r["name"], r["kind"], r["journey_id"], r["updated_at"])
        for r in repo.list_feeds(conn, org_id)
    ]


def remove_feed(conn: Connection, actor: Actor, org_id: str, name: str) -> None:
    """Remove the feed (raises NotFound); audited."""
    if not repo.remove_feed(conn, org_id, name):
        raise NotFound(f"org {org_id} has no feed {name}")
    audit.record(conn, actor.entry(org_id, Action.FEED_REMOVE, "feed", (name,)))


def _parsed(text: str) -> FeedMapping:
    found = _cache.get(text)
    if found is None:
        found = load_mapping_text(text)
        with _lock:
            if len(_cache) >= _CACHE_MAX:
                _cache.clear()
            _cache[text] = found
    return found


def fhir_feeds(conn: Connection, org_id: str) -> list[Feed]:
    """The org's FHIR feeds, ready to apply."""
    return [
        Feed(_parsed(r["mapping"]), r["org_id"], r["journey_id"])
        for r in repo.list_feeds(conn, org_id, "fhir")
    ]
