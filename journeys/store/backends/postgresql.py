"""PostgreSQL (psycopg 3): concurrent writers, row locks, a planner that follows statistics.

Concurrent workers claim disjoint batches with `FOR UPDATE SKIP LOCKED`. Keys go to the server
as one array (`= ANY(:array)`), so a statement is compiled and planned alike whatever the number
of values. Bulk loads use `COPY … FROM STDIN` on the transaction's own connection — one
statement per table and call, rows streamed without a bind-parameter limit; 2–3 times the rows
per second of `INSERT … SELECT FROM unnest(arrays)` on this project's tables (bench/README.md).
Where a plan resting on row estimates went wrong (right after a large load, before the tables
are analysed), the statements' shapes fix it instead (`OFFSET 0` fences, LATERAL key probes,
joins by index): docs/operations.md, "Search plans and statistics".
"""

from __future__ import annotations

import logging
import random
import sys
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.util import ClauseAdapter

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
from journeys.store.tables import ACTIVE_LITERAL, UTCDateTime, journey_instances

log = logging.getLogger("journeys.store")
worker_log = logging.getLogger("journeys.worker")

PG_CONNECT_TIMEOUT_S = 10
KEY_CHUNK = 10_000  # keys per statement, as one array: one statement and plan per request
SMALL_ROWS = 20  # up to this many rows, one INSERT: a COPY costs more round trips
UPDATE_ROWS = 5_000  # cursor updates per statement
DUE_CHANNEL = "journeys_due"

ji = journey_instances

# ---------------------------------------------------------------- SQL
# The subquery locks the rows it picks, so their ctid cannot change before the UPDATE reads
# them: a TID scan, whatever the planner thinks of the table's size.
def _claim_due(only: str) -> sa.TextClause:
    return sa.text(
        "UPDATE journey_instances SET lease_owner = :token, due_at = :lease_until "
        "WHERE ctid = ANY(ARRAY(SELECT ctid FROM journey_instances "
        f"WHERE {CLAIM_DUE_WHERE.format(only=only)} FOR UPDATE SKIP LOCKED)) "
        f"RETURNING {CLAIM_COLUMNS}"
    ).bindparams(*CLAIM_BINDS)


CLAIM_DUE = _claim_due("")
CLAIM_PLAIN = _claim_due(PLAIN_ONLY)

# Delivery by the built-in outbox provider. The instance rows are read FOR SHARE, so delivery
# waits for a cancel that is in flight and then sees its result (rows are locked
# instance-then-outbox, as a cancel does); a message of a cancelled instance was already marked
# 'dropped' by the cancel.
DELIVER_TO_OUTBOX = sa.text(
    "UPDATE outbox SET status = 'sent', sent_at = :now, provider = 'outbox' "
    "WHERE status = 'queued' AND (org_id, message_id) IN ("
    "SELECT o.org_id, o.message_id FROM outbox o JOIN journey_instances i "
    "ON i.org_id = o.org_id AND i.instance_id = o.instance_id "
    "WHERE o.status = 'queued' AND o.send_after <= :now AND i.status IN ('InProgress', 'Completed') "
    "AND NOT EXISTS (SELECT 1 FROM org_channels c WHERE c.org_id = o.org_id AND c.channel = o.channel) "
    "FOR SHARE OF i)"
).bindparams(sa.bindparam("now", type_=UTCDateTime()))

# The cursor update's key joins: probe the primary key for each row. Left to itself the planner
# hashes a scan of the whole table for a few hundred rows once the table is past some 10,000 rows.
JOIN_BY_INDEX = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
JOIN_DEFAULT = "RESET enable_hashjoin; RESET enable_mergejoin"

# The SMS ledger: one index range per phone (org_id, to_address, created_at), whatever the
# planner's statistics say about the org's outbox (OFFSET 0 keeps the subquery from being
# flattened into a scan of the org's recent messages).
RECENT_CAPPED_SMS = (
    sa.text(
        "SELECT p.phone, o.created_at FROM unnest(CAST(:phones AS text[])) AS p(phone) "
        "JOIN LATERAL (SELECT created_at FROM outbox WHERE org_id = :org_id AND to_address = p.phone "
        "AND created_at >= :since AND capped AND status IN ('queued', 'sent') OFFSET 0) AS o ON true"
    )
    .bindparams(
        sa.bindparam("phones", type_=postgresql.ARRAY(sa.Text())),
        sa.bindparam("since", type_=UTCDateTime()),
    )
    .columns(sa.column("phone", sa.Text()), sa.column("created_at", UTCDateTime()))
)

