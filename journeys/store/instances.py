"""Journey instances, their searchable parameters and their timeline (SQL only).

Bulk paths are set-based: one multi-row INSERT (executemany on SQLite, SQLAlchemy's
insertmanyvalues batches on PostgreSQL) per table per request, and IN-list look-ups in chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.records import ParameterRow, SubflowMove
from journeys.store.backends import Backend, backend_for
from journeys.store.bulk import insert_many, one_of
from journeys.store.tables import (
    ACTIVE,
    ACTIVE_LITERAL,
    instance_events,
    instance_parameters,
    journey_instances,
    outbox,
)

ji = journey_instances
ip = instance_parameters


# ---------------------------------------------------------------- filters (compiled to SQL)
@dataclass(frozen=True)
class ParamFilter:
    name: str  # lower-cased
    operator: str  # equals | notEquals | contains | startsWith | in
    value: str | tuple[str, ...]


@dataclass(frozen=True)
class StatusFilter:
    status: str


@dataclass(frozen=True)
class DateFilter:
    """A time range on one of the instance's own times: `start` inclusive, `end` exclusive (either
    may be open), so `after X` and `before X` split the instances without overlap or gap."""

    column: str  # created_at | start_at | last_event_at
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class AndFilter:
    children: tuple[Filter, ...]


@dataclass(frozen=True)
class OrFilter:
    children: tuple[Filter, ...]


@dataclass(frozen=True)
class NotFilter:
    child: Filter


Filter = ParamFilter | StatusFilter | DateFilter | AndFilter | OrFilter | NotFilter
DATE_COLUMNS = ("created_at", "start_at", "last_event_at")


def has_condition(f: Filter) -> bool:
    """Whether the filter names any condition at all (an empty And, or Nots and Ors of empty
    Ands, name none)."""
    if isinstance(f, AndFilter | OrFilter):
        return any(has_condition(c) for c in f.children)
    if isinstance(f, NotFilter):
        return has_condition(f.child)
    return True


def _prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (byte-wise order)."""
    chars = list(prefix)
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF and not (0xD7FF <= last < 0xE000):
            chars[-1] = chr(last + 1)
            return "".join(chars)
        chars.pop()
    return None


def _value_condition(col: sa.ColumnElement[str], f: ParamFilter, backend: Backend) -> sa.ColumnElement[bool]:
    if f.operator == "equals":
        return col == f.value
    if f.operator == "in":
        return col.in_(list(f.value))
    if f.operator == "startsWith":
        assert isinstance(f.value, str)
        upper = _prefix_upper_bound(f.value)
        return sa.and_(col >= f.value, col < upper) if upper is not None else col >= f.value
    if f.operator == "contains":
        assert isinstance(f.value, str)
        return backend.contains(col, f.value)  # case-sensitive
    raise ValueError(f"unknown operator {f.operator}")  # pragma: no cover - the parser checks


def _date_condition(f: DateFilter) -> sa.ColumnElement[bool]:
    col = ji.c[f.column]
    conds: list[sa.ColumnElement[bool]] = []
    if col.nullable:
        # Never-set times (lastEventDateTime before the first step) match no range, and so the
        # negation of any range: NOT (NULL >= x) would match nothing either.
        conds.append(col.is_not(None))
    if f.start is not None:
        conds.append(col >= f.start)
    if f.end is not None:
        conds.append(col < f.end)
    return sa.and_(sa.true(), *conds)


def _compile(f: Filter, org_id: str, journey_id: str, backend: Backend) -> sa.ColumnElement[bool]:
    if isinstance(f, StatusFilter):
        return ji.c.status == f.status
    if isinstance(f, DateFilter):
        return _date_condition(f)
    if isinstance(f, AndFilter):
        return sa.and_(sa.true(), *(_compile(c, org_id, journey_id, backend) for c in f.children))
    if isinstance(f, OrFilter):
        return sa.or_(sa.false(), *(_compile(c, org_id, journey_id, backend) for c in f.children))
    if isinstance(f, NotFilter):
        return sa.not_(_compile(f.child, org_id, journey_id, backend))
    if f.operator == "notEquals":
        return sa.not_(_compile(ParamFilter(f.name, "equals", f.value), org_id, journey_id, backend))
    return _has_parameter(f, backend)


