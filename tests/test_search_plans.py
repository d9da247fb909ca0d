"""Search results and plans that do not depend on the planner's statistics.

- Random filter trees (And/Or/Not, every operator, status) return exactly the instances a
  direct evaluation of the filter picks, newest first — whichever condition drives the query.
- Right after a bulk load of 20,000 instances, with no statistics gathered (autovacuum off on
  the tables, the bulk trigger's ANALYZE switched off), the searches that used to take
  23–500 s on PostgreSQL (a nested loop estimated at 1 row that rescanned the journey's
  instances, or a partial index, per matching parameter row) run on the plan their shape fixes:
  the parameter lookup index, then instances and their parameters by primary key.
- PostgreSQL: a bulk load that grows the instances table by more than a fifth is followed by an
  ANALYZE of it; a small one is not.

No timings are asserted: the plans are read with EXPLAIN.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from httpx import Client
from support.api import bulk as support_bulk
from support.databases import make_postgres_database, own_database, require_postgres
from support.server import Server, Tenant

PG = os.environ.get("JOURNEYS_TEST_DATABASE", "sqlite") == "postgresql"
WHEN = "2026-12-01 08:00:00"


def pspec(name: str, operator: str, operand: Any) -> dict[str, Any]:
    return {
        "type": "JourneyParameterSpecification",
        "parameterName": name,
        "operator": operator,
        "rightOperand": operand,
    }


def status_spec(status: str) -> dict[str, Any]:
    return {"type": "JourneyStatusSpecification", "status": status}


def both(*specs: dict[str, Any]) -> dict[str, Any]:
    return {"type": "AndSpecification", "specifications": list(specs)}


def either(*specs: dict[str, Any]) -> dict[str, Any]:
    return {"type": "OrSpecification", "specifications": list(specs)}


def search(
    http: Client, tenant: Tenant, spec: dict[str, Any] | None, take: int = 1000
) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"includeParameters": True, "take": take}
    if spec is not None:
        body["filterSpecification"] = spec
    r = http.post(tenant.url("/search"), json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return list(r.json())


def bulk(http: Client, tenant: Tenant, instances: list[dict[str, str]]) -> None:
    support_bulk(http, tenant, [{"parameters": p} for p in instances])


# ---------------------------------------------------------------- semantics
NAMES = ["Ann Lee", "Bo Diaz", "Cy Ng", "Ann Leek"]
DATES = ["2026-12-01 08:00:00", "2026-12-02 09:30:00", "2026-12-03 10:00:00"]
FIELDS = ("patientId", "patientName", "appointmentId", "appointmentDateTime")


def _matches(spec: dict[str, Any], inst: dict[str, Any]) -> bool:
    kind = spec["type"]
    if kind == "AndSpecification":
        return all(_matches(s, inst) for s in spec["specifications"])
    if kind == "OrSpecification":
        return any(_matches(s, inst) for s in spec["specifications"])
    if kind == "NotSpecification":
        return not _matches(spec["specification"], inst)
    if kind == "JourneyStatusSpecification":
        return bool(inst["status"] == spec["status"])
    value = inst["parameters"].get(spec["parameterName"])
    operand = spec["rightOperand"]
    op = spec["operator"]
    if op == "notEquals":
        return value != operand
    if value is None:
        return False
    return {
        "equals": lambda: value == operand,
        "contains": lambda: operand in value,
        "startsWith": lambda: value.startswith(operand),
        "in": lambda: value in operand,
    }[op]()


def _random_spec(rng: random.Random, depth: int) -> dict[str, Any]:
    roll = rng.random()
    if depth < 3 and roll < 0.35:
        children = [_random_spec(rng, depth + 1) for _ in range(rng.randint(0, 3))]
        return both(*children) if rng.random() < 0.6 else either(*children)
    if depth < 3 and roll < 0.45:
        return {"type": "NotSpecification", "specification": _random_spec(rng, depth + 1)}
    if roll < 0.55:
        return status_spec(rng.choice(["InProgress", "Cancelled", "Completed"]))
    name = rng.choice(FIELDS)
    pool = {
        "patientId": [f"P{n:03d}" for n in range(0, 70, 7)] + ["P9"],
        "patientName": NAMES + ["Zed"],
        "appointmentId": [f"A-{n:03d}" for n in range(0, 70, 9)] + ["A-"],
        "appointmentDateTime": DATES,
    }[name]
    op = rng.choice(["equals", "equals", "notEquals", "contains", "startsWith", "startsWith", "in"])
    value = rng.choice(pool)
    if op in ("contains", "startsWith"):
        value = value[: rng.randint(0, len(value))]
    if op == "in":
        return pspec(name, op, rng.sample(pool, rng.randint(0, 3)))
    return pspec(name, op, value)


def test_random_filters_return_exactly_the_matching_instances_newest_first(
    server: Server, http: Client
) -> None:
    tenant = server.tenant()
    rng = random.Random(11)
    for batch in range(3):  # three creation times
        bulk(
            http,
            tenant,
            [
                {
                    "patientId": f"P{n:03d}",
                    "patientName": rng.choice(NAMES),
                    "appointmentId": f"A-{n:03d}",
                    "appointmentDateTime": rng.choice(DATES),
                }
                for n in range(batch * 24, batch * 24 + 24)
            ],
        )
        server.clock.advance(timedelta(minutes=1))
    everyone = search(http, tenant, None)
    assert len(everyone) == 72
    for inst in everyone[::5]:
        r = http.delete(tenant.url(f"/{inst['id']}/execution"), headers=tenant.headers)
        assert r.status_code == 204, r.text
    everyone = search(http, tenant, None)  # newest first: the order every answer must keep
    assert {i["status"] for i in everyone} == {"InProgress", "Cancelled"}
    fixed = [
        both(pspec("appointmentDateTime", "equals", DATES[0]), pspec("patientName", "equals", NAMES[0])),
        both(pspec("patientName", "startsWith", "Ann"), status_spec("Cancelled")),
        either(pspec("patientId", "equals", "P007"), pspec("appointmentId", "startsWith", "A-06")),
        both(
            either(pspec("patientName", "equals", NAMES[1]), pspec("patientName", "in", NAMES[2:])),
            pspec("appointmentDateTime", "in", DATES[1:]),
            {"type": "NotSpecification", "specification": status_spec("Cancelled")},
        ),
    ]
    for spec in fixed + [_random_spec(rng, 0) for _ in range(150)]:
        expected = [i["id"] for i in everyone if _matches(spec, i)]
        got = [i["id"] for i in search(http, tenant, spec)]
        assert got == expected, spec


# ---------------------------------------------------------------- plans right after a load
@pytest.fixture()
def fresh_url(tmp_path: Path) -> Iterator[str]:
    """A database of the test's own (the plans depend on what is in it)."""
    with own_database(tmp_path, "plans.db") as url:
        yield url


