"""Feed messages already applied (SQL only; journeys.feeds decides)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.backends import backend_for
from journeys.store.tables import feed_messages as fm
from journeys.store.tables import org_feeds


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


# ---------------------------------------------------------------- an org's stored (FHIR) feeds
def set_feed(
    conn: Connection, org_id: str, name: str, kind: str, journey_id: str, mapping: str, now: datetime
) -> None:
    """Store the feed, or replace its mapping (an upsert)."""
    values = {"kind": kind, "journey_id": journey_id, "mapping": mapping, "updated_at": now}
    row = {"org_id": org_id, "name": name, "created_at": now, **values}
    conn.execute(backend_for(conn).upsert(org_feeds, row, ["org_id", "name"], values, None))


def list_feeds(conn: Connection, org_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    q = sa.select(org_feeds).where(org_feeds.c.org_id == org_id).order_by(org_feeds.c.name)
    if kind is not None:
        q = q.where(org_feeds.c.kind == kind)
    return [dict(r) for r in conn.execute(q).mappings()]


def remove_feed(conn: Connection, org_id: str, name: str) -> bool:
    q = org_feeds.delete().where(org_feeds.c.org_id == org_id, org_feeds.c.name == name)
    return bool(conn.execute(q).rowcount)