def _has_parameter(f: ParamFilter, backend: Backend) -> sa.ColumnElement[bool]:
    """The instance's own parameter row, probed by primary key (org_id, instance_id, name) for
    each instance the query walks or the lookup found: the cost follows the instances looked at,
    never the number of instances that meet the condition (an `IN (subquery)` gathered all of
    them first: 1.3 s for a value shared by 1,000,000 instances on SQLite). The probe is fenced
    so that the planner runs it as written (PostgreSQL: `OFFSET 0`, docs/operations.md, "Search
    plans and statistics")."""
    own = ip.alias("own")
    probe: sa.Select[Any] = (
        sa.select(sa.literal_column("1"))
        .select_from(own)
        .where(
            own.c.org_id == ji.c.org_id,
            own.c.instance_id == ji.c.instance_id,
            own.c.name == f.name,
            _value_condition(own.c.value, f, backend),
        )
    )
    return sa.exists(backend.fenced(probe))


_DRIVING_OPERATORS = ("equals", "in", "startsWith")


def _without(f: Filter, driver: Filter) -> Filter | None:
    if f is driver:
        return None
    if isinstance(f, AndFilter):
        rest = tuple(c for c in f.children if c is not driver)
        return AndFilter(rest) if rest else None
    return f


def _drivable(f: Filter) -> bool:
    """A condition the lookup index can produce the instances of by itself: an index-served
    parameter condition, or an Or of such conditions (a union of lookups)."""
    if isinstance(f, ParamFilter):
        return f.operator in _DRIVING_OPERATORS
    if isinstance(f, OrFilter):
        return bool(f.children) and all(isinstance(c, ParamFilter) and _drivable(c) for c in f.children)
    return False


def _drivers(f: Filter | None) -> list[Filter]:
    """The conditions every result meets that could drive the query: the filter itself, or the
    direct children of a top-level And."""
    if f is None:
        return []
    if _drivable(f):
        return [f]
    if isinstance(f, AndFilter):
        return [c for c in f.children if _drivable(c)]
    return []


def _lookup(org_id: str, journey_id: str, driver: Filter, backend: Backend) -> sa.Select[Any]:
    """The ids of the journey's instances that meet `driver`, from the lookup index."""
    if isinstance(driver, OrFilter):
        arms = [_lookup(org_id, journey_id, c, backend) for c in driver.children]
        return sa.select(sa.union(*arms).subquery("arms").c.instance_id)
    assert isinstance(driver, ParamFilter)
    p = ip.alias("p")
    return sa.select(p.c.instance_id).where(
        p.c.org_id == org_id,
        p.c.journey_id == journey_id,
        p.c.name == driver.name,
        _value_condition(p.c.value, driver, backend),
    )


DRIVER_PROBE = 1_000  # matches counted per candidate when choosing what drives a search


def _choose_driver(conn: Connection, org_id: str, journey_id: str, drivers: list[Filter]) -> Filter:
    """The candidate with the fewest matches, counted from the lookup index up to DRIVER_PROBE
    each (one round trip; the counts depend on no statistics). Otherwise the order the client
    wrote the conditions in would decide, and `appointmentDateTime equals X AND patientId
    equals Y` would walk every instance booked at X."""
    if len(drivers) == 1:
        return drivers[0]
    backend = backend_for(conn)
    counts = conn.execute(
        sa.select(
            *(
                sa.select(sa.func.count())
                .select_from(_lookup(org_id, journey_id, d, backend).limit(DRIVER_PROBE).subquery())
                .scalar_subquery()
                for d in drivers
            )
        )
    ).one()
    return drivers[min(range(len(drivers)), key=lambda i: counts[i])]


# ---------------------------------------------------------------- writes
def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    insert_many(conn, table, rows)


