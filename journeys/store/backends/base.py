"""The interface every database backend implements, and the SQL text both dialects share.

A backend holds the statements and code paths in which SQLite and PostgreSQL differ: how work
is claimed and written back, how rows are loaded in bulk, the shapes that fix a search's plan,
how errors of the driver are told apart. The store's modules hold what is the same on both and
ask `backend_for(conn)` for the rest; nothing else in the code asks which database it is on.
"""

from __future__ import annotations

import enum
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from journeys.store.tables import UTCDateTime

Key = tuple[str, str]  # (org_id, instance_id)
Listener = Callable[[threading.Event, threading.Event], None]  # (stop, wake)


class ErrorKind(enum.Enum):
    """What a database error means to the caller, whichever driver raised it."""

    UNAVAILABLE = "unavailable"  # try again later: server down, connection lost, database busy
    CONFLICT = "conflict"  # a constraint refused the write (a unique key taken, …)
    DEADLOCK = "deadlock"  # the transaction was chosen as a deadlock victim: retry it
    OTHER = "other"  # an error in what was asked of the database


# The key and guard of a cursor update, in this order, named as the backends' statements name them.
CURSOR_KEY = ("b_org_id", "b_instance_id", "b_rev")


@dataclass(frozen=True)
class CursorUpdateSpec:
    """How a batch's cursor updates are written: the (name, type) of each value, the first three
    `CURSOR_KEY`, and the SET clause with `{name}` where each value goes (`j` is the row)."""

    columns: tuple[tuple[str, Any], ...]
    set_clause: str

    def __post_init__(self) -> None:
        if tuple(name for name, _ in self.columns[:3]) != CURSOR_KEY:
            raise ValueError(f"a cursor update starts with {CURSOR_KEY}")

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]


# ---------------------------------------------------------------- SQL both dialects share
# Claiming due instances: the same columns and order; the dialects differ in how the rows are
# picked and locked.
CLAIM_COLUMNS = (
    "org_id, instance_id, journey_id, version, flow_id, step_id, time_zone, parameters, state, rev, attempts"
)
CLAIM_DUE_WHERE = (
    "status = 'InProgress' AND due_at IS NOT NULL AND due_at <= :now{only} ORDER BY due_at LIMIT :limit"
)
# A worker without JOURNEYS_SECRET_KEY leaves instances whose parameters are sealed (journeys.keys.phi)
# to the workers that can read them.
PLAIN_ONLY = " AND substr(parameters, 1, 1) <> '~'"
CLAIM_BINDS = (
    sa.bindparam("now", type_=UTCDateTime()),
    sa.bindparam("lease_until", type_=UTCDateTime()),
    sa.bindparam("token", type_=sa.String()),
    sa.bindparam("limit", type_=sa.Integer()),
)

# Claiming outbox messages for sending. One status per statement, written into its text, so that
# each is served by its partial index (ix_outbox_queued, ix_outbox_sending: `status = … AND
# send_after <= now ORDER BY send_after`) also in a prepared statement's generic plan; an IN of
# both statuses reads the whole outbox. `{lock}`: how the dialect locks the rows it picks.
OUTBOX_STATUSES = ("queued", "sending")
_OUTBOX_CLAIM = (
    "UPDATE outbox SET status = 'sending', send_after = :lease_until, attempts = attempts + 1 "
    "WHERE (org_id, message_id) IN (SELECT o.org_id, o.message_id FROM outbox o JOIN journey_instances i "
    "ON i.org_id = o.org_id AND i.instance_id = o.instance_id WHERE o.status = '{status}' "
    "AND o.send_after <= :now "
    "AND EXISTS (SELECT 1 FROM org_channels c WHERE c.org_id = o.org_id AND c.channel = o.channel) "
    "AND i.status IN ('InProgress', 'Completed') "
    "ORDER BY o.send_after LIMIT :limit{lock}) "
    "RETURNING org_id, message_id, channel, to_address, recipient, subject, body, html, idempotency_key, "
    "attempts, instance_id, flow_id, step_id"
)


def outbox_claim_statements(lock: str) -> dict[str, sa.TextClause]:
    """The outbox claim for each status, with the dialect's `lock` clause on its subquery."""
    binds = (
        sa.bindparam("now", type_=UTCDateTime()),
        sa.bindparam("lease_until", type_=UTCDateTime()),
        sa.bindparam("limit", type_=sa.Integer()),
    )
    return {s: sa.text(_OUTBOX_CLAIM.format(status=s, lock=lock)).bindparams(*binds) for s in OUTBOX_STATUSES}