def _load(server: Server, tenant: Tenant, total: int, tag: str = "L") -> None:
    for start in range(0, total, 10_000):
        bulk(
            server.http,
            tenant,
            [
                {
                    "patientId": f"P{n:07d}",
                    "patientName": f"{NAMES[n % 3]} {n % 97}",
                    "appointmentId": f"{tag}-{n:07d}",
                    "appointmentDateTime": WHEN,  # shared: matches every instance
                }
                for n in range(start, min(total, start + 10_000))
            ],
        )


def _is_pg(server: Server) -> bool:
    return bool(server.engine.dialect.name == "postgresql")


def _no_autovacuum(server: Server) -> None:
    if _is_pg(server):
        with server.engine.begin() as conn:
            for table in ("journey_instances", "instance_parameters"):
                conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")


def _analyze_counts(server: Server) -> dict[str, int]:
    with server.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT relname, analyze_count + autoanalyze_count FROM pg_stat_user_tables "
            "WHERE relname IN ('journey_instances', 'instance_parameters')"
        ).all()
    return {str(name): int(n) for name, n in rows}


def _plan(server: Server, tenant: Tenant, spec: dict[str, Any]) -> tuple[list[str], int]:
    """The plan of the search statement this request runs (EXPLAIN, not run), and how many
    instances the request returned."""
    captured: list[tuple[str, Any]] = []

    def listener(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "ORDER BY" in statement and "journey_instances" in statement:
            captured.append((statement, parameters))

    sa.event.listen(server.engine, "before_cursor_execute", listener)
    try:
        found = len(search(server.http, tenant, spec, take=100))
    finally:
        sa.event.remove(server.engine, "before_cursor_execute", listener)
    assert len(captured) == 1, captured
    statement, parameters = captured[0]
    pg = _is_pg(server)
    with server.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            ("EXPLAIN " if pg else "EXPLAIN QUERY PLAN ") + statement, parameters
        ).all()
    return [str(r[0] if pg else r[-1]) for r in rows], found


