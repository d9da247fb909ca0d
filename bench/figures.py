"""The figures: each function measures one group on one database and returns result rows.

A result row: {"db", "figure", "unit", "median", "min", "max", "target", "better", "ok", "runs"}
— median, min and max over the runs (for latencies, of each run's percentile).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from bench.harness import (
    APPOINTMENT,
    BENCH_SECRET_KEY,
    SEND_ONCE,
    Database,
    Proc,
    Tenant,
    encrypted,
    make_tenant,
    start_server,
    start_workers,
    utcnow,
)
from bench.rows import (
    SPREAD_MINUTES,
    appointment_parameters,
    build_rows,
    fill,
    fill_sealed,
    raw_insert,
    send_once_parameters,
)
from journeys.config import Settings
from journeys.definitions import load_definition_file
from journeys.keys.phi import OrgPhi
from journeys.keys.searchable import prefix_names
from journeys.store.tables import instance_events, journey_instances, outbox

Row = dict[str, Any]


def result(
    db: str,
    figure: str,
    unit: str,
    values: list[float],
    target: float | None = None,
    better: str = "higher",
) -> Row:
    med = statistics.median(values)
    ok = None if target is None else (med >= target if better == "higher" else med <= target)
    return {
        "db": db,
        "figure": figure,
        "unit": unit,
        "median": med,
        "min": min(values),
        "max": max(values),
        "target": target,
        "better": better,
        "ok": ok,
        "runs": len(values),
        "values": values,
    }


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def _notify(db: Database) -> None:
    if db.is_pg:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("NOTIFY journeys_due")


def _wait_idle(db: Database, tenant: Tenant, procs: list[Proc], timeout: float) -> None:
    """Until no instance of the tenant's journey is InProgress (polled every 50 ms)."""
    ji = journey_instances
    q = sa.select(
        sa.exists().where(
            ji.c.org_id == tenant.org_id, ji.c.journey_id == tenant.journey_id, ji.c.status == "InProgress"
        )
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.engine.connect() as conn:
            if not conn.execute(q).scalar():
                return
        for p in procs:
            p.check_alive()
        time.sleep(0.05)
    raise RuntimeError(f"instances still running after {timeout:.0f} s")


# ------------------------------------------------------------------ bulk trigger vs raw insert
def sealing(db: Database, tenant: Tenant) -> tuple[OrgPhi | None, dict[str, tuple[int, ...]] | None]:
    """With JOURNEYS_BENCH_ENCRYPTED=1: the org's key and the journey's prefix parameters, so
    that the raw insert writes the rows an encrypted trigger writes (sealed parameters, blind
    indexes and their prefixes) — the same-schema limit the bulk figure is compared with."""
    if not encrypted():
        return None, None
    phi = Settings(secret_key=BENCH_SECRET_KEY).vault(db.engine).org(tenant.org_id)
    return phi, prefix_names(load_definition_file(APPOINTMENT))


def bulk(
    db: Database, runs: int, requests: int = 10, per_request: int = 10_000
) -> tuple[list[Row], list[Proc]]:
    tenant = make_tenant(db, APPOINTMENT)
    server, base = start_server(db)
    url = tenant.instances_url(base) + "/bulk"
    headers = {**tenant.headers, "Content-Type": "application/json"}
    when = (utcnow() + timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S")
    n = requests * per_request
    rates, raw_rates = [], []
    phi, prefix = sealing(db, tenant)  # encrypted: the raw insert writes what the trigger does
    try:
        with httpx.Client(timeout=600) as client:
            template = [  # built once; each run renames its identifiers ("bX-…" → "b<run>-…")
                orjson.dumps(
                    {
                        "flowId": None,
                        "timeZone": "America/Chicago",
                        "instances": [
                            {"parameters": appointment_parameters(i, "bX", when)}
                            for i in range(k * per_request, (k + 1) * per_request)
                        ],
                    }
                )
                for k in range(requests)
            ]
            for run in range(runs):
                payloads = [t.replace(b'"bX-', f'"b{run}-'.encode()) for t in template]
                raw_batches = [
                    build_rows(
                        tenant,
                        [
                            appointment_parameters(i, f"r{run}", when)
                            for i in range(k * per_request, (k + 1) * per_request)
                        ],
                        "appointmentId",
                        utcnow(),
                        phi=phi,
                        prefix=prefix,
                    )
                    for k in range(requests)
                ]
                # Interleaved, request by request, so both see the tables at the same size.
                bulk_s = raw_s = 0.0
                for payload, rows in zip(payloads, raw_batches, strict=True):
                    t0 = time.perf_counter()
                    r = client.post(url, content=payload, headers=headers)
                    bulk_s += time.perf_counter() - t0
                    if r.status_code != 204:
                        raise RuntimeError(f"bulk trigger answered {r.status_code}: {r.text[:300]}")
                    t0 = time.perf_counter()
                    raw_insert(db, rows)  # one transaction per 10,000, as a request
                    raw_s += time.perf_counter() - t0
                rates.append(n / bulk_s)
                raw_rates.append(n / raw_s)
    finally:
        server.stop()
    ratios = [a / b for a, b in zip(rates, raw_rates, strict=True)]
    return [
        result(db.label, "bulk trigger over HTTP", "instances/s", rates),
        result(db.label, "raw insert limit (same rows)", "instances/s", raw_rates),
        result(db.label, "bulk / raw insert", "ratio", ratios, 0.5),
    ], [server]


# ------------------------------------------------------------------ engine throughput and timer lag
def engine(db: Database, runs: int, n: int = 100_000, lag_runs: int = 1,
           lag_rate: int = 1_000, lag_seconds: int = 30) -> tuple[list[Row], list[Proc]]:  # fmt: skip
    workers = 2 if db.is_pg else 1
    tenant = make_tenant(db, SEND_ONCE)
    procs = start_workers(db, workers)
    rates: list[float] = []
    rows_out: list[Row] = []
    try:
        for run in range(runs):
            rows = build_rows(
                tenant,
                [send_once_parameters(i, f"e{run}") for i in range(n)],
                "patientId",
                utcnow(),
                searchable=False,  # the engine never reads them; the bulk figure writes them
            )
            raw_insert(db, rows)
            _notify(db)
            t0 = time.perf_counter()
            _wait_idle(db, tenant, procs, timeout=600)
            rates.append(n / (time.perf_counter() - t0))
            _check_sent_once(db, tenant, n * (run + 1))
        rows_out.append(
            result(
                db.label,
                f"engine: due send steps, {workers} worker(s)",
                "steps/s",
                rates,
                5000 if db.is_pg else 3000,
            )
        )
        p50s, p99s, maxes = [], [], []
        for run in range(lag_runs):
            lags = _timer_lag(db, tenant, procs, f"l{run}", lag_rate, lag_seconds)
            p50s.append(percentile(lags, 50))
            p99s.append(percentile(lags, 99))
            maxes.append(max(lags))
        label = f"timer lag, {lag_rate}/s due for {lag_seconds} s"
        if lag_runs:
            rows_out.append(result(db.label, f"{label}: p50", "s", p50s))
            rows_out.append(result(db.label, f"{label}: p99", "s", p99s, 1.0, "lower"))
            rows_out.append(result(db.label, f"{label}: max", "s", maxes))
    finally:
        for p in procs:
            p.stop()
    return rows_out, procs


def _check_sent_once(db: Database, tenant: Tenant, expected: int) -> None:
    with db.engine.connect() as conn:
        count = conn.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.org_id == tenant.org_id)
        ).scalar_one()
    if count != expected:
        raise RuntimeError(f"expected {expected} outbox messages, found {count}")


