"""Journeys and their immutable versions (SQL only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.tables import journey_versions, journeys


def find_journey_by_name(conn: Connection, org_id: str, name: str) -> dict[str, Any] | None:
    row = (
        conn.execute(sa.select(journeys).where(journeys.c.org_id == org_id, journeys.c.name == name))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def get_journey(conn: Connection, org_id: str, journey_id: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            sa.select(journeys).where(journeys.c.org_id == org_id, journeys.c.journey_id == journey_id)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def list_journeys(conn: Connection, org_id: str) -> list[dict[str, Any]]:
    q = sa.select(journeys).where(journeys.c.org_id == org_id).order_by(journeys.c.name)
    return [dict(r) for r in conn.execute(q).mappings()]


def insert_journey(conn: Connection, org_id: str, journey_id: str, name: str, now: datetime) -> None:
    conn.execute(
        journeys.insert().values(
            org_id=org_id, journey_id=journey_id, name=name, latest_version=1, created_at=now, updated_at=now
        )
    )


def bump_latest_version(conn: Connection, org_id: str, journey_id: str, now: datetime) -> int:
    """Atomically take the next version number (the conditional UPDATE is the guard)."""
    row = conn.execute(
        journeys.update()
        .where(journeys.c.org_id == org_id, journeys.c.journey_id == journey_id)
        .values(latest_version=journeys.c.latest_version + 1, updated_at=now)
        .returning(journeys.c.latest_version)
    ).first()
    assert row is not None
    return int(row[0])


def insert_version(
    conn: Connection, org_id: str, journey_id: str, version: int, definition_json: str, now: datetime
) -> None:
    conn.execute(
        journey_versions.insert().values(
            org_id=org_id, journey_id=journey_id, version=version, definition=definition_json, created_at=now
        )
    )


def get_version_definition(conn: Connection, org_id: str, journey_id: str, version: int) -> str | None:
    row = conn.execute(
        sa.select(journey_versions.c.definition).where(
            journey_versions.c.org_id == org_id,
            journey_versions.c.journey_id == journey_id,
            journey_versions.c.version == version,
        )
    ).first()
    return row[0] if row else None
