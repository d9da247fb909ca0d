"""Feed messages already applied (SQL only; journeys.feeds decides)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.tables import feed_messages as fm


def applied(conn: Connection, org_id: str, feed: str, sender: str, control_id: str) -> dict[str, Any] | None:
    q = sa.select(fm.c.ack_code, fm.c.ack_text, fm.c.instance_id, fm.c.event).where(
        fm.c.org_id == org_id, fm.c.feed == feed, fm.c.sender == sender, fm.c.control_id == control_id
    )
    row = conn.execute(q).mappings().first()
    return dict(row) if row else None


def record_applied(
    conn: Connection,
    org_id: str,
    feed: str,
    sender: str,
    control_id: str,
    event: str,
    now: datetime,
    ack_code: str,
    ack_text: str,
    instance_id: str | None,
) -> None:
    """Insert the message's row; a concurrent delivery of the same message makes the database
    raise IntegrityError (the primary key), and that transaction rolls back."""
    conn.execute(
        fm.insert().values(
            org_id=org_id,
            feed=feed,
            sender=sender,
            control_id=control_id,
            event=event,
            received_at=now,
            ack_code=ack_code,
            ack_text=ack_text,
            instance_id=instance_id,
        )
    )


def forget_before(conn: Connection, org_id: str, before: datetime) -> int:
    """Delete the rows of messages received before `before`; returns how many."""
    q = fm.delete().where(fm.c.org_id == org_id, fm.c.received_at < before)
    return int(conn.execute(q).rowcount or 0)
