"""SQLite: one file, one writer at a time, no planner statistics.

Engine: WAL journal, a busy timeout, and `BEGIN IMMEDIATE` for every transaction that may
write, so two writers queue on the lock instead of failing with SQLITE_BUSY halfway through.
Read-only work opens its transaction with `read_only(conn)` (a deferred BEGIN) and does not
wait for writers. Write transactions are exclusive, so no statement here locks rows.

Bulk writes go to the driver's `executemany` of one prepared statement (in-process, no round
trips: the fastest path SQLite has), the values converted by the columns' own SQLAlchemy types
as SQLAlchemy would store them (a batch's rows mostly share their times, so each distinct time
is converted once): the per-row work of SQLAlchemy's generic path costs more than SQLite's own
insert.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect, Engine

from journeys.store.backends.base import (
    CLAIM_BINDS,
    CLAIM_COLUMNS,
    CLAIM_DUE_WHERE,
    PLAIN_ONLY,
    Backend,
    CursorUpdateSpec,
    ErrorKind,
    Key,
    Listener,
    outbox_claim_statements,
)
from journeys.store.tables import UTCDateTime, journey_instances, outbox

log = logging.getLogger("journeys.store")

PRIVATE = 0o600  # the database file, its WAL and shared-memory files: the owner only

SQLITE_BUSY_TIMEOUT_MS = 30_000
CHUNK = 500  # IN-list size: well under SQLite's bind limit

ji = journey_instances

# ---------------------------------------------------------------- SQL
def _claim_due(only: str) -> sa.TextClause:
    return sa.text(
        "UPDATE journey_instances SET lease_owner = :token, due_at = :lease_until "
        "WHERE (org_id, instance_id) IN (SELECT org_id, instance_id FROM journey_instances "
        f"WHERE {CLAIM_DUE_WHERE.format(only=only)}) "
        f"RETURNING {CLAIM_COLUMNS}"
    ).bindparams(*CLAIM_BINDS)


CLAIM_DUE = _claim_due("")
CLAIM_PLAIN = _claim_due(PLAIN_ONLY)

# Delivery by the built-in outbox provider: one set-based statement. A message of a cancelled
# instance was already marked 'dropped' by the cancel, and the instance-status check makes
# that hold even against a cancel that commits first on another connection.
DELIVER_TO_OUTBOX = sa.text(
    "UPDATE outbox SET status = 'sent', sent_at = :now, provider = 'outbox' "
    "WHERE status = 'queued' AND send_after <= :now "
    "AND NOT EXISTS (SELECT 1 FROM org_channels c "
    "WHERE c.org_id = outbox.org_id AND c.channel = outbox.channel) "
    "AND EXISTS (SELECT 1 FROM journey_instances i WHERE i.org_id = outbox.org_id "
    "AND i.instance_id = outbox.instance_id AND i.status IN ('InProgress', 'Completed'))"
).bindparams(sa.bindparam("now", type_=UTCDateTime()))

# Which of a batch's instances are still leased to it (the revision is compared in Python).
STILL_LEASED = (
    "SELECT instance_id, rev FROM journey_instances WHERE org_id = ? AND lease_owner = ? "
    "AND instance_id IN ({ids})"
)

# Active instances by the partial index of active ones. Without INDEXED BY, SQLite (no
# statistics) would scan the whole (org, journey, status) index — every instance ever run:
# 157 ms instead of 30 ms at 1,000,000 instances, 200,000 of them active.
COUNT_ACTIVE = (
    "SELECT count(*) FROM journey_instances INDEXED BY uq_journey_instances_active_identifier "
    "WHERE status = 'InProgress'"
)

# The SQLite error codes (primary, the low byte of an extended code) that mean "try again later".
_BUSY, _LOCKED, _CANTOPEN = 5, 6, 14


@cache
def _cursor_update_sql(spec: CursorUpdateSpec) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """The cursor UPDATE with positional parameters — the SET columns, then the key and guard —
    and the (name, type) of each parameter in order."""
    sets = spec.set_clause.format(**{n: "?" for n in spec.names})
    sql = f"UPDATE journey_instances AS j SET {sets} WHERE j.org_id = ? AND j.instance_id = ? AND j.rev = ?"
    return sql, (*spec.columns[3:], *spec.columns[:3])


def driver_rows(
    dialect: Dialect, columns: Sequence[tuple[str, Any]], rows: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """Parameter tuples for the driver, column by column: `columns` is (key, SQLAlchemy type);
    each value is converted by its type's bind processor (times and flags: once per distinct
    value — a batch's rows mostly share them)."""
    data: list[list[Any]] = []
    for key, type_ in columns:
        values = [r.get(key) for r in rows]
        process = sa.types.to_instance(type_).dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            memo: dict[Any, Any] = {}
            for i, v in enumerate(values):
                if v is not None:
                    stored = memo.get(v)
                    if stored is None:
                        stored = memo[v] = process(v)
                    values[i] = stored
        data.append(values)
    return list(zip(*data, strict=True))