# (spec, instances found with take=100, driven by the lookup index)
SHARED = pspec("appointmentDateTime", "equals", WHEN)
ANN_LEE_5 = sum(1 for n in range(20_000) if n % 3 == 0 and n % 97 == 5)
AFTER_A_LOAD = {
    "equals, 20,000 matches": (SHARED, 100, True),
    "startsWith, 20,000 matches": (pspec("appointmentId", "startsWith", "L-"), 100, True),
    "and with status": (both(SHARED, status_spec("InProgress")), 100, True),
    "and with a name": (both(SHARED, pspec("patientName", "equals", "Ann Lee 5")), ANN_LEE_5, True),
    "or of two ids": (
        either(pspec("patientId", "equals", "P0000007"), pspec("patientId", "in", ["P0019999"])),
        2,
        True,
    ),
    "contains": (pspec("patientName", "contains", "Bo Diaz 9"), 100, False),
    "not equals": (pspec("patientName", "notEquals", "Cy Ng 1"), 100, False),
}


def test_search_plans_right_after_a_load_do_not_rest_on_statistics(fresh_url: str) -> None:
    server = Server(fresh_url, analyze_after_bulk=False)
    try:
        _no_autovacuum(server)
        tenant = server.tenant()
        _load(server, tenant, 20_000)
        if _is_pg(server):
            assert _analyze_counts(server) == {"journey_instances": 0, "instance_parameters": 0}
        for label, (spec, expected, driven) in AFTER_A_LOAD.items():
            plan, found = _plan(server, tenant, spec)
            text = f"{label}:\n" + "\n".join(plan)
            assert found == expected, text
            if _is_pg(server):
                _check_pg_plan(plan, driven, text)
            else:
                _check_sqlite_plan(plan, driven, text)
    finally:
        server.stop()


def _check_pg_plan(plan: list[str], driven: bool, text: str) -> None:
    joined = "\n".join(plan)
    # The shape of the 23–500 s plans: a join filter comparing instance ids after a scan that
    # is not keyed by them, and scans of the whole table.
    assert "Join Filter" not in joined, text
    assert "Seq Scan" not in joined, text
    assert "uq_journey_instances_active_identifier" not in joined, text
    if driven:
        assert "ix_instance_parameters_lookup" in joined, text
        assert "ix_journey_instances_org_journey_created" not in joined, text
        on_instances = [line for line in plan if " on journey_instances" in line]
        assert on_instances and all("pk_journey_instances" in line for line in on_instances), text
    else:
        assert "ix_journey_instances_org_journey_created" in joined, text
    on_parameters = [line for line in plan if " on instance_parameters own" in line]
    assert all("pk_instance_parameters" in line for line in on_parameters), text


def _check_sqlite_plan(plan: list[str], driven: bool, text: str) -> None:
    # No table is read whole (a SCAN of the lookup's own result, `arms`, is fine).
    assert not any(
        re.match(r"SCAN (journey_instances|instance_parameters|p|own)\b", line) for line in plan
    ), text
    on_parameters = [line for line in plan if line.startswith("SEARCH own ")]
    assert all("(org_id=? AND instance_id=? AND name=?)" in line for line in on_parameters), text
    if driven:
        assert any("ix_instance_parameters_lookup" in line for line in plan), text
        on_instances = [line for line in plan if " journey_instances " in f"{line} "]
        assert on_instances and all("(org_id=? AND instance_id=?)" in line for line in on_instances), text


# ---------------------------------------------------------------- ANALYZE after a large load
@pytest.mark.postgres_only
def test_a_large_bulk_load_is_followed_by_analyze_and_a_small_one_is_not() -> None:
    """PostgreSQL only: SQLite keeps no statistics (the check is a no-op there)."""
    require_postgres()
    url, drop = make_postgres_database()
    server = Server(url)
    try:
        _no_autovacuum(server)
        tenant = server.tenant()
        _load(server, tenant, 500, tag="S")  # under ANALYZE_MIN_ROWS: not worth it
        assert _analyze_counts(server) == {"journey_instances": 0, "instance_parameters": 0}
        _load(server, tenant, 20_000)
        counts = _analyze_counts(server)
        assert counts["journey_instances"] >= 1, counts
        assert counts["instance_parameters"] == 0, "left to autovacuum (no plan depends on it)"
        with server.engine.connect() as conn:
            reltuples = conn.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE relname = 'journey_instances'"
            ).scalar_one()
        assert reltuples == 20_500  # the statistics describe the table as it is now
        _load(server, tenant, 2_000, tag="T")  # 10 % more: the statistics are still good
        assert _analyze_counts(server) == counts
        plan, found = _plan(server, tenant, SHARED)
        assert found == 100
        assert "Join Filter" not in "\n".join(plan)
    finally:
        server.stop()
        drop()