def _timer_lag(
    db: Database, tenant: Tenant, procs: list[Proc], tag: str, rate: int, seconds: int
) -> list[float]:
    """Instances due `rate` per second for `seconds`; the lag of each one's send step: the
    time the worker ran it (its event's time) minus its due time."""
    n = rate * seconds
    start = utcnow() + timedelta(seconds=3)
    due = [start + timedelta(seconds=i / rate) for i in range(n)]
    rows = build_rows(
        tenant,
        [send_once_parameters(i, tag) for i in range(n)],
        "patientId",
        utcnow(),
        due_at=due,
        searchable=False,
    )
    raw_insert(db, rows)
    _notify(db)
    if utcnow() > start:
        raise RuntimeError("inserting the timer-lag instances took longer than the 3 s head start")
    time.sleep(max(0.0, (start - utcnow()).total_seconds() + seconds))
    _wait_idle(db, tenant, procs, timeout=120)
    due_of = {r["instance_id"]: d for r, d in zip(rows.instances, due, strict=True)}
    ev = instance_events
    with db.engine.connect() as conn:
        ran = conn.execute(
            sa.select(ev.c.instance_id, ev.c.at).where(
                ev.c.org_id == tenant.org_id,
                ev.c.kind == "sms_queued",
                ev.c.at >= start - timedelta(seconds=1),
            )
        ).all()
    lags = [(at - due_of[iid]).total_seconds() for iid, at in ran if iid in due_of]
    if len(lags) != n:
        raise RuntimeError(f"timer lag: {len(lags)} of {n} sends found")
    return lags


# ------------------------------------------------------------------ search and cancel at scale
@dataclass
class SearchData:
    """A database holding the million instances, ready for the search and cancel figures."""

    tenant: Tenant
    active: list[str]  # the InProgress instances' ids, to cancel
    seconds: float  # how long storing them took
    minute_base: datetime | None = None  # sealed fill: its appointment times start here (one a minute)


