"""Org channel providers and network delivery of the outbox (SQL only)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.backends import backend_for
from journeys.store.tables import early_delivery_statuses, org_channels, outbox


def set_channel(
    conn: Connection, org_id: str, channel: str, provider: str, sealed: str, now: datetime
) -> None:
    changed = conn.execute(
        org_channels.update()
        .where(org_channels.c.org_id == org_id, org_channels.c.channel == channel)
        .values(provider=provider, config_encrypted=sealed, updated_at=now)
    ).rowcount
    if not changed:
        conn.execute(
            org_channels.insert().values(
                org_id=org_id,
                channel=channel,
                provider=provider,
                config_encrypted=sealed,
                created_at=now,
                updated_at=now,
            )
        )


def remove_channel(conn: Connection, org_id: str, channel: str) -> bool:
    q = org_channels.delete().where(org_channels.c.org_id == org_id, org_channels.c.channel == channel)
    return bool(conn.execute(q).rowcount)


def list_channels(conn: Connection, org_id: str | None = None) -> list[dict[str, Any]]:
    q = sa.select(org_channels).order_by(org_channels.c.org_id, org_channels.c.channel)
    if org_id is not None:
        q = q.where(org_channels.c.org_id == org_id)
    return [dict(r) for r in conn.execute(q).mappings()]


def any_channels(conn: Connection) -> bool:
    return conn.execute(sa.select(org_channels.c.org_id).limit(1)).first() is not None


def claim_for_sending(
    conn: Connection, now: datetime, lease_until: datetime, limit: int
) -> list[dict[str, Any]]:
    """Lease queued messages of orgs with a configured provider, and messages whose lease
    expired (a sender that died mid-send is retried — at least once), earliest first."""
    statements = backend_for(conn).outbox_claim_sql  # one per status: each served by its partial index
    claimed: list[dict[str, Any]] = []
    for status in ("sending", "queued"):  # retries of dead senders first
        if len(claimed) >= limit:
            break
        params = {"now": now, "lease_until": lease_until, "limit": limit - len(claimed)}
        claimed += [dict(r) for r in conn.execute(statements[status], params).mappings()]
    return claimed


def record_result(
    conn: Connection, org_id: str, message_id: str, attempts: int, values: dict[str, Any]
) -> bool:
    """Write a send's outcome, if the message is still this sender's (same attempt)."""
    q = (
        outbox.update()
        .where(
            outbox.c.org_id == org_id,
            outbox.c.message_id == message_id,
            outbox.c.status == "sending",
            outbox.c.attempts == attempts,
        )
        .values(**values)
    )
    return bool(conn.execute(q).rowcount)


def update_delivery_status(
    conn: Connection, org_id: str, provider_message_id: str, status: str, error_code: str | None
) -> dict[str, Any] | None:
    """A provider's status callback; returns the message row (for the timeline) or None."""
    row = (
        conn.execute(
            sa.select(
                outbox.c.message_id, outbox.c.instance_id, outbox.c.flow_id, outbox.c.step_id, outbox.c.status
            ).where(outbox.c.org_id == org_id, outbox.c.provider_message_id == provider_message_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    values: dict[str, Any] = {"status": status}
    if error_code:
        values["error_code"] = error_code
    conn.execute(
        outbox.update()
        .where(outbox.c.org_id == org_id, outbox.c.message_id == row["message_id"])
        .values(**values)
    )
    return dict(row)


def message_with_provider_id(conn: Connection, org_id: str, provider_message_id: str) -> bool:
    q = sa.select(
        sa.exists().where(outbox.c.org_id == org_id, outbox.c.provider_message_id == provider_message_id)
    )
    return bool(conn.execute(q).scalar())


def hold_early_status(
    conn: Connection,
    org_id: str,
    provider_message_id: str,
    status: str,
    error_code: str | None,
    now: datetime,
    keep: timedelta,
) -> None:
    """Keep a final status whose message is not known yet (replacing one held for the same id);
    the org's held statuses older than `keep` are pruned on the way."""
    eds = early_delivery_statuses
    conn.execute(
        eds.delete().where(
            eds.c.org_id == org_id,
            sa.or_(eds.c.provider_message_id == provider_message_id, eds.c.received_at < now - keep),
        )
    )
    conn.execute(
        eds.insert().values(
            org_id=org_id,
            provider_message_id=provider_message_id,
            status=status,
            error_code=error_code,
            received_at=now,
        )
    )


def take_early_status(conn: Connection, org_id: str, provider_message_id: str) -> dict[str, Any] | None:
    """Remove and return the status held for this id, if any (whoever removes it applies it)."""
    eds = early_delivery_statuses
    row = (
        conn.execute(
            eds.delete()
            .where(eds.c.org_id == org_id, eds.c.provider_message_id == provider_message_id)
            .returning(eds.c.status, eds.c.error_code)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None
