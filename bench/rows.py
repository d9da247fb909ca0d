"""Rows as the bulk trigger writes them, and the fastest way to insert them directly.

The raw insert limit is what the database and driver can take with no API in front: the driver's
`executemany` of one prepared INSERT in one transaction on SQLite (our own `insert_many`), and
`COPY … FROM STDIN` on PostgreSQL. The bulk trigger is compared with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
import sqlalchemy as sa

from bench.harness import Database, Tenant
from journeys.ids import new_id, new_ids
from journeys.keys.phi import OrgPhi
from journeys.keys.searchable import parameter_rows
from journeys.store.bulk import insert_many
from journeys.store.db import transaction
from journeys.store.events import event_record
from journeys.store.tables import instance_events, instance_parameters, journey_instances
from journeys.timeline import event_row

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


def _identifier_key(value: str, phi: OrgPhi | None = None) -> str:
    """As the trigger makes it for one identifier parameter (journeys.instances.trigger)."""
    text = orjson.dumps([value]).decode()
    if phi is not None and phi.encrypted:
        return phi.blind("~identifier", text)
    return hashlib.sha256(text.encode()).hexdigest()


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
    phi: OrgPhi | None = None,
    prefix: dict[str, tuple[int, ...]] | None = None,
    statuses: Sequence[str] | None = None,
) -> Rows:
    """The rows the trigger writes for these instances: the instance, one row per parameter
    (unless not `searchable`), the `started` event. With `phi` (an org whose patient data is
    encrypted) as an encrypted trigger writes them: the parameters sealed, the searchable rows
    blind indexes, with those of the `prefix` parameters' prefixes."""
    rows = Rows()
    batch = new_id()
    ids = new_ids(len(params))
    for n, (p, iid) in enumerate(zip(params, ids, strict=True)):
        status = statuses[n] if statuses is not None else status
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
                "parameters": phi.seal_json(p) if phi is not None else orjson.dumps(p).decode(),
                "identifier_key": _identifier_key(p[identifier], phi),
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
        if searchable and phi is not None:
            found = parameter_rows(phi, (tenant.org_id, iid), tenant.journey_id, p, p, prefix or {})
            rows.parameters.extend(msgspec.structs.asdict(r) for r in found)
        elif searchable:
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
            event_record(
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


def _names(expr: str, names: Sequence[str]) -> str:
    return "CASE " + expr + " " + " ".join(f"WHEN {n} THEN '{v}'" for n, v in enumerate(names)) + " END"


def fill(db: Database, tenant: Tenant, total: int, now: datetime) -> list[str]:
    """Store `total` instances of the example journey as bulk requests of 10,000 would have
    (each request's instances share their creation time and batch; requests one minute apart),
    in a realistic mix: 70 % Completed, 10 % Cancelled, 20 % InProgress waiting for their
    appointment; with their 5 searchable parameters and `started` event — the same values as
    `appointment_parameters(i, "fill", …)`. Returns the ids of the InProgress instances.

    Setup, not a measurement: the rows are generated by the database itself (one
    `INSERT … SELECT` per table over a number series; parameters are unpacked from each
    instance's stored JSON), with the secondary indexes dropped first and built once at the end."""
    pg = db.is_pg
    request = 10_000

    def ts(value: datetime) -> Any:  # SQLite stores what SQLAlchemy's DateTime would
        return value if pg else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def pad(expr: str, width: int) -> str:
        return f"lpad(({expr})::text, {width}, '0')" if pg else f"printf('%0{width}d', {expr})"

    def hexa(expr: str, width: int) -> str:
        return f"lpad(to_hex({expr}), {width}, '0')" if pg else f"printf('%0{width}x', {expr})"

    series = (
        "generate_series(CAST(0 AS bigint), :last) AS s(i) JOIN bench_batches b ON b.k = s.i / 10000"
        if pg
        else "s JOIN bench_batches b ON b.k = s.i / 10000"
    )
    with_series = (
        "" if pg else "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < :last) "
    )
    i = "s.i"
    ms = f"(:base_ms + {i} / 4096)"
    # A UUIDv7 layout, in the order of i (as new_id() would have made them).
    instance_id = " || ".join(
        (
            hexa(f"{ms} / 65536", 8), "'-'", hexa(f"{ms} % 65536", 4), "'-7'", hexa(f"{i} % 4096", 3), "'-8'",
            hexa(f"({i} * 7919) % 4096", 3), "'-'", hexa(f"({i} * 2654435761) % 281474976710656", 12),
        )
    )  # fmt: skip
    appointment = f"'fill-' || {pad(i, 7)}"
    parameters = " || ".join(
        (
            f"""'{{"patientId":"P' || {pad(i, 7)}""",
            f"""'","patientName":"' || {_names(f"{i} % 10", FIRST)}""",
            f"""' ' || {_names(f"({i} / 10) % 10", LAST)}""",
            f"""'","appointmentId":"' || {appointment}""",
            """'","appointmentDateTime":"' || :when""",
            f"""'","phoneNumber":"+1617' || (2 + ({i} / 1000000) % 8)""",
            f"""{pad(f"{i} % 1000000", 6)} || '"}}'""",
        )
    )
    identifier_json = f"""'["' || {appointment} || '"]'"""
    identifier_key = (
        f"encode(sha256(convert_to({identifier_json}, 'UTF8')), 'hex')"
        if pg
        else f"bench_sha256({identifier_json})"
    )
    running = f"{i} % 10 < 2"
    insert_instances = f"""
        {with_series}INSERT INTO journey_instances (org_id, instance_id, journey_id, version, batch_id,
            status, time_zone, parameters, identifier_key, flow_id, step_id, due_at, state, rev, attempts,
            created_at, start_at, ended_at)
        SELECT :org, {instance_id}, :journey, :version, b.batch_id,
            CASE WHEN {running} THEN 'InProgress' WHEN {i} % 10 = 2 THEN 'Cancelled' ELSE 'Completed' END,
            'America/Chicago', {parameters}, {identifier_key}, 'main', 20,
            CASE WHEN {running} THEN :later END, '{{}}', 0, 0, b.created, b.created,
            CASE WHEN {running} THEN NULL ELSE b.created END
        FROM {series}"""
    # The event id: time-ordered like new_event_id()'s, before any event the benchmark adds.
    insert_events = f"""
        {with_series}INSERT INTO instance_events (org_id, instance_id, event_id, at, flow_id, flow_name,
            step_id, kind, detail)
        SELECT :org, {instance_id}, {pad(i, 20)} || '000000' || substr(b.batch_id, 31, 6), b.created, 'main',
            'Main Flow', NULL, 'started', :detail
        FROM {series}"""
    unpack = "json_each_text(ji.parameters::json)" if pg else "json_each(ji.parameters)"
    insert_parameters = f"""
        INSERT INTO instance_parameters (org_id, instance_id, journey_id, name, value)
        SELECT ji.org_id, ji.instance_id, ji.journey_id, lower(p.key), p.value
        FROM journey_instances ji, {unpack} AS p
        WHERE ji.org_id = :org"""
    values = {
        "org": tenant.org_id,
        "journey": tenant.journey_id,
        "version": tenant.version,
        "last": total - 1,
        "base_ms": int(now.timestamp() * 1000) - total // 4096 - 1,
        "when": (now + timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S"),
        "later": ts(now + timedelta(days=29)),
        "detail": orjson.dumps({"version": tenant.version}).decode(),
    }
    batches = [
        {"k": k, "batch_id": new_id(), "created": ts(now - timedelta(minutes=total // request - k))}
        for k in range((total + request - 1) // request)
    ]
    tables = (journey_instances, instance_parameters, instance_events)
    with _fill_connection(db) as conn:
        if not pg:
            conn.connection.driver_connection.create_function(  # type: ignore[union-attr]
                "bench_sha256", 1, lambda s: hashlib.sha256(s.encode()).hexdigest(), deterministic=True
            )
        for table in tables:
            for index in table.indexes:
                index.drop(conn)
        created_type = "timestamptz" if pg else "TEXT"
        conn.exec_driver_sql(
            "CREATE TEMPORARY TABLE bench_batches "
            f"(k INTEGER PRIMARY KEY, batch_id TEXT, created {created_type})"
        )
        conn.execute(sa.text("INSERT INTO bench_batches VALUES (:k, :batch_id, :created)"), batches)
        for sql in (insert_instances, insert_events, insert_parameters):
            conn.execute(sa.text(sql), values)
        conn.exec_driver_sql("DROP TABLE bench_batches")
        for table in tables:
            for index in table.indexes:
                index.create(conn)
        ji = journey_instances
        return list(
            conn.execute(
                sa.select(ji.c.instance_id).where(ji.c.org_id == tenant.org_id, ji.c.status == "InProgress")
            ).scalars()
        )


SPREAD_MINUTES = 10_000  # the sealed fill's appointment times: ~100 instances per minute of 1,000,000


def fill_sealed(
    db: Database, tenant: Tenant, total: int, now: datetime, phi: OrgPhi, prefix: dict[str, tuple[int, ...]]
) -> list[str]:
    """`fill` for an org whose patient data is encrypted: the same mix of statuses, with the rows
    an encrypted trigger writes (sealed parameters, blind indexes and the prefix rows), made here
    in Python (a database cannot compute them) and inserted as `raw_insert` does; appointment
    times spread over SPREAD_MINUTES minutes from 30 days on, so that a minute prefix
    (`startsWith 2026-12-31 10:07`) matches about total / SPREAD_MINUTES instances."""
    base = now + timedelta(days=30)
    tables = (journey_instances, instance_parameters, instance_events)
    active: list[str] = []
    with _fill_connection(db) as conn:
        for table in tables:
            for index in table.indexes:
                index.drop(conn)
        for start in range(0, total, 10_000):
            numbers = range(start, min(start + 10_000, total))
            params = [appointment_parameters(i, "fill", _minute(base, i)) for i in numbers]
            statuses = [_fill_status(i) for i in numbers]
            created = now - timedelta(minutes=(total - start) // 10_000)  # a minute apart, as in `fill`
            due = [now + timedelta(days=29)] * len(params)
            rows = build_rows(tenant, params, "appointmentId", created, phi=phi, prefix=prefix,
                              statuses=statuses, step_id=20, due_at=due)  # fmt: skip
            for table, data in ((journey_instances, rows.instances), (instance_parameters, rows.parameters),
                                (instance_events, rows.events)):  # fmt: skip
                if db.is_pg:
                    _copy(conn, table, data)
                else:
                    insert_many(conn, table, data)
            active += [r["instance_id"] for r in rows.instances if r["status"] == "InProgress"]
        for table in tables:
            for index in table.indexes:
                index.create(conn)
    return active


def _fill_status(i: int) -> str:
    return "InProgress" if i % 10 < 2 else "Cancelled" if i % 10 == 2 else "Completed"


def _minute(base: datetime, i: int) -> str:
    return (base + timedelta(minutes=i % SPREAD_MINUTES)).strftime("%Y-%m-%d %H:%M:00")


@contextmanager
def _fill_connection(db: Database) -> Iterator[sa.Connection]:
    """One transaction for the fill. On SQLite, on a connection of its own with the journal off
    (the 3 GB would otherwise be written twice, to the WAL and back) and a 1 GB page cache; the
    file is back in WAL mode afterwards, as the migrations left it."""
    if db.is_pg:
        with transaction(db.engine) as conn:
            yield conn
        return
    db.engine.dispose()  # leaving WAL mode needs the only connection to the file
    engine = sa.create_engine(db.url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -1048576"):
                conn.exec_driver_sql(f"PRAGMA {pragma}")
            conn.commit()
            with conn.begin():
                yield conn
            conn.exec_driver_sql("PRAGMA journal_mode = WAL")
            conn.commit()
    finally:
        engine.dispose()
