"""Profile the two hot paths in-process with pyinstrument (how bench/README.md's fixes were found).

    python -m bench.profile engine [sqlite|postgresql] [N]   # a worker running N due sends
    python -m bench.profile bulk   [sqlite|postgresql] [N]   # N requests of 10,000 (last one profiled)

PostgreSQL uses JOURNEYS_BENCH_POSTGRES_URL (default: the local server). Needs `pip install
pyinstrument`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import timedelta

import orjson

from bench.harness import APPOINTMENT, SEND_ONCE, fresh_database, make_tenant, utcnow
from bench.rows import appointment_parameters, build_rows, raw_insert, send_once_parameters
from journeys.catalog.service import JourneyVersion, load_version
from journeys.clock import SystemClock
from journeys.config import Settings
from journeys.engine.worker import Worker
from journeys.instances.trigger import trigger
from journeys.messaging.dispatch import Dispatcher


def main() -> None:
    from pyinstrument import Profiler

    what = sys.argv[1] if len(sys.argv) > 1 else "engine"
    label = sys.argv[2] if len(sys.argv) > 2 else "sqlite"
    n = int(sys.argv[3]) if len(sys.argv) > 3 else (20_000 if what == "engine" else 3)
    pg = os.environ.get("JOURNEYS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    db = fresh_database(label, tempfile.mkdtemp() if label == "sqlite" else pg, "profile")
    profiler = Profiler()
    try:
        if what == "engine":
            tenant = make_tenant(db, SEND_ONCE)
            params = [send_once_parameters(i, "p") for i in range(n)]
            raw_insert(db, build_rows(tenant, params, "patientId", utcnow()))
            clock = SystemClock()
            settings = Settings(database_url=db.url)
            worker = Worker(
                db.engine,
                clock,
                batch_size=settings.worker_batch_size,
                dispatcher=Dispatcher(db.engine, clock, settings),
            )
            profiler.start()
            t0 = time.perf_counter()
            worker.run_until_idle(max_batches=1_000_000)
            print(f"{n / (time.perf_counter() - t0):,.0f} due sends/s")
            profiler.stop()
        elif what == "bulk":
            tenant = make_tenant(db, APPOINTMENT)
            with db.engine.connect() as conn:
                definition = load_version(conn, tenant.org_id, tenant.journey_id, 1)
            jv = JourneyVersion(tenant.org_id, tenant.journey_id, definition.name, 1, definition)
            when = (utcnow() + timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S")
            for k in range(n):
                body = orjson.loads(
                    orjson.dumps(
                        {
                            "flowId": None,
                            "timeZone": "America/Chicago",
                            "instances": [
                                {"parameters": appointment_parameters(i, f"k{k}", when)}
                                for i in range(k * 10_000, (k + 1) * 10_000)
                            ],
                        }
                    )
                )
                if k == n - 1:
                    profiler.start()
                t0 = time.perf_counter()
                with db.engine.begin() as conn:
                    trigger(conn, jv, body, utcnow(), max_instances=10_000, optimistic=True)
                print(f"request {k}: {10_000 / (time.perf_counter() - t0):,.0f} instances/s")
            profiler.stop()
        else:
            raise SystemExit("usage: python -m bench.profile engine|bulk [sqlite|postgresql] [N]")
    finally:
        db.close()
    print(profiler.output_text(unicode=True, color=False))


if __name__ == "__main__":
    main()