def find_active_by_identifier(
    conn: Connection, org_id: str, journey_id: str, keys: Iterable[str], *, lock: bool = False
) -> dict[str, dict[str, Any]]:
    """Active instances of the journey whose identifier key is in `keys`, by key.

    With `lock`, the rows are locked for the rest of the transaction (PostgreSQL `FOR UPDATE`;
    SQLite transactions here are already exclusive writers)."""
    keys = list(dict.fromkeys(keys))
    found: dict[str, dict[str, Any]] = {}
    cols = [ji.c.instance_id, ji.c.identifier_key, ji.c.version, ji.c.parameters, ji.c.time_zone, ji.c.rev]
    # PostgreSQL: the keys as one array (`= ANY`), 10,000 at a time — one statement and plan
    # per request rather than one per 500 keys.
    size = backend_for(conn).key_chunk
    for start in range(0, len(keys), size):
        chunk = keys[start : start + size]
        q = sa.select(*cols).where(
            ji.c.org_id == org_id,
            ji.c.journey_id == journey_id,
            ji.c.status == ACTIVE_LITERAL,
            one_of(conn, ji.c.identifier_key, chunk),
        )
        if lock:
            q = q.with_for_update()
        for row in conn.execute(q).mappings():
            found[row["identifier_key"]] = dict(row)
    return found


def apply_subflow_updates(conn: Connection, org_id: str, moves: Sequence[SubflowMove]) -> int:
    """Move matched instances onto a subflow (one executemany); returns rows changed.
    The `rev` guard makes a concurrent change (cancel, a worker step) lose the race cleanly.
    """
    if not moves:
        return 0
    stmt = (
        ji.update()
        .where(
            ji.c.org_id == org_id,
            ji.c.instance_id == sa.bindparam("b_id"),
            ji.c.rev == sa.bindparam("b_rev"),
            ji.c.status == ACTIVE,
        )
        .values(
            flow_id=sa.bindparam("flow_id"),
            step_id=sa.bindparam("step_id"),
            due_at=sa.bindparam("due_at"),
            parameters=sa.bindparam("parameters"),
            state="{}",
            attempts=0,
            waiting_reply_phone=None,
            lease_owner=None,
            rev=ji.c.rev + 1,
        )
    )
    binds = [
        {
            "b_id": m.instance_id,
            "b_rev": m.rev,
            "flow_id": m.flow_id,
            "step_id": m.step_id,
            "due_at": m.due_at,
            "parameters": m.parameters,
        }
        for m in moves
    ]
    result = conn.execute(stmt, binds)
    return int(result.rowcount or 0)


def _parameter_record(r: ParameterRow) -> dict[str, Any]:
    """A parameter row's table row (the one conversion)."""
    return {"org_id": r.org_id, "instance_id": r.instance_id, "journey_id": r.journey_id, "name": r.name,
            "value": r.value}  # fmt: skip


def insert_parameters(conn: Connection, rows: Sequence[ParameterRow]) -> None:
    """Store new instances' searchable parameters (one set-based insert)."""
    insert_many(conn, ip, [_parameter_record(r) for r in rows])


def replace_parameters(conn: Connection, rows: Sequence[ParameterRow]) -> None:
    """Upsert searchable parameter rows (one executemany delete by key, then one multi-row insert)."""
    if not rows:
        return
    conn.execute(
        ip.delete().where(
            ip.c.org_id == sa.bindparam("b_org_id"),
            ip.c.instance_id == sa.bindparam("b_instance_id"),
            ip.c.name == sa.bindparam("b_name"),
        ),
        [{"b_org_id": r.org_id, "b_instance_id": r.instance_id, "b_name": r.name} for r in rows],
    )
    insert_parameters(conn, rows)


# ---------------------------------------------------------------- reads
_RESULT_COLS = [
    ji.c.instance_id,
    ji.c.batch_id,
    ji.c.status,
    ji.c.parameters,
    ji.c.created_at,
    ji.c.start_at,
    ji.c.last_event_at,
    ji.c.last_flow_name,
    ji.c.last_step_id,
    ji.c.version,
]