# ---- Statistics after large loads.
# A bulk load of tens of thousands of instances leaves the statistics describing the tables as
# they were before it until autovacuum gets to them (a minute or more later; never, with
# autovacuum off). Growth is measured in pages: the table's size now (which includes the rows
# the transaction has just written) against its size at the last ANALYZE (`pg_class.relpages`)
# — exact and current, where the server's change counters (`n_mod_since_analyze`) arrive up to
# a second or more late and would count a load's rows again after the ANALYZE it caused.
ANALYZE_FRACTION = 0.2  # of the rows the statistics describe
ANALYZE_MIN_ROWS = 1_000  # below this, plans do not depend on statistics
# Only journey_instances: searches' plans no longer depend on instance_parameters' statistics
# (their shape fixes them), and analysing it costs four times as much (1,000,000 instances:
# 0.5 s against 2.4 s, warm).
ANALYZED_TABLES = ("journey_instances",)
_ADVISORY_KEY = 0x6A6F75726E6579  # one ANALYZE at a time across processes; others skip
TABLE_SIZES = sa.text(
    "SELECT c.reltuples, c.relpages, pg_relation_size(c.oid) / current_setting('block_size')::int, "
    "coalesce(s.n_live_tup, 0) FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
    "WHERE c.oid = 'journey_instances'::regclass"
)

# psycopg raises these (subclasses of OperationalError) when the server goes away or restarts.
_UNAVAILABLE = {"OperationalError", "AdminShutdown", "CrashShutdown", "CannotConnectNow", "ConnectionTimeout"}
_DEADLOCK_DETECTED = "40P01"


def array_type(type_: Any) -> str:
    """The PostgreSQL array type to send a column's values as."""
    if isinstance(type_, sa.types.TypeDecorator):
        type_ = type_.impl
    if isinstance(type_, sa.BigInteger):
        return "int8[]"
    if isinstance(type_, sa.Integer):
        return "int4[]"
    if isinstance(type_, sa.Boolean):
        return "bool[]"
    if isinstance(type_, sa.DateTime):
        return "timestamptz[]"
    return "text[]"


@cache
def _cursor_update_sql(spec: CursorUpdateSpec) -> str:
    """`UPDATE … FROM unnest(arrays)`: one array per value and one of the batch's token. The token
    is a joined column, not a constant: a constant filter on lease_owner looks selective to the
    planner and turns the join into a scan of the table."""
    names = spec.names
    arrays = ", ".join(f"%b::{array_type(t)}" for _, t in spec.columns)
    return (
        f"UPDATE journey_instances AS j SET {spec.set_clause.format(**{n: f'v.{n}' for n in names})} "
        f"FROM unnest({arrays}, %b::text[]) AS v({', '.join(names)}, b_token) "
        "WHERE j.org_id = v.b_org_id AND j.instance_id = v.b_instance_id AND j.rev = v.b_rev "
        "AND j.lease_owner = v.b_token RETURNING j.org_id, j.instance_id"
    )


