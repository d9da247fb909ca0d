"""Rows as the bulk trigger writes them, and the fastest way to insert them directly.

The raw insert limit is what the database and driver can take with no API in front: the driver's
`executemany` of one prepared INSERT in one transaction on SQLite (our own `insert_many`), and
`COPY … FROM STDIN` on PostgreSQL. The bulk trigger is compared with it.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from bench.harness import Database, Tenant
from journeys.engine.timeline import event_row
from journeys.ids import new_id, new_ids
from journeys.store.bulk import insert_many
from journeys.store.db import transaction
from journeys.store.tables import instance_events, instance_parameters, journey_instances

LAST = ("Garcia", "Smith", "Nguyen", "Johnson", "Patel", "Kim", "Brown", "Lopez", "Okafor", "Müller")
FIRST = ("Maria", "James", "Linh", "Aisha", "Ravi", "Ji-woo", "Olivia", "Carlos", "Chidi", "Anna")


def phone(i: int) -> str:
    """A valid NANP mobile-style number, distinct for the first 8 million i."""
    return f"+1617{2 + (i // 1_000_000) % 8}{i % 1_000_000:06d}"


def appointment_parameters(i: int, tag: str, when: str) -> dict[str, str]:
    """The parameters of the example journey (examples/appointment-reminder.yaml)."""
    return {
        "patientId": f"P{i:07d}",
        "patientName": f"{FIRST[i % 10]} {LAST[(i // 10) % 10]}",
        "appointmentId": f"{tag}-{i:07d}",
        "appointmentDateTime": when,
        "phoneNumber": phone(i),
    }


def send_once_parameters(i: int, tag: str) -> dict[str, str]:
    """The parameters of bench/journeys/send-once.yaml."""
    return {"patientId": f"{tag}-{i:07d}", "patientName": FIRST[i % 10], "phoneNumber": phone(i)}


def _identifier_key(value: str) -> str:
    return hashlib.sha256(orjson.dumps([value])).hexdigest()


@dataclass
class Rows:
    instances: list[dict[str, Any]] = field(default_factory=list)
    parameters: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def build_rows(
    tenant: Tenant,
    params: Sequence[dict[str, str]],
    identifier: str,
    now: datetime,
    *,
    time_zone: str = "America/Chicago",
    status: str = "InProgress",
    step_id: int = 10,
    due_at: Sequence[datetime | None] | None = None,
    searchable: bool = True,
) -> Rows:
    """The rows the trigger writes for these instances: the instance, one row per parameter
    (unless not `searchable`), the `started` event."""
    rows = Rows()
    batch = new_id()
    ids = new_ids(len(params))
    for n, (p, iid) in enumerate(zip(params, ids, strict=True)):
        active = status == "InProgress"
        rows.instances.append(
            {
                "org_id": tenant.org_id,
                "instance_id": iid,
                "journey_id": tenant.journey_id,
                "version": tenant.version,
                "batch_id": batch,
                "status": status,
                "time_zone": time_zone,
                "parameters": orjson.dumps(p).decode(),
                "identifier_key": _identifier_key(p[identifier]),
                "flow_id": "main",
                "step_id": step_id,
                "due_at": (due_at[n] if due_at is not None else now) if active else None,
                "state": "{}",
                "rev": 0,
                "attempts": 0,
                "created_at": now,
                "start_at": now,
                "ended_at": None if active else now,
            }
        )
        if searchable:
            rows.parameters.extend(
                {
                    "org_id": tenant.org_id,
                    "instance_id": iid,
                    "journey_id": tenant.journey_id,
                    "name": k.lower(),
                    "value": v,
                }
                for k, v in p.items()
            )
        rows.events.append(
            event_row(
                tenant.org_id,
                iid,
                now,
                "main",
                "Main Flow",
                None,
                "started",
                {"batchId": batch, "version": tenant.version},
            )
        )
    return rows


def _copy(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    cols = list(rows[0])
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row(tuple(r[c] for c in cols))


def raw_insert(db: Database, rows: Rows) -> None:
    """One transaction, the fastest driver path of the dialect (see the module docstring)."""
    with transaction(db.engine) as conn:
        for table, data in (
            (journey_instances, rows.instances),
            (instance_parameters, rows.parameters),
            (instance_events, rows.events),
        ):
            if not data:
                continue
            if db.is_pg:
                _copy(conn, table, data)
            else:
                insert_many(conn, table, data)


_FILL_INSTANCE_COLS = (
    "org_id", "instance_id", "journey_id", "version", "batch_id", "status", "time_zone", "parameters",
    "identifier_key", "flow_id", "step_id", "due_at", "state", "rev", "attempts", "created_at", "start_at",
    "ended_at",
)  # fmt: skip
_FILL_PARAMETER_COLS = ("org_id", "instance_id", "journey_id", "name", "value")
_FILL_EVENT_COLS = (
    "org_id",
    "instance_id",
    "event_id",
    "at",
    "flow_id",
    "flow_name",
    "step_id",
    "kind",
    "detail",
)


def _insert_tuples(
    conn: sa.Connection, pg: bool, table: str, cols: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    if pg:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)
    else:
        marks = ", ".join("?" for _ in cols)
        conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows)


def fill(
    db: Database, tenant: Tenant, total: int, now: datetime, per_tx: int = 50_000
) -> Iterator[list[str]]:
    """Store `total` instances of the example journey as bulk requests of 10,000 would have
    (each request's instances share their creation time; requests one minute apart), in a
    realistic mix: 70 % Completed, 10 % Cancelled, 20 % InProgress waiting for their appointment;
    with their 5 searchable parameters and `started` event. `per_tx` instances per transaction.
    Setup, not a measurement: rows are built as tuples and the secondary indexes are dropped
    first and built once at the end. Yields the ids of each transaction's InProgress instances."""
    pg = db.is_pg

    def ts(value: datetime) -> Any:  # SQLite stores what SQLAlchemy's DateTime would
        return value if pg else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    when = (now + timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S")
    later = ts(now + timedelta(days=29))
    org, journey, version = tenant.org_id, tenant.journey_id, tenant.version
    detail = orjson.dumps({"version": version}).decode()
    request = 10_000
    tables = (journey_instances, instance_parameters, instance_events)
    with transaction(db.engine) as conn:
        for table in tables:
            for index in table.indexes:
                index.drop(conn)

    def build(start: int) -> tuple[list[tuple[Any, ...]], ...]:
        inst: list[tuple[Any, ...]] = []
        params: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        active: list[tuple[Any, ...]] = []
        for first in range(start, min(total, start + per_tx), request):
            created = ts(now - timedelta(minutes=(total - first) // request))
            batch = new_id()
            for i in range(first, min(total, first + request)):
                iid = new_id()
                p = appointment_parameters(i, "fill", when)
                status = "InProgress" if i % 10 < 2 else "Cancelled" if i % 10 == 2 else "Completed"
                running = status == "InProgress"
                if running:
                    active.append((iid,))
                inst.append(
                    (org, iid, journey, version, batch, status, "America/Chicago", orjson.dumps(p).decode(),
                     _identifier_key(p["appointmentId"]), "main", 20, later if running else None, "{}", 0, 0,
                     created, created, None if running else created)
                )  # fmt: skip
                params.extend((org, iid, journey, k.lower(), v) for k, v in p.items())
                events.append((org, iid, f"{i:020d}000000{batch[-6:]}", created, "main", "Main Flow", None,
                               "started", detail))  # fmt: skip
        return inst, params, events, active

    # Build the next transaction's rows in a thread while this one is written (the drivers
    # release the GIL while the database works).
    chunks: queue.Queue[tuple[list[tuple[Any, ...]], ...] | None] = queue.Queue(maxsize=2)

    def produce() -> None:
        for start in range(0, total, per_tx):
            chunks.put(build(start))
        chunks.put(None)

    threading.Thread(target=produce, name="bench-fill", daemon=True).start()
    while (chunk := chunks.get()) is not None:
        inst, params, events, active = chunk
        with transaction(db.engine) as conn:
            _insert_tuples(conn, pg, "journey_instances", _FILL_INSTANCE_COLS, inst)
            _insert_tuples(conn, pg, "instance_parameters", _FILL_PARAMETER_COLS, params)
            _insert_tuples(conn, pg, "instance_events", _FILL_EVENT_COLS, events)
        yield [a[0] for a in active]
    with transaction(db.engine) as conn:
        for table in tables:
            for index in table.indexes:
                index.create(conn)
