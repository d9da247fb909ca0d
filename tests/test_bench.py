"""The benchmark suite's own parts that could silently measure the wrong thing: the million-row
fill (generated in SQL) must store exactly what the Python row builder and the bulk trigger
would, and bad JOURNEYS_BENCH_* settings stop the suite before it creates anything."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from support.databases import PG_ADMIN_URL, require_postgres
from support.server import ROOT

sys.path.insert(0, str(ROOT))

from bench.figures import sealing  # noqa: E402
from bench.harness import APPOINTMENT, fresh_database, make_tenant, utcnow  # noqa: E402
from bench.rows import _identifier_key, _minute, appointment_parameters, fill, fill_sealed  # noqa: E402
from journeys.definitions import load_definition_file  # noqa: E402
from journeys.instances.trigger import identifier_key  # noqa: E402
from journeys.store.tables import (  # noqa: E402
    instance_events,
    instance_parameters,
    journey_instances,
)


def _database(tmp_path: Path):  # noqa: ANN202 - bench.harness.Database
    if os.environ.get("JOURNEYS_TEST_DATABASE", "sqlite") == "postgresql":
        require_postgres()
        return fresh_database("postgresql", PG_ADMIN_URL, "test")
    return fresh_database("sqlite", str(tmp_path), "fill")


def test_the_generated_fill_stores_what_the_trigger_would(tmp_path: Path) -> None:
    total = 20_000
    db = _database(tmp_path)
    try:
        tenant = make_tenant(db, APPOINTMENT)
        now = utcnow()
        active = fill(db, tenant, total, now)
        when = (now + timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S")
        ji, ip, ev = journey_instances, instance_parameters, instance_events
        with db.engine.connect() as conn:
            rows = conn.execute(sa.select(ji).order_by(ji.c.instance_id)).mappings().all()
            params = conn.execute(sa.select(ip.c.instance_id, ip.c.name, ip.c.value)).all()
            events = conn.execute(sa.select(ev.c.instance_id, ev.c.kind, ev.c.at)).all()
            indexes = {
                i["name"]
                for t in (ji, ip, ev)
                for i in sa.inspect(conn).get_indexes(t.name)
                if i["name"] is not None
            }
            if not db.is_pg:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert len(rows) == total
        by_id = {}
        batches = set()
        for i, row in enumerate(rows):  # ordered by id = the order they were made in
            p = appointment_parameters(i, "fill", when)
            assert row["org_id"] == tenant.org_id and row["journey_id"] == tenant.journey_id
            assert orjson.loads(row["parameters"]) == p
            assert row["identifier_key"] == _identifier_key(p["appointmentId"])
            running = i % 10 < 2
            assert row["status"] == ("InProgress" if running else "Cancelled" if i % 10 == 2 else "Completed")
            assert (row["due_at"] is not None) == running
            assert (row["ended_at"] is None) == running
            assert row["created_at"] <= now
            by_id[row["instance_id"]] = p
            batches.add(row["batch_id"])
        assert len(batches) == total // 10_000
        assert sorted(active) == sorted(r["instance_id"] for r in rows if r["status"] == "InProgress")
        assert len(params) == 5 * total
        for iid, name, value in params:
            assert {k.lower(): v for k, v in by_id[iid].items()}[name] == value
        assert sorted(e[0] for e in events) == sorted(by_id)
        assert {e[1] for e in events} == {"started"}
        expected = {i.name for t in (ji, ip, ev) for i in t.indexes}
        assert expected <= indexes, "the secondary indexes are rebuilt after the fill"
    finally:
        db.close()


def test_the_sealed_fill_stores_what_an_encrypted_trigger_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNEYS_BENCH_ENCRYPTED", "1")
    total = 10_000
    db = _database(tmp_path)
    try:
        tenant = make_tenant(db, APPOINTMENT)
        phi, prefix = sealing(db, tenant)
        assert phi is not None and phi.encrypted and prefix == {"appointmentdatetime": (4, 7, 10, 13, 16)}
        now = utcnow()
        active = fill_sealed(db, tenant, total, now, phi, prefix)
        defn = load_definition_file(APPOINTMENT)
        ji, ip = journey_instances, instance_parameters
        with db.engine.connect() as conn:
            rows = conn.execute(sa.select(ji).order_by(ji.c.instance_id)).mappings().all()
            params = {(r.instance_id, r.name): r.value for r in conn.execute(sa.select(ip))}
        assert len(rows) == total and len(params) == 10 * total  # 5 parameters, 5 prefixes of the date
        assert len(active) == total // 5
        for i in (0, 1, 2, 3, 4567, total - 1):
            row = rows[i]
            expected = appointment_parameters(i, "fill", _minute(now + timedelta(days=30), i))
            assert row["parameters"].startswith("~") and phi.open_json(row["parameters"]) == expected
            assert row["identifier_key"] == identifier_key(defn, expected, phi)
            iid = row["instance_id"]
            assert params[(iid, "patientid")] == phi.blind("patientid", expected["patientId"])
            day = expected["appointmentDateTime"][:10]
            assert params[(iid, "appointmentdatetime~10")] == phi.blind("appointmentdatetime~10", day)
    finally:
        db.close()


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOURNEYS_BENCH_RUNS": "three"}, "JOURNEYS_BENCH_RUNS: 'three' is not a whole number"),
        ({"JOURNEYS_BENCH_RUNS": "0"}, "JOURNEYS_BENCH_RUNS: must be at least 1"),
        ({"JOURNEYS_BENCH_SEARCH_ROWS": "500"}, "JOURNEYS_BENCH_SEARCH_ROWS: must be at least 10000"),
        ({"JOURNEYS_BENCH_LATENCY_RUNS": "-1"}, "JOURNEYS_BENCH_LATENCY_RUNS: must be at least 1"),
        (
            {"JOURNEYS_BENCH_ONLY": "mysql"},
            "JOURNEYS_BENCH_ONLY: 'mysql' is neither 'sqlite' nor 'postgresql'",
        ),
        ({"JOURNEYS_BENCH_FIGURES": "bulk,speed"}, "JOURNEYS_BENCH_FIGURES: unknown figure group 'speed'"),
        ({"JOURNEYS_BENCH_FRESH_ROWS": "5000"}, "JOURNEYS_BENCH_FRESH_ROWS: must be at least 10000"),
        (
            {"JOURNEYS_BENCH_FRESH_QUERIES": "lots"},
            "JOURNEYS_BENCH_FRESH_QUERIES: 'lots' is not a whole number",
        ),
        ({"JOURNEYS_BENCH_FRESH_RUNS": "0"}, "JOURNEYS_BENCH_FRESH_RUNS: must be at least 1"),
    ],
)
def test_bad_settings_stop_the_suite_before_it_starts(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_BENCH_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench"],
        cwd=ROOT,
        env={**clean, **env, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == [], "nothing created"