def prepare_search(db: Database, total: int = 1_000_000) -> SearchData:
    """Setup, not a measurement (`make bench` runs it for both databases at once, before any
    figure is measured): `total` instances stored; on PostgreSQL then `VACUUM ANALYZE`, the
    steady state autovacuum keeps (fresh statistics, visibility map set) — and so autovacuum
    has nothing left to do on these tables while the figures are measured."""
    tenant = make_tenant(db, APPOINTMENT)
    phi, prefix = sealing(db, tenant)
    t0, now = time.perf_counter(), utcnow()
    minute_base = None
    if phi is not None and prefix is not None:
        active = fill_sealed(db, tenant, total, now, phi, prefix)
        minute_base = now + timedelta(days=30)
    else:
        active = fill(db, tenant, total, now)
    if db.is_pg:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    return SearchData(tenant, active, time.perf_counter() - t0, minute_base)


def search_and_cancel(db: Database, data: SearchData, runs: int, total: int = 1_000_000,
                      queries: int = 1_000) -> tuple[list[Row], list[Proc]]:  # fmt: skip
    tenant, active = data.tenant, list(data.active)
    out = [result(db.label, f"setup: store {total:,} instances", "instances/s", [total / data.seconds])]
    server, base = start_server(db)
    url = tenant.instances_url(base)
    rng = random.Random(6)

    def param(name: str, op: str, value: str) -> dict[str, Any]:
        return {
            "type": "JourneyParameterSpecification",
            "parameterName": name,
            "operator": op,
            "rightOperand": value,
        }

    status = {"type": "JourneyStatusSpecification", "status": "InProgress"}
    kinds: dict[str, Callable[[], dict[str, Any]]] = {
        "search parameter equals": lambda: param("patientId", "equals", f"P{rng.randrange(total):07d}"),
        # ~100 matches: a 5-digit prefix of the 7-digit ids
        "search parameter startsWith": lambda: param(
            "patientId", "startsWith", f"P{rng.randrange(total // 100):05d}"
        ),
        "search status InProgress": lambda: status,
    }
    first = data.minute_base
    if first is not None:  # encrypted: startsWith only on `search: prefix` parameters (of the journey)
        del kinds["search parameter startsWith"]
        kinds["search parameter startsWith (a minute of appointmentDateTime)"] = lambda: param(
            "appointmentDateTime", "startsWith",
            (first + timedelta(minutes=rng.randrange(SPREAD_MINUTES))).strftime("%Y-%m-%d %H:%M"),
        )  # fmt: skip
    try:
        with httpx.Client(timeout=60, headers=tenant.headers) as client:
            for name, make in kinds.items():
                p50s, p99s = [], []
                for _ in range(runs):
                    lat = []
                    for _ in range(queries):
                        body = orjson.dumps({"filterSpecification": make()})
                        t = time.perf_counter()
                        r = client.post(
                            f"{url}/search", content=body, headers={"Content-Type": "application/json"}
                        )
                        lat.append((time.perf_counter() - t) * 1000)
                        if r.status_code != 200:
                            raise RuntimeError(f"search answered {r.status_code}: {r.text[:300]}")
                    p50s.append(percentile(lat, 50))
                    p99s.append(percentile(lat, 99))
                out.append(result(db.label, f"{name}: p50", "ms", p50s))
                out.append(result(db.label, f"{name}: p99", "ms", p99s, 20.0, "lower"))
            out += _scrapes(client, base, total, db.label)
            rng.shuffle(active)
            p50s, p99s = [], []
            for run in range(runs):
                lat = []
                for iid in active[run * queries : (run + 1) * queries]:
                    t = time.perf_counter()
                    r = client.delete(f"{url}/{iid}/execution")
                    lat.append((time.perf_counter() - t) * 1000)
                    if r.status_code != 204:
                        raise RuntimeError(f"cancel answered {r.status_code}: {r.text[:300]}")
                p50s.append(percentile(lat, 50))
                p99s.append(percentile(lat, 99))
            out.append(result(db.label, "cancel: p50", "ms", p50s))
            out.append(result(db.label, "cancel: p99", "ms", p99s, 20.0, "lower"))
    finally:
        server.stop()
    return out, [server]


def _scrapes(client: httpx.Client, base: str, total: int, label_db: str, scrapes: int = 100) -> list[Row]:
    """GET /metrics with `total` instances stored (a fifth of them active): the time the
    database gauges take at scrape time, as Prometheus would see it."""
    lat = []
    for _ in range(scrapes):
        t = time.perf_counter()
        r = client.get(f"{base}/metrics")
        lat.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200 or "journeys_database_up 1.0" not in r.text:
            raise RuntimeError(f"/metrics answered {r.status_code}: {r.text[:300]}")
    label = f"GET /metrics with {total:,} instances"
    return [
        result(label_db, f"{label}: p50", "ms", [percentile(lat, 50)]),
        result(label_db, f"{label}: p99", "ms", [percentile(lat, 99)]),
    ]


