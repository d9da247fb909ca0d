"""What `/metrics` reads from the database at scrape time (SQL only).

Every query is served by an index whose size follows the work outstanding, not the history:
active instances and due work from the partial indexes on `status = 'InProgress'`, the outbox
backlog from `ix_outbox_queued` / `ix_outbox_sending`, webhook deliveries from
`ix_webhook_deliveries_due`, oldest times as the first entry of those indexes. Instances that
have ended (Completed, Cancelled, Failed) are not counted: that would read every instance ever
run at every scrape. Workers' step and batch counts come from their heartbeats (each worker
writes its running totals every few seconds), so they reach `/metrics` whichever process the
worker runs in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.backends import backend_for
from journeys.store.tables import (
    ACTIVE_LITERAL,
    UTCDateTime,
    journey_instances,
    outbox,
    webhook_deliveries,
    worker_heartbeats,
)

ji = journey_instances
wd = webhook_deliveries
wh = worker_heartbeats
WORKER_SILENT_AFTER = timedelta(seconds=30)  # as `journeys workers`


@dataclass(frozen=True)
class Backlog:
    count: int
    oldest: datetime | None  # the earliest due time among them


@dataclass(frozen=True)
class Snapshot:
    instances_active: int
    due: Backlog  # active instances whose next step is due (a lease that ran out counts)
    outbox_queued: int
    outbox_sending: int
    outbox_due: Backlog  # queued messages whose send time has come
    webhooks_pending: int
    webhooks_sending: int
    webhooks_due: Backlog  # pending deliveries whose attempt time has come
    worker_steps: int
    worker_batches: int
    workers_alive: int


def _literal(value: str) -> sa.ColumnElement[str]:
    """A string in the SQL text: SQLite uses a partial index only when it can prove its
    predicate, and PostgreSQL's generic plans cannot prove it from a bound parameter."""
    return sa.literal_column(f"'{value}'")


def _backlog(conn: Connection, column: sa.ColumnElement[datetime], where: list[sa.ColumnElement[bool]],
             now: datetime) -> Backlog:  # fmt: skip
    due = [*where, column <= now]
    row = conn.execute(sa.select(sa.func.count(), sa.func.min(column, type_=UTCDateTime())).where(*due)).one()
    return Backlog(int(row[0]), row[1])


def _count(conn: Connection, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


def snapshot(conn: Connection, now: datetime) -> Snapshot:
    active = ji.c.status == ACTIVE_LITERAL
    queued = outbox.c.status == _literal("queued")
    open_deliveries = wd.c.status.in_([_literal("pending"), _literal("sending")])
    workers = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(wh.c.steps), 0),
            sa.func.coalesce(sa.func.sum(wh.c.batches), 0),
            sa.func.count().filter(wh.c.stopped_at.is_(None), wh.c.last_seen_at > now - WORKER_SILENT_AFTER),
        )
    ).one()
    return Snapshot(
        instances_active=backend_for(conn).count_active_instances(conn),
        due=_backlog(conn, ji.c.due_at, [active, ji.c.due_at.is_not(None)], now),
        outbox_queued=_count(conn, outbox, queued),
        outbox_sending=_count(conn, outbox, outbox.c.status == _literal("sending")),
        outbox_due=_backlog(conn, outbox.c.send_after, [queued], now),
        webhooks_pending=_count(conn, wd, open_deliveries, wd.c.status == _literal("pending")),
        webhooks_sending=_count(conn, wd, open_deliveries, wd.c.status == _literal("sending")),
        webhooks_due=_backlog(
            conn, wd.c.next_attempt_at, [open_deliveries, wd.c.status == _literal("pending")], now
        ),
        worker_steps=int(workers[0]),
        worker_batches=int(workers[1]),
        workers_alive=int(workers[2]),
    )
