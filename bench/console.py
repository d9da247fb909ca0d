"""The console's journey pages at scale: server time of the journeys list, the journey page
(its graph with the instances waiting at each step and the passes in a period) and a step's
instance list, over real HTTP with a signed-in console session, with the instances `fill`
stored (1,000,000 in `make bench`: part of the search group, on its database).

    python -m bench.console [sqlite|postgresql] [N]   # one run on a fresh database of N instances

PostgreSQL uses JOURNEYS_BENCH_POSTGRES_URL (default: the local server)."""

from __future__ import annotations

import os
import random
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from bench.figures import percentile, result
from bench.harness import (
    APPOINTMENT,
    Database,
    Proc,
    Tenant,
    fresh_database,
    make_tenant,
    start_server,
    utcnow,
)
from bench.rows import fill
from journeys.accounts import users
from journeys.accounts.roles import Role
from journeys.catalog.service import load_version
from journeys.store.db import transaction
from journeys.store.tables import step_passes

Row = dict[str, Any]
PASSWORD = "bench console password 1"
TARGET_MS = 200.0


def fill_passes(db: Database, tenant: Tenant, now: datetime) -> int:
    """Pass counts as 30 days of a busy worker pair leave them: every step, every hour, two
    shards — the most rows the 30-day period reads."""
    with db.engine.connect() as conn:
        definition = load_version(conn, tenant.org_id, tenant.journey_id, tenant.version)
    steps = [step.id for flow in definition.flows for step in flow.steps]
    top = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(13)
    rows = [
        {
            "org_id": tenant.org_id,
            "journey_id": tenant.journey_id,
            "version": tenant.version,
            "hour": top - timedelta(hours=h),
            "step_id": step,
            "shard": shard,
            "passes": rng.randrange(1, 500),
        }
        for h in range(30 * 24)
        for step in steps
        for shard in (0, 1)
    ]
    with transaction(db.engine) as conn:
        for start in range(0, len(rows), 5_000):
            conn.execute(step_passes.insert(), rows[start : start + 5_000])
    return len(rows)


def sign_in(db: Database, tenant: Tenant, base: str) -> httpx.Client:
    """A viewer of the tenant's org, signed in through the console's login form."""
    email = f"bench-{tenant.org_id[-6:]}@clinic.example"
    with transaction(db.engine) as conn:
        users.create_user(conn, tenant.org_id, email, Role.VIEWER, PASSWORD, utcnow())
    client = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
    page = client.get(f"/console/login?org={tenant.org_id}")
    found = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert found, "no login form"
    form = {"org": tenant.org_id, "email": email, "password": PASSWORD, "login_csrf": found.group(1)}
    r = client.post("/console/login", data=form, headers={"Origin": base})
    if r.status_code != 303:
        raise RuntimeError(f"console login answered {r.status_code}: {r.text[:300]}")
    return client


def journey_pages(
    db: Database, tenant: Tenant, total: int, requests: int = 100
) -> tuple[list[Row], list[Proc]]:
    """p50 and p99 of each page over `requests` GETs (after one to warm up)."""
    fill_passes(db, tenant, utcnow())
    server, base = start_server(db)
    jid = tenant.journey_id
    pages = {
        "console journeys list": "/console/journeys",
        "console journey page, passed in 24 h": f"/console/journeys/{jid}?period=24h",
        "console journey page, passed in 30 days": f"/console/journeys/{jid}?period=30d",
        "console instances at a step (first page)": f"/console/journeys/{jid}/steps/20",
    }
    out: list[Row] = []
    try:
        client = sign_in(db, tenant, base)
        try:
            for name, path in pages.items():
                lat = []
                for k in range(requests + 1):
                    t = time.perf_counter()
                    r = client.get(path)
                    if k:
                        lat.append((time.perf_counter() - t) * 1000)
                    if r.status_code != 200:
                        raise RuntimeError(f"{path} answered {r.status_code}: {r.text[:300]}")
                label = f"{name}, {total:,} instances"
                target = TARGET_MS if "journey page" in name else None
                out.append(result(db.label, f"{label}: p50", "ms", [percentile(lat, 50)]))
                out.append(result(db.label, f"{label}: p99", "ms", [percentile(lat, 99)], target, "lower"))
        finally:
            client.close()
    finally:
        server.stop()
    return out, [server]


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    pg = os.environ.get("JOURNEYS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    db = fresh_database(label, tempfile.mkdtemp() if label == "sqlite" else pg, "console")
    try:
        tenant = make_tenant(db, APPOINTMENT)
        t0 = time.perf_counter()
        fill(db, tenant, total, utcnow())
        if db.is_pg:
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        print(f"setup: {total:,} instances stored in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        rows, _ = journey_pages(db, tenant, total)
        with db.engine.connect() as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(step_passes)).scalar_one()
        print(f"({n:,} step_passes rows)", file=sys.stderr)
        for r in rows:
            target = "" if r["target"] is None else f" (target ≤ {r['target']:g})"
            print(f"{db.label:<10} {r['figure']:<72} {r['median']:>8.1f} {r['unit']}{target}")
    finally:
        db.close()


if __name__ == "__main__":
    main()
