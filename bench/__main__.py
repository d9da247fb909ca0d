"""Benchmarks: `make bench` (or `python -m bench`). Prints a table and writes bench/results/latest.json.

Figures (each run several times; median, min, max):
- bulk trigger: 10,000-instance requests over real HTTP to a running server, until committed;
- raw insert: the same rows (instances + parameters + events) inserted directly in one
  transaction with executemany — the ceiling the bulk path is compared with;
- engine: due steps executed by one worker (send to outbox + event per step);
- search: p50/p99 of parameter `equals` searches over HTTP.
PostgreSQL figures are added when JOURNEYS_BENCH_POSTGRES_URL is set.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from journeys import accounts, catalog
from journeys.api.app import create_app
from journeys.clock import ManualClock
from journeys.config import Settings
from journeys.definitions import load_definition_file
from journeys.engine.timeline import event_row
from journeys.ids import new_id
from journeys.store.bulk import insert_many
from journeys.store.db import create_db_engine, transaction
from journeys.store.tables import instance_events, instance_parameters, journey_instances

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "appointment-reminder.yaml"
RUNS = int(os.environ.get("JOURNEYS_BENCH_RUNS", "3"))
N = int(os.environ.get("JOURNEYS_BENCH_INSTANCES", "10000"))
START = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)


class _Server:
    def __init__(self, url: str) -> None:
        self.clock = ManualClock(START)
        self.app = create_app(
            Settings(database_url=url, worker_enabled=False), clock=self.clock, run_worker=False
        )
        self.engine = self.app.state.engine
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.base = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _tenant(srv: _Server) -> tuple[str, str, str]:
    now = srv.clock.now()
    with transaction(srv.engine) as conn:
        org = str(accounts.create_org(conn, "bench", now)["id"])
        token = str(accounts.create_token(conn, org, "bench", list(accounts.KNOWN_SCOPES), now)["token"])
        journey = catalog.publish(conn, org, load_definition_file(EXAMPLE), now)
    return org, token, str(journey["id"])


def _body(n: int, tag: str, days: int = 3) -> dict[str, Any]:
    when = (START + timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "flowId": None,
        "timeZone": "America/Chicago",
        "instances": [
            {
                "parameters": {
                    "patientId": str(i),
                    "patientName": f"Patient {i}",
                    "appointmentId": f"{tag}-{i}",
                    "appointmentDateTime": when,
                    "phoneNumber": f"+1555{i % 10_000_000:07d}",
                }
            }
            for i in range(n)
        ],
    }


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_database(label: str, url: str) -> list[dict[str, Any]]:
    srv = _Server(url)
    rows: list[dict[str, Any]] = []
    try:
        org, token, bot = _tenant(srv)
        base = f"{srv.base}/chatbotapi/external/orgs/{org}/journeys/{bot}/instances"
        headers = {"Authorization": f"Bearer {token}"}
        client = httpx.Client(timeout=300)
        # bulk trigger over HTTP
        rates = []
        for run in range(RUNS):
            payload = json.dumps(_body(N, f"b{run}-{uuid.uuid4().hex[:6]}")).encode()
            t0 = time.perf_counter()
            r = client.post(
                f"{base}/bulk", content=payload, headers={**headers, "Content-Type": "application/json"}
            )
            elapsed = time.perf_counter() - t0
            assert r.status_code == 204, r.text[:500]
            rates.append(N / elapsed)
        rows.append({"db": label, "figure": "bulk trigger (instances/s)", **_stats(rates)})
        # raw insert limit: the same rows, inserted directly in one transaction with the fastest
        # path we have per dialect (the driver's executemany on SQLite; unnest arrays on PostgreSQL)
        raw = []
        for _ in range(RUNS):
            inst, params, events = _raw_rows(org, bot, N)
            t0 = time.perf_counter()
            with transaction(srv.engine) as conn:
                insert_many(conn, journey_instances, inst)
                insert_many(conn, instance_parameters, params)
                insert_many(conn, instance_events, events)
            raw.append(N / (time.perf_counter() - t0))
        rows.append({"db": label, "figure": "raw insert limit (instances/s)", **_stats(raw)})
        rows.append(
            {
                "db": label,
                "figure": "bulk / raw ratio",
                "median": statistics.median(rates) / statistics.median(raw),
                "min": min(rates) / max(raw),
                "max": max(rates) / min(raw),
            }
        )
        # engine: run everything due (each instance: send + wait = 2 steps)
        t0 = time.perf_counter()
        result = srv.app.state.worker.run_until_idle()
        elapsed = time.perf_counter() - t0
        rows.append({"db": label, "figure": "engine (steps/s, 1 worker)", **_stats([result.steps / elapsed])})
        # search latency (PostgreSQL: with fresh statistics, as autovacuum keeps them in steady state)
        if srv.engine.dialect.name == "postgresql":
            with srv.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
        lat = []
        for i in range(200):
            body = {
                "filterSpecification": {
                    "type": "JourneyParameterSpecification",
                    "parameterName": "patientId",
                    "operator": "equals",
                    "rightOperand": str(i * 37 % N),
                }
            }
            t0 = time.perf_counter()
            r = client.post(f"{base}/search", json=body, headers=headers)
            lat.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200
        lat.sort()
        rows.append(
            {
                "db": label,
                "figure": "search equals (ms): p50 / p99 / max",
                "median": lat[len(lat) // 2],
                "min": lat[int(len(lat) * 0.99) - 1],
                "max": lat[-1],
            }
        )
    finally:
        srv.stop()
    return rows


def _raw_rows(
    org: str, bot: str, n: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    now = START
    batch = new_id()
    inst, params, events = [], [], []
    for i in range(n):
        iid = new_id()
        p = {"patientId": str(i), "appointmentId": f"raw-{i}-{uuid.uuid4().hex[:4]}"}
        inst.append(
            {
                "org_id": org,
                "instance_id": iid,
                "journey_id": bot,
                "version": 1,
                "batch_id": batch,
                "status": "Completed",
                "time_zone": "UTC",
                "parameters": json.dumps(p),
                "identifier_key": None,
                "flow_id": "main",
                "step_id": 10,
                "due_at": None,
                "state": "{}",
                "rev": 0,
                "attempts": 0,
                "created_at": now,
                "start_at": now,
            }
        )
        for k, v in p.items():
            params.append(
                {"org_id": org, "instance_id": iid, "journey_id": bot, "name": k.lower(), "value": v}
            )
        events.append(event_row(org, iid, now, "main", "Main Flow", None, "started"))
    return inst, params, events


def main() -> None:
    targets = []
    with tempfile.TemporaryDirectory() as tmp:
        targets.append(("sqlite", f"sqlite:///{tmp}/bench.db"))
        pg = os.environ.get("JOURNEYS_BENCH_POSTGRES_URL")
        rows: list[dict[str, Any]] = []
        drop = None
        if pg:
            name = f"journeys_bench_{uuid.uuid4().hex[:8]}"
            admin = create_db_engine(pg).execution_options(isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            targets.append(("postgresql", pg.rsplit("/", 1)[0] + f"/{name}"))

            def drop() -> None:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        try:
            for label, url in targets:
                rows.extend(bench_database(label, url))
        finally:
            if drop:
                drop()
    print(f"\njourneys benchmarks — {N} instances per request, {RUNS} runs, {os.cpu_count()} cores\n")
    print(f"{'db':<11} {'figure':<38} {'median':>12} {'min':>12} {'max':>12}")
    for r in rows:
        print(f"{r['db']:<11} {r['figure']:<38} {r['median']:>12.2f} {r['min']:>12.2f} {r['max']:>12.2f}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(
        json.dumps({"instances": N, "runs": RUNS, "rows": rows}, indent=2) + "\n"
    )
    print(f"\nwritten to {out / 'latest.json'}")


if __name__ == "__main__":
    sys.exit(main())
