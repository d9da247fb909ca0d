"""The audit log and its per-org chain heads (SQL only; the hashing is journeys.accounts.audit's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from journeys.store.tables import audit_heads, audit_log


@dataclass(frozen=True)
class AuditRow:
    org_id: str
    seq: int
    at: datetime
    actor_kind: str
    actor_id: str | None
    action: str
    target_kind: str | None
    target_ids: str  # JSON array
    count: int | None
    client_address: str | None
    prev_hash: str
    hash: str


_COLUMNS = [audit_log.c[name] for name in AuditRow.__dataclass_fields__]


def lock_head(conn: Connection, org_id: str, genesis: str) -> tuple[int, str]:
    """The org's last (seq, hash), its row locked until the transaction ends, so appends to one
    org's chain run one at a time (PostgreSQL: a row lock; SQLite: its single writer). A chain
    without entries starts at (0, genesis)."""
    q = sa.select(audit_heads.c.seq, audit_heads.c.hash).where(audit_heads.c.org_id == org_id)
    row = conn.execute(q.with_for_update()).first()
    if row is None:
        try:
            with conn.begin_nested():
                conn.execute(audit_heads.insert().values(org_id=org_id, seq=0, hash=genesis))
        except IntegrityError:
            pass  # another writer created it first: wait for its lock below
        row = conn.execute(q.with_for_update()).one()
    return int(row.seq), str(row.hash)


def get_head(conn: Connection, org_id: str) -> tuple[int, str] | None:
    q = sa.select(audit_heads.c.seq, audit_heads.c.hash).where(audit_heads.c.org_id == org_id)
    row = conn.execute(q).first()
    return (int(row.seq), str(row.hash)) if row else None


def append(conn: Connection, row: AuditRow) -> None:
    """Insert the entry and move the head to it (call with the head locked)."""
    values = {name: getattr(row, name) for name in AuditRow.__dataclass_fields__}
    conn.execute(audit_log.insert().values(**values))
    conn.execute(
        audit_heads.update().where(audit_heads.c.org_id == row.org_id).values(seq=row.seq, hash=row.hash)
    )


def entries(
    conn: Connection, org_id: str, after_seq: int, limit: int, since: datetime | None = None
) -> list[AuditRow]:
    """Up to `limit` entries after `after_seq`, in order (at or after `since`, if given)."""
    q = (
        sa.select(*_COLUMNS)
        .where(audit_log.c.org_id == org_id, audit_log.c.seq > after_seq)
        .order_by(audit_log.c.seq)
        .limit(limit)
    )
    if since is not None:
        q = q.where(audit_log.c.at >= since)
    return [AuditRow(**row) for row in conn.execute(q).mappings()]


def newest_first(
    conn: Connection,
    org_id: str,
    limit: int,
    before_seq: int | None = None,
    action: str | None = None,
    actor_id: str | None = None,
) -> list[AuditRow]:
    """Up to `limit` entries before `before_seq` (all when None), newest first, of one action
    and/or one actor when given (walks the (org_id, seq) primary key backwards)."""
    q = sa.select(*_COLUMNS).where(audit_log.c.org_id == org_id)
    if before_seq is not None:
        q = q.where(audit_log.c.seq < before_seq)
    if action is not None:
        q = q.where(audit_log.c.action == action)
    if actor_id is not None:
        q = q.where(audit_log.c.actor_id == actor_id)
    q = q.order_by(audit_log.c.seq.desc()).limit(limit)
    return [AuditRow(**row) for row in conn.execute(q).mappings()]
