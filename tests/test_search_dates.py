"""JourneyDateSpecification (a journeys extension to the search filters): created, start and
last-event date ranges, combined with the other specifications, in search and in bulk cancel;
every bad value a 400 naming it; the created range served by the journey's created_at index."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from httpx import Client
from support.api import bulk as support_bulk
from support.server import Server, Tenant

HOUR = timedelta(hours=1)
DATE_FIELDS = "createdDateTime, startDateTime, lastEventDateTime"
DATE_OPERATORS = "after, before, between"
NOT_A_MOMENT = "is not an ISO 8601 date-time with Z or an offset (e.g. '2026-11-01T00:00:00Z')"


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dspec(field: str, operator: str, operand: Any) -> dict[str, Any]:
    return {"type": "JourneyDateSpecification", "field": field, "operator": operator, "rightOperand": operand}


def bulk(http: Client, tenant: Tenant, names: list[str]) -> None:
    instances = [
        {
            "parameters": {
                "patientId": name,
                "patientName": name,
                "appointmentId": f"APT-{name}",
                "appointmentDateTime": "2027-01-15 09:00:00",
            }
        }
        for name in names
    ]
    support_bulk(http, tenant, instances)


def names_for(http: Client, tenant: Tenant, spec: dict[str, Any]) -> list[str]:
    body = {"filterSpecification": spec, "includeParameters": True, "take": 1000}
    r = http.post(tenant.url("/search"), json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return sorted(i["parameters"]["patientName"] for i in r.json())


def errors_for(http: Client, tenant: Tenant, spec: Any) -> list[str]:
    r = http.post(tenant.url("/search"), json={"filterSpecification": spec}, headers=tenant.headers)
    assert r.status_code == 400, r.text
    return list(r.json())


@pytest.fixture()
def three_hours(server: Server, http: Client, tenant: Tenant) -> Iterator[tuple[Tenant, datetime]]:
    """A1, A2 created at t0 and run by the worker at t0 + 10 min; B1, B2 created at t0 + 1 h,
    C1, C2 at t0 + 2 h (neither has run a step: no last event). The session server's clock is
    set back to t0 afterwards (other modules' sends expect its time of day)."""
    t0 = server.clock.now()
    bulk(http, tenant, ["A1", "A2"])
    server.clock.advance(timedelta(minutes=10))
    server.run_worker()
    server.clock.set(t0 + HOUR)
    bulk(http, tenant, ["B1", "B2"])
    server.clock.set(t0 + 2 * HOUR)
    bulk(http, tenant, ["C1", "C2"])
    yield tenant, t0
    server.clock.set(t0)


# ---------------------------------------------------------------- matching
@pytest.mark.parametrize("field", ["createdDateTime", "startDateTime"])
def test_after_before_between(http: Client, three_hours: tuple[Tenant, datetime], field: str) -> None:
    t, t0 = three_hours
    assert names_for(http, t, dspec(field, "after", z(t0 + HOUR))) == ["B1", "B2", "C1", "C2"]  # inclusive
    assert names_for(http, t, dspec(field, "before", z(t0 + HOUR))) == ["A1", "A2"]  # exclusive
    assert names_for(http, t, dspec(field, "between", [z(t0 + HOUR), z(t0 + 2 * HOUR)])) == ["B1", "B2"]
    everything = [z(t0), z(t0 + 2 * HOUR + timedelta(microseconds=1))]
    assert names_for(http, t, dspec(field, "between", everything)) == ["A1", "A2", "B1", "B2", "C1", "C2"]
    assert names_for(http, t, dspec(field, "after", z(t0 + 3 * HOUR))) == []
    # Any offset names the same moment.
    chicago = (t0 + HOUR).astimezone(timezone(timedelta(hours=-6))).isoformat()
    assert names_for(http, t, dspec(field, "after", chicago)) == ["B1", "B2", "C1", "C2"]


def test_last_event_date_time(http: Client, three_hours: tuple[Tenant, datetime]) -> None:
    t, t0 = three_hours
    ran = t0 + timedelta(minutes=10)
    assert names_for(http, t, dspec("lastEventDateTime", "after", z(ran))) == ["A1", "A2"]
    assert names_for(http, t, dspec("lastEventDateTime", "before", z(ran + HOUR))) == ["A1", "A2"]
    assert names_for(http, t, dspec("lastEventDateTime", "before", z(ran))) == []
    # Instances that never ran a step have no last event: no range holds them, so the negation
    # of any range does.
    stale = {"type": "NotSpecification", "specification": dspec("lastEventDateTime", "after", z(t0))}
    assert names_for(http, t, stale) == ["B1", "B2", "C1", "C2"]


def test_combined_with_the_other_specifications(http: Client, three_hours: tuple[Tenant, datetime]) -> None:
    t, t0 = three_hours
    name_is = {"type": "JourneyParameterSpecification", "parameterName": "patientName", "operator": "equals"}
    both = {
        "type": "AndSpecification",
        "specifications": [
            dspec("createdDateTime", "after", z(t0 + HOUR)),
            {**name_is, "operator": "startsWith", "rightOperand": "C"},
        ],
    }
    assert names_for(http, t, both) == ["C1", "C2"]
    either = {
        "type": "OrSpecification",
        "specifications": [
            dspec("createdDateTime", "before", z(t0 + HOUR)),
            {**name_is, "rightOperand": "C2"},
        ],
    }
    assert names_for(http, t, either) == ["A1", "A2", "C2"]
    status = {
        "type": "AndSpecification",
        "specifications": [
            {"type": "JourneyStatusSpecification", "status": "InProgress"},
            {"type": "NotSpecification", "specification": dspec("startDateTime", "after", z(t0 + HOUR))},
        ],
    }
    assert names_for(http, t, status) == ["A1", "A2"]


def test_bulk_cancel_by_date(http: Client, three_hours: tuple[Tenant, datetime]) -> None:
    t, t0 = three_hours
    url = f"/api/orgs/{t.org_id}/journeys/{t.journey_id}/instances/cancel"
    body = {"filterSpecification": dspec("createdDateTime", "before", z(t0 + 2 * HOUR))}
    r = http.post(url, json={**body, "dryRun": True}, headers=t.headers)
    assert r.status_code == 200 and r.json() == {"wouldCancel": 4}
    r = http.post(url, json=body, headers=t.headers)
    assert r.status_code == 200 and r.json() == {"cancelled": 4}
    cancelled = {"type": "JourneyStatusSpecification", "status": "Cancelled"}
    assert names_for(http, t, cancelled) == ["A1", "A2", "B1", "B2"]
    bad = {"filterSpecification": dspec("createdDateTime", "before", "2026-11-01")}
    r = http.post(url, json=bad, headers=t.headers)
    assert r.status_code == 400
    assert r.json() == [f"filterSpecification.rightOperand: '2026-11-01' {NOT_A_MOMENT}"]
    assert names_for(http, t, {"type": "JourneyStatusSpecification", "status": "InProgress"}) == ["C1", "C2"]


# ---------------------------------------------------------------- errors
P = "filterSpecification"


@pytest.mark.parametrize(
    "spec, messages",
    [
        (
            dspec("modifiedDateTime", "after", "2026-11-01T00:00:00Z"),
            [f"{P}.field: unknown date field 'modifiedDateTime' (expected one of: {DATE_FIELDS})"],
        ),
        (
            {"type": "JourneyDateSpecification", "operator": "after", "rightOperand": "2026-11-01T00:00:00Z"},
            [f"{P}.field: unknown date field None (expected one of: {DATE_FIELDS})"],
        ),
        (
            dspec("createdDateTime", "equals", "2026-11-01T00:00:00Z"),
            [f"{P}.operator: unknown date operator 'equals' (expected one of: {DATE_OPERATORS})"],
        ),
        *(
            (dspec("createdDateTime", "after", value), [f"{P}.rightOperand: {value!r} {NOT_A_MOMENT}"])
            for value in (
                "2026-11-01T00:00:00",  # a local time: which zone?
                "2026-11-01",
                "yesterday",
                "2026-13-01T00:00:00Z",
                "",
                "0001-01-01T00:00:00+05:00",  # before year 1 in UTC
                "9999-12-31T23:00:00-05:00",  # after year 9999 in UTC
            )
        ),
        (dspec("createdDateTime", "before", 1767225600), [f"{P}.rightOperand: a number {NOT_A_MOMENT}"]),
        (dspec("createdDateTime", "before", None), [f"{P}.rightOperand: null {NOT_A_MOMENT}"]),
        (
            dspec("createdDateTime", "between", "2026-11-01T00:00:00Z"),
            [f"{P}.rightOperand: must be an array of two date-times for operator 'between'"],
        ),
        (
            dspec("createdDateTime", "between", ["2026-11-01T00:00:00Z"]),
            [f"{P}.rightOperand: must be an array of two date-times for operator 'between'"],
        ),
        (
            dspec("createdDateTime", "between", ["2026-11-02T00:00:00Z", "2026-11-01T00:00:00Z"]),
            [f"{P}.rightOperand: the first date-time must be before the second"],
        ),
        (
            dspec("createdDateTime", "between", ["2026-11-01T00:00:00Z", "2026-11-01T01:00:00+01:00"]),
            [f"{P}.rightOperand: the first date-time must be before the second"],
        ),
        (
            dspec("lastEventDateTime", "between", ["soon", 3]),
            [f"{P}.rightOperand[0]: 'soon' {NOT_A_MOMENT}", f"{P}.rightOperand[1]: a number {NOT_A_MOMENT}"],
        ),
        (
            dspec("created", "after", "later"),
            [
                f"{P}.field: unknown date field 'created' (expected one of: {DATE_FIELDS})",
                f"{P}.rightOperand: 'later' {NOT_A_MOMENT}",
            ],
        ),
    ],
)  # fmt: skip
def test_bad_date_specifications_are_named(
    http: Client, tenant: Tenant, spec: dict[str, Any], messages: list[str]
) -> None:
    assert errors_for(http, tenant, spec) == messages


def test_errors_are_named_inside_nested_specifications(http: Client, tenant: Tenant) -> None:
    spec = {
        "type": "OrSpecification",
        "specifications": [
            {"type": "JourneyStatusSpecification", "status": "InProgress"},
            {"type": "NotSpecification", "specification": dspec("startDateTime", "around", "x")},
        ],
    }
    assert errors_for(http, tenant, spec) == [
        f"{P}.specifications[1].specification.operator: unknown date operator 'around' "
        f"(expected one of: {DATE_OPERATORS})"
    ]


# ---------------------------------------------------------------- the index
def test_a_created_range_is_an_index_range_scan(server: Server, http: Client, tenant: Tenant) -> None:
    """createdDateTime ranges are served by the (org_id, journey_id, created_at) index: a range
    within the journey, not a walk over every instance."""
    captured: list[tuple[str, Any]] = []

    def listener(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "journey_instances" in statement and "ORDER BY" in statement:
            captured.append((statement, parameters))

    bulk(http, tenant, ["X1"])
    now = server.clock.now()
    spec = dspec("createdDateTime", "between", [z(now - HOUR), z(now + HOUR)])
    sa.event.listen(server.engine, "before_cursor_execute", listener)
    try:
        assert names_for(http, tenant, spec) == ["X1"]
    finally:
        sa.event.remove(server.engine, "before_cursor_execute", listener)
    [(statement, parameters)] = captured
    with server.engine.connect() as conn:
        if server.engine.dialect.name == "sqlite":
            plan = [str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            assert any(
                "ix_journey_instances_org_journey_created" in line and "created_at>" in line for line in plan
            ), plan
            assert not any(line.startswith("SCAN ") for line in plan), plan
        else:
            with conn.begin():
                conn.exec_driver_sql("ANALYZE journey_instances")
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                text = "\n".join(str(r[0]) for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
            assert "ix_journey_instances_org_journey_created" in text, text
            assert "created_at >=" in text and "Index Cond" in text, text
