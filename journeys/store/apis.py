"""Registered APIs per org (SQL only; journeys.registered_apis decides)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.backends import backend_for
from journeys.store.tables import org_apis


def set_api(
    conn: Connection, org_id: str, name: str, base_url: str, auth: str, sealed: str, now: datetime
) -> None:
    """Register the API, or replace its settings (an upsert)."""
    values = {"base_url": base_url, "auth": auth, "config_encrypted": sealed, "updated_at": now}
    row = {"org_id": org_id, "name": name, "created_at": now, **values}
    conn.execute(backend_for(conn).upsert(org_apis, row, ["org_id", "name"], values, None))


def get_api(conn: Connection, org_id: str, name: str) -> dict[str, Any] | None:
    q = sa.select(org_apis).where(org_apis.c.org_id == org_id, org_apis.c.name == name)
    row = conn.execute(q).mappings().first()
    return dict(row) if row else None


def list_apis(conn: Connection, org_id: str) -> list[dict[str, Any]]:
    q = sa.select(org_apis).where(org_apis.c.org_id == org_id).order_by(org_apis.c.name)
    return [dict(r) for r in conn.execute(q).mappings()]


def remove_api(conn: Connection, org_id: str, name: str) -> bool:
    q = org_apis.delete().where(org_apis.c.org_id == org_id, org_apis.c.name == name)
    return bool(conn.execute(q).rowcount)