def _matching(conn: Connection, cols: Sequence[Any], org_id: str, journey_id: str, flt: Filter | None) -> Any:
    """SELECT `cols` of the journey's instances that match `flt`, unordered: for counting and
    bulk cancel (search orders and pages: `search_statement`). The driver is chosen as for
    search, and its lookup reaches the instances by primary key."""
    drivers = _drivers(flt)
    driver = _choose_driver(conn, org_id, journey_id, drivers) if drivers else None
    backend = backend_for(conn)
    if driver is None:
        q = sa.select(*cols).where(ji.c.org_id == org_id, ji.c.journey_id == journey_id)
        rest = flt
    else:
        # The lookup pins the journey (SQLiteBackend.search_found: why no journey condition here).
        found = _lookup(org_id, journey_id, driver, backend).subquery("found")
        on_key = sa.and_(ji.c.org_id == org_id, ji.c.instance_id == found.c.instance_id)
        q = sa.select(*cols).select_from(found.join(ji, on_key))
        rest = _without(flt, driver) if flt is not None else None
    if rest is not None:
        q = q.where(_compile(rest, org_id, journey_id, backend))
    return q


def search(
    conn: Connection, org_id: str, journey_id: str, flt: Filter | None, skip: int, take: int
) -> list[dict[str, Any]]:
    """Newest first (the statement: `search_statement`)."""
    q = search_statement(conn, org_id, journey_id, flt, skip, take)
    return [dict(r) for r in conn.execute(q).mappings()]


def search_statement(
    conn: Connection, org_id: str, journey_id: str, flt: Filter | None, skip: int, take: int
) -> sa.Select[Any]:
    """A selective parameter condition drives the query from the (org_id, journey_id, name,
    value) index and reaches instances by primary key, in the shape the backend's
    `search_found` gives it; otherwise the (org_id, journey_id[, status], created_at) indexes
    serve it, newest first, and the other conditions are checked on the instances it walks."""
    backend = backend_for(conn)
    drivers = _drivers(flt)
    driver = _choose_driver(conn, org_id, journey_id, drivers) if drivers else None
    rest = flt if driver is None else (_without(flt, driver) if flt is not None else None)
    condition = _compile(rest, org_id, journey_id, backend) if rest is not None else None
    if driver is None:
        q = sa.select(*_RESULT_COLS).where(ji.c.org_id == org_id, ji.c.journey_id == journey_id)
        if condition is not None:
            q = q.where(condition)
        return q.order_by(ji.c.created_at.desc(), ji.c.instance_id.desc()).offset(skip).limit(take)
    found = _lookup(org_id, journey_id, driver, backend).subquery("found")
    return backend.search_found(found, org_id, condition, _RESULT_COLS, skip, take)


def count_active(conn: Connection, org_id: str, journey_id: str, flt: Filter | None) -> int:
    """How many InProgress instances of the journey match `flt`."""
    q = _matching(conn, [ji.c.instance_id], org_id, journey_id, flt)
    q = q.where(ji.c.status == ACTIVE_LITERAL)
    return int(conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one())


def get(conn: Connection, org_id: str, journey_id: str, instance_id: str) -> dict[str, Any] | None:
    q = sa.select(
        *_RESULT_COLS, ji.c.flow_id, ji.c.step_id, ji.c.due_at, ji.c.time_zone, ji.c.last_error
    ).where(ji.c.org_id == org_id, ji.c.journey_id == journey_id, ji.c.instance_id == instance_id)
    row = conn.execute(q).mappings().first()
    return dict(row) if row else None