# ------------------------------------------------------------------ search right after a load
def search_after_load(db: Database, runs: int, fresh: Callable[[], Database], total: int = 100_000,
                      queries: int = 200) -> tuple[list[Row], list[Proc]]:  # fmt: skip
    """`total` instances loaded through the bulk API (requests of 10,000, one appointment time
    shared by all), then at once `queries` searches of each kind, interleaved — the first minute
    after a load, before any statistics are gathered in the background: on PostgreSQL
    autovacuum is switched off on the instance tables, so the only statistics are those the
    product gathers itself. Each run on a new database (`fresh()`)."""
    rows: dict[str, list[float]] = {}
    procs: list[Proc] = []
    for run in range(runs):
        run_db = db if run == 0 else fresh()
        try:
            loaded, kinds, used = _load_then_search(run_db, total, queries, random.Random(run))
        finally:
            if run_db is not db:
                run_db.close()
        procs += used
        rows.setdefault("load", []).append(loaded)
        for name, (p50, p99) in kinds.items():
            rows.setdefault(f"{name}: p50", []).append(p50)
            rows.setdefault(f"{name}: p99", []).append(p99)
    label = f"right after loading {total:,}"
    out = [result(db.label, f"{label}: bulk load", "instances/s", rows.pop("load"))]
    for name, values in rows.items():
        target = 20.0 if name.endswith("p99") and "matches" not in name else None
        out.append(result(db.label, f"{label}, search {name}", "ms", values, target, "lower"))
    return out, procs


def _load_then_search(
    db: Database, total: int, queries: int, rng: random.Random
) -> tuple[float, dict[str, tuple[float, float]], list[Proc]]:
    if db.is_pg:
        with db.engine.begin() as conn:
            for table in ("journey_instances", "instance_parameters"):
                conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    tenant = make_tenant(db, APPOINTMENT)
    server, base = start_server(db)
    url = tenant.instances_url(base)
    when = (utcnow() + timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S")

    def param(name: str, op: str, value: str) -> dict[str, Any]:
        return {
            "type": "JourneyParameterSpecification",
            "parameterName": name,
            "operator": op,
            "rightOperand": value,
        }

    shared = param("appointmentDateTime", "equals", when)
    kinds: dict[str, tuple[int, Callable[[], dict[str, Any]]]] = {
        "parameter equals": (queries, lambda: param("patientId", "equals", f"P{rng.randrange(total):07d}")),
        "parameter startsWith": (
            queries,
            lambda: param("patientId", "startsWith", f"P{rng.randrange(total // 100):05d}"),
        ),
        "status InProgress": (
            queries,
            lambda: {"type": "JourneyStatusSpecification", "status": "InProgress"},
        ),
        "and: shared time + patientId": (
            queries,
            lambda: {
                "type": "AndSpecification",
                "specifications": [shared, param("patientId", "equals", f"P{rng.randrange(total):07d}")],
            },
        ),
        # Every instance matches: the newest 100 of `total` (a tenth of the queries).
        f"parameter equals, {total:,} matches": (max(1, queries // 10), lambda: shared),
    }
    latencies: dict[str, list[float]] = {name: [] for name in kinds}
    try:
        with httpx.Client(timeout=600, headers=tenant.headers) as client:
            t0 = time.perf_counter()
            for start in range(0, total, 10_000):
                body = {
                    "flowId": None,
                    "timeZone": "America/Chicago",
                    "instances": [
                        {"parameters": appointment_parameters(i, "a", when)}
                        for i in range(start, min(total, start + 10_000))
                    ],
                }
                r = client.post(
                    f"{url}/bulk", content=orjson.dumps(body), headers={"Content-Type": "application/json"}
                )
                if r.status_code != 204:
                    raise RuntimeError(f"bulk trigger answered {r.status_code}: {r.text[:300]}")
            loaded = total / (time.perf_counter() - t0)
            for i in range(queries):  # interleaved: every kind sees the same time after the load
                for name, (count, make) in kinds.items():
                    if i >= count:
                        continue
                    body = orjson.dumps({"filterSpecification": make()})
                    t = time.perf_counter()
                    r = client.post(
                        f"{url}/search", content=body, headers={"Content-Type": "application/json"}
                    )
                    latencies[name].append((time.perf_counter() - t) * 1000)
                    if r.status_code != 200 or not r.json():
                        raise RuntimeError(f"search answered {r.status_code}: {r.text[:300]}")
    finally:
        server.stop()
    stats = {name: (percentile(v, 50), percentile(v, 99)) for name, v in latencies.items()}
    return loaded, stats, [server]