class SQLiteBackend(Backend):
    name = "sqlite"
    key_chunk = CHUNK
    claim_due_sql = CLAIM_DUE
    claim_plain_sql = CLAIM_PLAIN
    deliver_to_outbox_sql = DELIVER_TO_OUTBOX
    outbox_claim_sql = outbox_claim_statements(lock="")

    # ------------------------------------------------------------ engine and errors
    def create_engine(self, url: str, *, pool_size: int, max_overflow: int) -> Engine:
        private_files(sa.engine.make_url(url).database or "")
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA secure_delete=ON")  # erased patient data is zeroed, not left in free space
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get("journeys_read_only"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def check_database(self, engine: Engine, timeout: float) -> None:
        """A new connection to the file, opened read-write without creating it, reads the
        schema — the pool's open connections would go on reading a file that has been deleted
        or replaced."""
        path = engine.url.database or ""
        if path in ("", ":memory:"):
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1").scalar_one()
            return
        db = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=timeout)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()

    def driver_error_kind(self, orig: BaseException) -> ErrorKind | None:
        """Busy or locked (a writer held the lock past the busy timeout), or the file cannot be
        opened: try again later."""
        if not isinstance(orig, sqlite3.Error):
            return None
        code = getattr(orig, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (_BUSY, _LOCKED, _CANTOPEN):
            return ErrorKind.UNAVAILABLE
        return ErrorKind.OTHER

    def notify_due(self, conn: Connection) -> None:
        return None  # workers poll

    def due_listener(self, engine: Engine) -> Listener | None:
        return None

    # ------------------------------------------------------------ statements
    def one_of(self, column: Any, values: Sequence[Any]) -> Any:
        return column.in_(list(values))

    def insert_many(self, conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        cols = list(rows[0].keys())
        sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        conn.exec_driver_sql(sql, driver_rows(conn.dialect, [(c, table.c[c].type) for c in cols], rows))

    def _insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    # ------------------------------------------------------------ the worker
    def write_cursor_updates(
        self, conn: Connection, token: str, updates: Sequence[dict[str, Any]], spec: CursorUpdateSpec
    ) -> set[Key]:
        """A consistent read of the leases, then one executemany of the rows still leased."""
        kept = self._still_leased(conn, token, updates)
        mine = [u for u in updates if (u["b_org_id"], u["b_instance_id"]) in kept]
        sql, columns = _cursor_update_sql(spec)
        rows = driver_rows(conn.dialect, columns, mine)
        if rows:
            conn.exec_driver_sql(sql, rows)
        return kept

    def _still_leased(self, conn: Connection, token: str, updates: Sequence[dict[str, Any]]) -> set[Key]:
        """Which of the batch's rows are still leased to `token` at the revision claimed. The
        write transaction is exclusive (BEGIN IMMEDIATE), so nothing changes them afterwards."""
        wanted = {(u["b_org_id"], u["b_instance_id"]): int(u["b_rev"]) for u in updates}
        by_org: dict[str, list[str]] = {}
        for org_id, instance_id in wanted:
            by_org.setdefault(org_id, []).append(instance_id)
        kept: set[Key] = set()
        for org_id, ids in by_org.items():
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                sql = STILL_LEASED.format(ids=", ".join("?" for _ in chunk))
                for instance_id, rev in conn.exec_driver_sql(sql, (org_id, token, *chunk)):
                    if wanted.get((org_id, instance_id)) == int(rev):
                        kept.add((org_id, instance_id))
        return kept

    def recent_capped_sms(
        self, conn: Connection, org_id: str, phones: Sequence[str], since: datetime
    ) -> Iterable[Any]:
        return conn.execute(
            sa.select(outbox.c.to_address, outbox.c.created_at).where(
                outbox.c.org_id == org_id,
                outbox.c.to_address.in_(phones),
                outbox.c.created_at >= since,
                outbox.c.capped.is_(True),
                outbox.c.status.in_(("queued", "sent")),
            )
        )

    # ------------------------------------------------------------ searching and cancelling
    def contains(self, column: sa.ColumnElement[str], value: str) -> sa.ColumnElement[bool]:
        return sa.func.instr(column, value) > 0

    def fenced(self, probe: sa.Select[Any]) -> sa.Select[Any]:
        return probe  # SQLite runs a correlated EXISTS as written

    def search_found(
        self, found: sa.Subquery, org_id: str, rest: sa.ColumnElement[bool] | None,
        columns: Sequence[sa.Column[Any]], skip: int, take: int,
    ) -> sa.Select[Any]:  # fmt: skip
        """The instances found are looked up by primary key. No journey condition on them (the
        lookup has already pinned the journey): with one, the planner would walk the (org_id,
        journey_id, created_at) index — every instance of the journey — to avoid a sort."""
        on_key = sa.and_(ji.c.org_id == org_id, ji.c.instance_id == found.c.instance_id)
        q = sa.select(*columns).select_from(found.join(ji, on_key))
        if rest is not None:
            q = q.where(rest)
        return q.order_by(ji.c.created_at.desc(), ji.c.instance_id.desc()).offset(skip).limit(take)

    def cancel_target(self, conn: Connection, pick: sa.Select[Any]) -> sa.ColumnElement[bool] | None:
        """The write transaction is exclusive already: one UPDATE … WHERE … IN (subquery)."""
        return ji.c.instance_id.in_(pick.correlate(None).scalar_subquery())

    # ------------------------------------------------------------ statistics and metrics
    def need_analyze(self, conn: Connection, added: int) -> bool:
        return False  # SQLite keeps no statistics and needs none

    def analyze_instances(self, engine: Engine) -> bool:
        return False

    def drop_erased_pages(self, engine: Engine) -> None:
        # Deleted content is zeroed in the pages (secure_delete, on every connection); the WAL
        # still holds the pages as they were until a checkpoint copies the new ones back and
        # truncates it (it cannot while another connection reads an older snapshot: then the
        # next checkpoint does).
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").all()
        except sa.exc.SQLAlchemyError:
            pass

    def count_active_instances(self, conn: Connection) -> int:
        return int(conn.exec_driver_sql(COUNT_ACTIVE).scalar_one())


def private_files(path: str) -> None:
    """Create the database file readable by its owner only (0600), before SQLite opens it: SQLite
    creates the WAL and shared-memory files with the database file's mode. A file that exists
    with group or other permissions is tightened (it holds patient data), and so are its WAL and
    shared-memory files."""
    if path in ("", ":memory:") or path.startswith("file:"):
        return
    # O_EXCL: an existing file is never opened here — closing a descriptor of a database file
    # would drop every POSIX lock this process's SQLite connections hold on it (corruption).
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, PRIVATE))
    except FileExistsError:
        pass
    except OSError:
        return  # SQLite reports the problem (a missing folder, no permission) when it opens it
    for name in (path, path + "-wal", path + "-shm"):
        try:
            mode = os.stat(name).st_mode & 0o777
            if mode & 0o077:
                os.chmod(name, mode & 0o700)
                log.warning(
                    "database file %s was readable by others: now %o", os.path.basename(name), mode & 0o700
                )
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot restrict the database file's permissions (%s)", type(exc).__name__)
