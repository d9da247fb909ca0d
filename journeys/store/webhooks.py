"""SQL for webhook subscriptions and deliveries (services in journeys.webhooks.service)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.tables import webhook_deliveries as wd
from journeys.store.tables import webhook_subscriptions as ws

OPEN = ("pending", "sending")


def insert_subscription(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(ws.insert().values(**row))


def get_subscription(conn: Connection, org_id: str, subscription_id: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            sa.select(ws).where(
                ws.c.org_id == org_id, ws.c.subscription_id == subscription_id, ws.c.disabled_at.is_(None)
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def list_subscriptions(conn: Connection, org_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(ws)
        .where(ws.c.org_id == org_id, ws.c.disabled_at.is_(None))
        .order_by(ws.c.created_at, ws.c.subscription_id)
    ).mappings()
    return [dict(r) for r in rows]


def set_verified(conn: Connection, org_id: str, subscription_id: str, at: datetime | None) -> None:
    conn.execute(
        ws.update()
        .where(ws.c.org_id == org_id, ws.c.subscription_id == subscription_id)
        .values(verified_at=at)
    )


def disable(conn: Connection, org_id: str, subscription_id: str, at: datetime) -> bool:
    """Disable a subscription; its undelivered deliveries are dropped (status failed)."""
    done = conn.execute(
        ws.update()
        .where(ws.c.org_id == org_id, ws.c.subscription_id == subscription_id, ws.c.disabled_at.is_(None))
        .values(disabled_at=at)
    ).rowcount
    if done:
        conn.execute(
            wd.update()
            .where(wd.c.org_id == org_id, wd.c.subscription_id == subscription_id, wd.c.status.in_(OPEN))
            .values(status="failed", last_error="the subscription was deleted", next_attempt_at=None)
        )
    return bool(done)


def list_deliveries(
    conn: Connection, org_id: str, subscription_id: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    q = sa.select(wd).where(wd.c.org_id == org_id)
    if subscription_id is not None:
        q = q.where(wd.c.subscription_id == subscription_id)
    if status:
        q = q.where(wd.c.status == status)
    rows = conn.execute(q.order_by(wd.c.delivery_id.desc()).limit(limit)).mappings()
    return [dict(r) for r in rows]


def claim_due(conn: Connection, now: datetime, lease_until: datetime, limit: int) -> list[dict[str, Any]]:
    """Lease due deliveries: per (subscription, instance) only the earliest open one, so a later
    event never goes out before an earlier one of the same instance is delivered or given up."""
    earlier = sa.alias(wd, "earlier")
    blocked = (
        sa.select(sa.literal(1))
        .where(
            earlier.c.org_id == wd.c.org_id,
            earlier.c.subscription_id == wd.c.subscription_id,
            earlier.c.instance_id == wd.c.instance_id,
            earlier.c.delivery_id < wd.c.delivery_id,
            earlier.c.status.in_(OPEN),
        )
        .exists()
    )
    rows = [
        dict(r)
        for r in conn.execute(
            sa.select(wd.c.org_id, wd.c.delivery_id, wd.c.status, wd.c.next_attempt_at)
            .where(
                wd.c.status.in_([sa.literal_column("'pending'"), sa.literal_column("'sending'")]),
                wd.c.next_attempt_at <= now,
                ~blocked,
            )
            .order_by(wd.c.next_attempt_at, wd.c.delivery_id)
            .limit(limit)
        ).mappings()
    ]
    claimed: list[dict[str, Any]] = []
    for r in rows:
        done = conn.execute(
            wd.update()
            .where(
                wd.c.org_id == r["org_id"],
                wd.c.delivery_id == r["delivery_id"],
                wd.c.status == r["status"],
                wd.c.next_attempt_at == r["next_attempt_at"],
            )
            .values(status="sending", next_attempt_at=lease_until)
        ).rowcount
        if done:
            claimed.append(r)
    if not claimed:
        return []
    out: list[dict[str, Any]] = []
    for r in claimed:
        row = (
            conn.execute(
                sa.select(wd, ws.c.url, ws.c.secret_encrypted)
                .join(ws, sa.and_(ws.c.org_id == wd.c.org_id, ws.c.subscription_id == wd.c.subscription_id))
                .where(wd.c.org_id == r["org_id"], wd.c.delivery_id == r["delivery_id"])
            )
            .mappings()
            .first()
        )
        if row is not None:
            out.append(dict(row))
    return out


def record_attempt(conn: Connection, org_id: str, delivery_id: str, values: dict[str, Any]) -> None:
    conn.execute(
        wd.update()
        .where(wd.c.org_id == org_id, wd.c.delivery_id == delivery_id, wd.c.status == "sending")
        .values(**values)
    )


def retry_delivery(conn: Connection, org_id: str, delivery_id: str, now: datetime) -> bool:
    """Make a failed delivery of an active subscription due now (one more attempt); False when
    the org has no such delivery (unknown, not failed, or its subscription deleted)."""
    active = (
        sa.select(sa.literal(1))
        .where(
            ws.c.org_id == wd.c.org_id,
            ws.c.subscription_id == wd.c.subscription_id,
            ws.c.disabled_at.is_(None),
        )
        .exists()
    )
    done = conn.execute(
        wd.update()
        .where(wd.c.org_id == org_id, wd.c.delivery_id == delivery_id, wd.c.status == "failed", active)
        .values(status="pending", next_attempt_at=now)
    ).rowcount
    return bool(done)