class Backend(ABC):
    """One database: its engine, its error model and its hand-tuned statements."""

    name: ClassVar[str]  # SQLAlchemy's dialect name
    key_chunk: ClassVar[int]  # keys per look-up or update statement (an IN list, or one array)
    claim_due_sql: sa.TextClause  # lease due instances: binds now, lease_until, token, limit
    claim_plain_sql: sa.TextClause  # the same, of instances whose parameters are not sealed
    deliver_to_outbox_sql: sa.TextClause  # hand messages of orgs with no provider to the outbox
    outbox_claim_sql: dict[str, sa.TextClause]  # by status: lease messages for sending

    # ------------------------------------------------------------ engine and errors
    @abstractmethod
    def create_engine(self, url: str, *, pool_size: int, max_overflow: int) -> Engine: ...

    @abstractmethod
    def check_database(self, engine: Engine, timeout: float) -> None:
        """Raise unless the database answers within `timeout` seconds (the readiness check)."""

    @abstractmethod
    def driver_error_kind(self, orig: BaseException) -> ErrorKind | None:
        """What an error of an operation the database refused means (`orig`, the driver's own
        exception); None when it is not this backend's driver's."""

    @abstractmethod
    def notify_due(self, conn: Connection) -> None:
        """Tell idle workers that work was triggered (at commit), where the database can."""

    @abstractmethod
    def due_listener(self, engine: Engine) -> Listener | None:
        """A loop that sets `wake` whenever work is triggered, until `stop` is set; None where
        the database sends no notifications (workers poll)."""

    # ------------------------------------------------------------ statements
    @abstractmethod
    def one_of(self, column: Any, values: Sequence[Any]) -> Any:
        """`column` is one of `values`."""

    @abstractmethod
    def insert_many(self, conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        """Insert `rows` (dicts with the same keys) in the fewest round trips."""

    @abstractmethod
    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT construct (it has `on_conflict_do_update`)."""

    def upsert(
        self, table: sa.Table, values: dict[str, Any], key: list[str], update: dict[str, Any],
        where: sa.ColumnElement[bool] | None,
    ) -> sa.Insert:  # fmt: skip
        """INSERT `values`, or on a conflict on `key` UPDATE with `update` (if `where`)."""
        insert = self._insert(table).values(**values)
        stmt: sa.Insert = insert.on_conflict_do_update(index_elements=key, set_=update, where=where)
        return stmt

    # ------------------------------------------------------------ the worker
    @abstractmethod
    def write_cursor_updates(
        self, conn: Connection, token: str, updates: Sequence[dict[str, Any]], spec: CursorUpdateSpec
    ) -> set[Key]:
        """Apply the cursor updates to the rows still leased to `token` at the revision claimed;
        returns the keys of the rows changed."""

    @abstractmethod
    def recent_capped_sms(
        self, conn: Connection, org_id: str, phones: Sequence[str], since: datetime
    ) -> Iterable[Any]:
        """(phone, created_at) of the org's capped SMS to `phones` since `since`, queued or sent."""

    # ------------------------------------------------------------ searching and cancelling
    @abstractmethod
    def contains(self, column: sa.ColumnElement[str], value: str) -> sa.ColumnElement[bool]:
        """Case-sensitive substring."""

    @abstractmethod
    def fenced(self, probe: sa.Select[Any]) -> sa.Select[Any]:
        """A subquery the planner must run as written (not flatten into a join)."""

    @abstractmethod
    def search_found(
        self, found: sa.Subquery, org_id: str, rest: sa.ColumnElement[bool] | None,
        columns: Sequence[sa.Column[Any]], skip: int, take: int,
    ) -> sa.Select[Any]:  # fmt: skip
        """A page of search results, newest first: the instances whose ids a parameter lookup
        (`found`) produced that meet `rest` (a condition on journey_instances)."""

    @abstractmethod
    def cancel_target(self, conn: Connection, pick: sa.Select[Any]) -> sa.ColumnElement[bool] | None:
        """The condition naming the instances `pick` selects (their ids) for a bulk cancel's
        UPDATE, taking whatever locks the database needs first; None when there are none."""

    # ------------------------------------------------------------ statistics and metrics
    @abstractmethod
    def need_analyze(self, conn: Connection, added: int) -> bool:
        """Whether the instances table's statistics are stale with `added` more rows."""

    @abstractmethod
    def analyze_instances(self, engine: Engine) -> bool:
        """Gather fresh statistics of the instances table; whether it ran. Never raises."""

    def drop_erased_pages(self, engine: Engine) -> None:
        """After erasing patient data: let go of old copies of the pages it was on, where the
        database keeps them in files of its own (never raises)."""
        return None

    @abstractmethod
    def count_active_instances(self, conn: Connection) -> int:
        """How many instances are InProgress, from the partial index of active instances."""
