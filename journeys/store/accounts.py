"""Orgs and API tokens (SQL only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.tables import api_tokens, orgs


def insert_org(conn: Connection, org_id: str, name: str, now: datetime) -> None:
    conn.execute(orgs.insert().values(org_id=org_id, name=name, created_at=now))


def get_org(conn: Connection, org_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(orgs).where(orgs.c.org_id == org_id)).mappings().first()
    return dict(row) if row else None


def find_org_by_name(conn: Connection, name: str) -> dict[str, Any] | None:
    row = (
        conn.execute(sa.select(orgs).where(orgs.c.name == name).order_by(orgs.c.created_at))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def list_orgs(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sa.select(orgs).order_by(orgs.c.created_at)).mappings()]


def insert_token(conn: Connection, **values: Any) -> None:
    conn.execute(api_tokens.insert().values(**values))


def get_token_by_hash(conn: Connection, token_hash: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(api_tokens).where(api_tokens.c.token_hash == token_hash)).mappings().first()
    return dict(row) if row else None


def list_tokens(conn: Connection, org_id: str | None) -> list[dict[str, Any]]:
    q = sa.select(api_tokens).order_by(api_tokens.c.created_at)
    if org_id is not None:
        q = q.where(api_tokens.c.org_id == org_id)
    return [dict(r) for r in conn.execute(q).mappings()]


def revoke_token(conn: Connection, token_id: str, now: datetime, org_id: str | None = None) -> bool:
    """Revoke a token by id (of `org_id`'s tokens only, when given); True when such a token exists
    (revoked now or before)."""
    where = [api_tokens.c.token_id == token_id]
    if org_id is not None:
        where.append(api_tokens.c.org_id == org_id)
    exists = conn.execute(sa.select(api_tokens.c.org_id).where(*where)).first()
    if exists is None:
        return False
    conn.execute(api_tokens.update().where(*where, api_tokens.c.revoked_at.is_(None)).values(revoked_at=now))
    return True


def touch_token(conn: Connection, org_id: str, token_id: str, now: datetime, older_than: datetime) -> None:
    """Record last use, at most once per interval (a write per request would serialise SQLite)."""
    conn.execute(
        api_tokens.update()
        .where(
            api_tokens.c.org_id == org_id,
            api_tokens.c.token_id == token_id,
            sa.or_(api_tokens.c.last_used_at.is_(None), api_tokens.c.last_used_at < older_than),
        )
        .values(last_used_at=now)
    )
