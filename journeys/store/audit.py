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

# Built once (an append runs in the transaction of every audited change: building and caching a
# statement per call cost more than running it).
_HEAD = (
    sa.select(audit_heads.c.seq, audit_heads.c.hash)
    .where(audit_heads.c.org_id == sa.bindparam("org_id"))
    .with_for_update()
)
_NEW_HEAD = audit_heads.insert().values(org_id=sa.bindparam("org_id"), seq=0, hash=sa.bindparam("genesis"))
_APPEND = audit_log.insert()
_MOVE_HEAD = (
    audit_heads.update()
    .where(audit_heads.c.org_id == sa.bindparam("head_org"))
    .values(seq=sa.bindparam("head_seq"), hash=sa.bindparam("head_hash"))
)


def lock_head(conn: Connection, org_id: str, genesis: str) -> tuple[int, str]:
    """The org's last (seq, hash), its row locked until the transaction ends, so appends to one
    org's chain run one at a time (PostgreSQL: a row lock; SQLite: its single writer). A chain
    without entries starts at (0, genesis)."""
    row = conn.execute(_HEAD, {"org_id": org_id}).first()
    if row is None:
        try:
            with conn.begin_nested():
                conn.execute(_NEW_HEAD, {"org_id": org_id, "genesis": genesis})
        except IntegrityError:
            pass  # another writer created it first: wait for its lock below
        row = conn.execute(_HEAD, {"org_id": org_id}).one()
    return int(row.seq), str(row.hash)


def get_head(conn: Connection, org_id: str) -> tuple[int, str] | None:
    q = sa.select(audit_heads.c.seq, audit_heads.c.hash).where(audit_heads.c.org_id == org_id)
    row = conn.execute(q).first()
    return (int(row.seq), str(row.hash)) if row else None


def append(conn: Connection, row: AuditRow) -> None:
    """Insert the entry and move the head to it (call with the head locked)."""
    append_many(conn, [row])


def append_many(conn: Connection, rows: list[AuditRow]) -> None:
    """Insert consecutive entries of one org's chain (one statement, executemany) and move the
    head to the last (call with the head locked)."""
    if not rows:
        return
    values = [{name: getattr(row, name) for name in AuditRow.__dataclass_fields__} for row in rows]
    conn.execute(_APPEND, values)
    last = rows[-1]
    conn.execute(_MOVE_HEAD, {"head_org": last.org_id, "head_seq": last.seq, "head_hash": last.hash})


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