class PostgreSQLBackend(Backend):
    name = "postgresql"
    key_chunk = KEY_CHUNK
    claim_due_sql = CLAIM_DUE
    claim_plain_sql = CLAIM_PLAIN
    deliver_to_outbox_sql = DELIVER_TO_OUTBOX
    outbox_claim_sql = outbox_claim_statements(lock=" FOR UPDATE OF o SKIP LOCKED")

    # ------------------------------------------------------------ engine and errors
    def create_engine(self, url: str, *, pool_size: int, max_overflow: int) -> Engine:
        # A bounded wait for a server that does not answer (libpq waits indefinitely by default).
        connect_args = {} if "connect_timeout=" in url else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        return sa.create_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            hide_parameters=True,
            connect_args=connect_args,
        )

    def check_database(self, engine: Engine, timeout: float) -> None:
        """`SELECT 1` on a pooled connection (pre-pinged, so a restarted server is found out)
        under a statement timeout."""
        with engine.connect() as conn, conn.begin():
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
            conn.exec_driver_sql("SELECT 1").scalar_one()

    def driver_error_kind(self, orig: BaseException) -> ErrorKind | None:
        driver = sys.modules.get("psycopg")  # not loaded: the error is not psycopg's
        if driver is None or not isinstance(orig, driver.Error):
            return None
        if getattr(orig, "sqlstate", None) == _DEADLOCK_DETECTED:
            return ErrorKind.DEADLOCK
        if type(orig).__name__ in _UNAVAILABLE:
            return ErrorKind.UNAVAILABLE
        return ErrorKind.OTHER

    def notify_due(self, conn: Connection) -> None:
        conn.exec_driver_sql(f"NOTIFY {DUE_CHANNEL}")

    def due_listener(self, engine: Engine) -> Listener | None:
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

        def listen(stop: threading.Event, wake: threading.Event) -> None:
            """LISTEN: wake up at once when work is triggered (a hint; polling still runs)."""
            import psycopg

            while not stop.is_set():
                try:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute(f"LISTEN {DUE_CHANNEL}")
                        while not stop.is_set():
                            for _ in conn.notifies(timeout=1.0, stop_after=1):
                                wake.set()
                except Exception as exc:
                    worker_log.warning("LISTEN connection lost (%s); polling meanwhile", type(exc).__name__)
                    stop.wait(random.uniform(1.0, 3.0))

        return listen

    # ------------------------------------------------------------ statements
    def one_of(self, column: Any, values: Sequence[Any]) -> Any:
        """`column = ANY(:array)`: one bind parameter."""
        return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))

    def insert_many(self, conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        if len(rows) <= SMALL_ROWS:
            conn.execute(table.insert(), [dict(r) for r in rows])
            return
        self._copy(conn, table.name, list(rows[0].keys()), rows)

    def _copy(self, conn: Connection, table: str, cols: list[str], rows: Sequence[dict[str, Any]]) -> None:
        """COPY the rows in. Driver errors are re-raised as SQLAlchemy's, so a unique violation
        is an `IntegrityError` and a lost connection is recognised as such."""
        import psycopg

        sql = f"COPY {table} ({', '.join(cols)}) FROM STDIN"
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(sql) as copy:
                write = copy.write_row
                for r in rows:
                    write(tuple([r.get(c) for c in cols]))
        except psycopg.Error as exc:
            lost = conn.dialect.is_disconnect(cast(Any, exc), conn.connection.dbapi_connection, cursor)
            # No values in the message (hide_parameters): the statement names only table and columns.
            raise sa.exc.DBAPIError.instance(
                sql, None, exc, psycopg.Error, hide_parameters=True, dialect=conn.dialect,
                connection_invalidated=lost,
            ) from exc  # fmt: skip
        finally:
            cursor.close()

    def _insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    # ------------------------------------------------------------ the worker
    def write_cursor_updates(
        self, conn: Connection, token: str, updates: Sequence[dict[str, Any]], spec: CursorUpdateSpec
    ) -> set[Key]:
        """`UPDATE … FROM unnest(…) … RETURNING`, one statement per UPDATE_ROWS rows; the row
        locks it takes are held to commit, so a concurrent cancel waits and then loses on `rev`."""
        sql = _cursor_update_sql(spec)
        kept: set[Key] = set()
        conn.exec_driver_sql(JOIN_BY_INDEX)
        for start in range(0, len(updates), UPDATE_ROWS):
            chunk = updates[start : start + UPDATE_ROWS]
            params = (*([u[name] for u in chunk] for name in spec.names), [token] * len(chunk))
            kept.update((r[0], r[1]) for r in conn.exec_driver_sql(sql, params))
        conn.exec_driver_sql(JOIN_DEFAULT)
        return kept

    def recent_capped_sms(
        self, conn: Connection, org_id: str, phones: Sequence[str], since: datetime
    ) -> Iterable[Any]:
        return conn.execute(RECENT_CAPPED_SMS, {"phones": phones, "org_id": org_id, "since": since})

    # ------------------------------------------------------------ searching and cancelling
    def contains(self, column: sa.ColumnElement[str], value: str) -> sa.ColumnElement[bool]:
        return sa.func.strpos(column, value) > 0

    def fenced(self, probe: sa.Select[Any]) -> sa.Select[Any]:
        """`OFFSET 0` keeps the planner from turning an EXISTS into a join, whose method and order
        would rest on row estimates — and with stale statistics (right after a large load) an
        estimate of 1 row made a nested loop rescan thousands of parameter rows per instance."""
        return probe.offset(0)

    def search_found(
        self, found: sa.Subquery, org_id: str, rest: sa.ColumnElement[bool] | None,
        columns: Sequence[sa.Column[Any]], skip: int, take: int,
    ) -> sa.Select[Any]:  # fmt: skip
        """The statement's shape fixes the plan, so that it does not rest on row estimates —
        which stay wrong after a large load until the tables are analysed. (With estimates of 1
        row on tables of 20,000, the former join shape rescanned the journey's instances, or a
        partial index, for every matching parameter row: 23–500 s per search; bench/README.md,
        "Search right after a load".)

        The lookup's instance ids are the outer side of a `LATERAL` subquery that fetches each
        instance by primary key: a nested loop of key probes, the one join method a lateral
        reference allows. Only the key is given to it — no journey or status condition (a partial
        index on status looks empty to the planner until the table is analysed) — and `OFFSET 0`
        keeps the other conditions from being pushed into it; they are checked on the instance it
        found, parameter conditions by key probes too (`fenced`)."""
        by_key = sa.select(ji).where(ji.c.org_id == org_id, ji.c.instance_id == found.c.instance_id)
        hit = by_key.offset(0).lateral("hit")
        q = sa.select(*(hit.c[c.name] for c in columns)).select_from(found.join(hit, sa.true()))
        if rest is not None:  # the conditions on journey_instances, applied to the lateral's rows
            q = q.where(ClauseAdapter(hit).traverse(rest))
        return q.order_by(hit.c.created_at.desc(), hit.c.instance_id.desc()).offset(skip).limit(take)

    def cancel_target(self, conn: Connection, pick: sa.Select[Any]) -> sa.ColumnElement[bool] | None:
        """The rows are locked first (SELECT … FOR UPDATE, which waits for a worker batch writing
        any of them); then one UPDATE names them as an array."""
        ids = [r[0] for r in conn.execute(pick.with_for_update(of=ji))]
        if not ids:
            return None
        return self.one_of(ji.c.instance_id, ids)  # type: ignore[no-any-return]

    # ------------------------------------------------------------ statistics and metrics
    def need_analyze(self, conn: Connection, added: int) -> bool:
        """True when the instances table holds more than ANALYZE_FRACTION more rows (at least
        ANALYZE_MIN_ROWS) than its statistics describe, counting the `added` rows of this
        transaction."""
        if added <= 0:
            return False
        reltuples, relpages, pages, live = conn.execute(TABLE_SIZES).one()
        if float(reltuples) < 0 or int(relpages) == 0:  # never analysed
            return int(live) + added >= ANALYZE_MIN_ROWS
        now = float(reltuples) * int(pages) / int(relpages)  # what the planner itself assumes
        grown = now - float(reltuples)
        return grown >= max(ANALYZE_MIN_ROWS, ANALYZE_FRACTION * float(reltuples))

    def analyze_instances(self, engine: Engine) -> bool:
        """ANALYZE journey_instances, unless another process is analysing it right now."""
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
                if not conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({_ADVISORY_KEY})").scalar():
                    return False
                conn.exec_driver_sql(f"ANALYZE {', '.join(ANALYZED_TABLES)}")
            return True
        except Exception as exc:  # statistics are an optimisation; report the class only
            log.warning("ANALYZE after a bulk load failed: %s", type(exc).__name__)
            return False

    def count_active_instances(self, conn: Connection) -> int:
        q = sa.select(sa.func.count()).select_from(ji).where(ji.c.status == ACTIVE_LITERAL)
        return int(conn.execute(q).scalar_one())