def events(conn: Connection, org_id: str, instance_id: str) -> list[dict[str, Any]]:
    q = (
        sa.select(instance_events)
        .where(instance_events.c.org_id == org_id, instance_events.c.instance_id == instance_id)
        .order_by(instance_events.c.event_id)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


# ---------------------------------------------------------------- cancel
_CANCELLED_VALUES: dict[str, Any] = {
    "status": "Cancelled",
    "due_at": None,
    "waiting_reply_phone": None,
    "lease_owner": None,
    "rev": ji.c.rev + 1,
}


def cancel(
    conn: Connection, org_id: str, journey_id: str, instance_id: str, clock: Callable[[], datetime]
) -> tuple[str | None, datetime]:
    """Cancel an active instance. Returns the status it had before ('InProgress' when this call
    cancelled it; None when there is no such instance) and the cancel time. The row is locked
    first and the clock read after, so a step that was running finishes before the cancel's
    time; the conditional UPDATE is the guard."""
    conn.execute(
        sa.select(ji.c.instance_id)
        .where(ji.c.org_id == org_id, ji.c.journey_id == journey_id, ji.c.instance_id == instance_id)
        .with_for_update()
    ).first()
    now = clock()
    changed = conn.execute(
        ji.update()
        .where(
            ji.c.org_id == org_id,
            ji.c.journey_id == journey_id,
            ji.c.instance_id == instance_id,
            ji.c.status == ACTIVE,
        )
        .values(ended_at=now, **_CANCELLED_VALUES)
        .returning(ji.c.instance_id)
    ).first()
    if changed is not None:
        drop_queued_messages(conn, org_id, [instance_id], "instance cancelled")
        return ACTIVE, now
    row = conn.execute(
        sa.select(ji.c.status).where(
            ji.c.org_id == org_id, ji.c.journey_id == journey_id, ji.c.instance_id == instance_id
        )
    ).first()
    return (row[0] if row else None), now


def cancel_matching(
    conn: Connection,
    org_id: str,
    journey_id: str,
    flt: Filter | None,
    clock: Callable[[], datetime],
    limit: int,
) -> tuple[list[str], datetime]:
    """Cancel up to `limit` InProgress instances of the journey matching `flt` (lowest ids
    first), as the single cancel does, in one UPDATE … RETURNING. Returns their ids and the
    cancel time. Their queued messages are dropped here too.

    PostgreSQL: the rows are locked first (SELECT … FOR UPDATE, which waits for a worker batch
    writing any of them) and the clock read after, so a step that was running finishes before
    the cancel's time; then one UPDATE names them as an array. SQLite: the write transaction is
    exclusive already, so one UPDATE … WHERE … IN (subquery) does it."""
    pick = (
        _matching(conn, [ji.c.instance_id], org_id, journey_id, flt)
        .where(ji.c.status == ACTIVE_LITERAL)
        .order_by(ji.c.instance_id)
        .limit(limit)
    )
    target = backend_for(conn).cancel_target(conn, pick)
    if target is None:
        return [], clock()
    now = clock()
    cancelled = list(
        conn.execute(
            ji.update()
            .where(ji.c.org_id == org_id, ji.c.journey_id == journey_id, ji.c.status == ACTIVE, target)
            .values(ended_at=now, **_CANCELLED_VALUES)
            .returning(ji.c.instance_id)
        ).scalars()
    )
    drop_queued_messages(conn, org_id, cancelled, "instance cancelled")
    return cancelled, now


def drop_queued_messages(
    conn: Connection, org_id: str, instance_ids: Sequence[str], reason: str
) -> list[dict[str, Any]]:
    """Messages these instances queued but that have not gone out yet will never go out (on
    PostgreSQL one statement per 10,000 instances, the ids as one array). Returns the dropped
    messages (ids, instance, flow, step, channel; no content)."""
    dropped: list[dict[str, Any]] = []
    size = backend_for(conn).key_chunk
    for start in range(0, len(instance_ids), size):
        chunk = list(instance_ids[start : start + size])
        rows = conn.execute(
            outbox.update()
            .where(
                outbox.c.org_id == org_id,
                one_of(conn, outbox.c.instance_id, chunk),
                outbox.c.status == "queued",
            )
            .values(status="dropped", last_error=reason)
            .returning(outbox.c.message_id, outbox.c.instance_id, outbox.c.flow_id)
            .returning(outbox.c.step_id, outbox.c.channel)
        )
        dropped += [dict(r) for r in rows.mappings()]
    return dropped
