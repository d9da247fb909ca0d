"""POST …/instances/bulk: the seed's body, validation errors, all-or-nothing, limits, subflows.

Every test runs in its own org (the database is shared by the session) and asserts only on
that org's rows.
"""

from __future__ import annotations

import copy
import json
import secrets
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from httpx import Client, Response
from support.api import SEED_BULK_BODY
from support.server import START, Server, Tenant

PARAM_NAMES = "patientId, patientName, appointmentId, appointmentDateTime, phoneNumber"
TABLES = ("journey_instances", "instance_parameters", "instance_events")
DATETIME_PROBLEM = "is not a valid datetime"

# A journey with no datetime parameter: timeZone is optional for it.
NO_DATETIME_JOURNEY = """\
name: Plain Survey
parameters:
  - name: patientId
    identifier: true
  - name: phone
    type: phone
    required: false
flows:
  - id: main
    name: Main
    main: true
    steps:
      - id: 10
        type: send_sms
        to: phone
        body: "Hi"
      - id: 20
        type: end
"""


def unknown_msg(index: int, name: str) -> str:
    return (
        f"instances[{index}].parameters.{name}: unknown parameter (this journey's parameters: {PARAM_NAMES})"
    )


def duplicate_msg(index: int, appointment_id: str, first: int) -> str:
    return (
        f'instances[{index}]: duplicate instance identifier (appointmentId "{appointment_id}") '
        f"also given at instances[{first}]"
    )


def active_msg(index: int, appointment_id: str, instance_id: str) -> str:
    return (
        f'instances[{index}]: an active instance already exists for appointmentId "{appointment_id}" '
        f"(id {instance_id})"
    )


@pytest.fixture(autouse=True)
def _clock_at_start(server: Server) -> Iterator[None]:
    """The clock is shared by the session: the expected wait times below assume START."""
    server.clock.set(START)
    yield


# ---------------------------------------------------------------- helpers
def params(n: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid parameter set for the example journey; `n` makes the identifier unique."""
    p: dict[str, Any] = {
        "patientId": f"P{n:06d}",
        "patientName": f"Patient {n}",
        "appointmentId": f"APPT-{n:06d}",
        "appointmentDateTime": "2026-11-20 09:00:00",
    }
    for key, value in overrides.items():
        if value is ...:
            p.pop(key, None)
        else:
            p[key] = value
    return p


def body(*entries: dict[str, Any], flow_id: str | None = None, tz: str | None = "America/Chicago") -> dict:
    out: dict[str, Any] = {"flowId": flow_id}
    if tz is not None:
        out["timeZone"] = tz
    out["instances"] = [{"parameters": e} for e in entries]
    return out


def bulk(http: Client, tenant: Tenant, payload: Any) -> Response:
    return http.post(tenant.url("/bulk"), json=payload, headers=tenant.headers)


def bulk_raw(http: Client, tenant: Tenant, content: bytes) -> Response:
    headers = {**tenant.headers, "Content-Type": "application/json"}
    return http.post(tenant.url("/bulk"), content=content, headers=headers)


def counts(server: Server, tenant: Tenant) -> dict[str, int]:
    return {t: server.count(t, tenant.org_id) for t in TABLES}


def errors_of(r: Response, status: int = 400) -> list[str]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    data = r.json()
    assert isinstance(data, list) and data, data
    assert all(isinstance(m, str) for m in data), data
    return data


def search(http: Client, tenant: Tenant, spec: dict[str, Any] | None = None, **extra: Any) -> list[dict]:
    payload: dict[str, Any] = {"includeParameters": True, **extra}
    if spec is not None:
        payload["filterSpecification"] = spec
    r = http.post(tenant.url("/search"), json=payload, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return r.json()


def param_equals(name: str, value: str) -> dict[str, Any]:
    return {
        "type": "JourneyParameterSpecification",
        "parameterName": name,
        "operator": "equals",
        "rightOperand": value,
    }


def find_one(http: Client, tenant: Tenant, name: str, value: str) -> dict[str, Any]:
    found = search(http, tenant, param_equals(name, value))
    assert len(found) == 1, found
    return found[0]


def get_instance(http: Client, tenant: Tenant, instance_id: str) -> dict[str, Any]:
    r = http.get(tenant.url(f"/{instance_id}"), headers=tenant.headers)
    assert r.status_code == 200, r.text
    return r.json()


def cancel(http: Client, tenant: Tenant, instance_id: str) -> None:
    r = http.delete(tenant.url(f"/{instance_id}/execution"), headers=tenant.headers)
    assert r.status_code == 204, r.text


def wait_events(inst: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in inst["events"] if e["type"] == "wait"]


# ---------------------------------------------------------------- the seed's body, verbatim
def test_seed_body_verbatim_creates_two_instances_in_one_batch(
    server: Server, http: Client, tenant: Tenant
) -> None:
    r = bulk(http, tenant, SEED_BULK_BODY)
    assert r.status_code == 204, r.text
    assert r.content == b""

    assert counts(server, tenant) == {
        "journey_instances": 2,
        "instance_parameters": 8,
        "instance_events": 2,
    }
    found = search(http, tenant)
    assert len(found) == 2
    assert {i["status"] for i in found} == {"InProgress"}
    batch_ids = {i["journeyBatchId"] for i in found}
    assert len(batch_ids) == 1
    batch_id = batch_ids.pop()
    uuid.UUID(batch_id)
    assert len({i["id"] for i in found}) == 2
    by_appt = {i["parameters"]["appointmentId"]: i for i in found}
    for entry in SEED_BULK_BODY["instances"]:
        given = entry["parameters"]
        inst = by_appt[given["appointmentId"]]
        assert inst["parameters"] == given
        assert inst["journeyBotName"] == "Appointment Reminder"
        assert inst["lastStepExecuted"] is None
        for key in ("createdDateTime", "startDateTime"):
            assert inst[key].endswith("Z")
            assert datetime.fromisoformat(inst[key]) == START

        detail = get_instance(http, tenant, inst["id"])
        assert detail["status"] == "InProgress"
        assert detail["journeyBatchId"] == batch_id
        assert detail["parameters"] == given
        assert [e["type"] for e in detail["events"]] == ["started"]
        assert detail["events"][0]["flowName"] == "Main Flow"


def test_each_request_gets_its_own_batch_id(server: Server, http: Client, tenant: Tenant) -> None:
    assert bulk(http, tenant, body(params(1), params(2))).status_code == 204
    assert bulk(http, tenant, body(params(3))).status_code == 204
    found = search(http, tenant)
    batches = {i["parameters"]["appointmentId"]: i["journeyBatchId"] for i in found}
    assert batches["APPT-000001"] == batches["APPT-000002"] != batches["APPT-000003"]


def test_parameter_names_are_case_insensitive(server: Server, http: Client, tenant: Tenant) -> None:
    given = {
        "PatientName": "John Smith",
        "APPOINTMENTID": "40-XYZ-11123",
        "patientid": "100000",
        "AppointmentDateTime": "2026-12-01 08:00:00",
        "PHONENUMBER": "+1 555 0100 123",
    }
    r = bulk(
        http, tenant, {"flowId": None, "timeZone": "America/Chicago", "instances": [{"parameters": given}]}
    )
    assert r.status_code == 204, r.text
    inst = find_one(http, tenant, "patientName", "John Smith")
    assert inst["parameters"] == {
        "patientName": "John Smith",
        "appointmentId": "40-XYZ-11123",
        "patientId": "100000",
        "appointmentDateTime": "2026-12-01 08:00:00",
        "phoneNumber": "+1 555 0100 123",
    }
    assert get_instance(http, tenant, inst["id"])["parameters"] == inst["parameters"]
    # The identifier is matched under its canonical name, whatever case the caller used.
    r = bulk(http, tenant, body(params(9, appointmentId=..., appointmentid="40-XYZ-11123")))
    errors = errors_of(r)
    assert errors == [active_msg(0, "40-XYZ-11123", inst["id"])]
    assert counts(server, tenant)["journey_instances"] == 1


def test_same_parameter_twice_in_different_case_is_an_error(
    server: Server, http: Client, tenant: Tenant
) -> None:
    p = params(1)
    p["PATIENTNAME"] = "Someone Else"
    errors = errors_of(bulk(http, tenant, body(p)))
    assert errors == [
        "instances[0].parameters.PATIENTNAME: parameter patientName given more than once "
        "(names are case-insensitive)"
    ]
    assert counts(server, tenant)["journey_instances"] == 0


def test_optional_parameter_may_be_omitted_or_null(server: Server, http: Client, tenant: Tenant) -> None:
    r = bulk(http, tenant, body(params(1), params(2, phoneNumber=None), params(3, phoneNumber="")))
    assert r.status_code == 204, r.text
    found = {i["parameters"]["appointmentId"]: i["parameters"] for i in search(http, tenant)}
    assert "phoneNumber" not in found["APPT-000001"]
    assert "phoneNumber" not in found["APPT-000002"]  # null is treated as absent
    assert found["APPT-000003"]["phoneNumber"] == ""


# ---------------------------------------------------------------- one error at a time
def _bad_datetime_body() -> dict[str, Any]:
    return body(*(params(i) for i in range(3)), params(3, appointmentDateTime="2023-13-01 08:00:00"))


def test_invalid_datetime_names_index_and_parameter(server: Server, http: Client, tenant: Tenant) -> None:
    errors = errors_of(bulk(http, tenant, _bad_datetime_body()))
    assert len(errors) == 1
    assert errors[0].startswith(
        'instances[3].parameters.appointmentDateTime: "2023-13-01 08:00:00" is not a valid datetime'
    ), errors
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize(
    "value",
    [
        "2023-13-01 08:00:00",
        "2023-02-30 08:00:00",
        "2023-12-01 25:00:00",
        "2023-12-01 08:61:00",
        "2023-12-01",
        "12/01/2023 08:00",
        "tomorrow",
        "2023-12-01T08:00:00+25:00",
        "2023-12-01 08:00:00Z",
    ],
)
def test_invalid_datetime_values(server: Server, http: Client, tenant: Tenant, value: str) -> None:
    errors = errors_of(bulk(http, tenant, body(params(1, appointmentDateTime=value))))
    assert len(errors) == 1
    assert errors[0].startswith(
        f"instances[0].parameters.appointmentDateTime: {json.dumps(value)} {DATETIME_PROBLEM}"
    ), errors
    assert counts(server, tenant)["journey_instances"] == 0


OUT_OF_RANGE = "is out of range (years 1900 to 2200)"
BEYOND_14 = "has a UTC offset beyond ±14:00"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        # Python's datetime arithmetic overflows this far out (it was a 500), or the worker failed.
        ("9999-12-31 23:59:59", OUT_OF_RANGE),
        ("0001-01-01T00:00:00+14:00", OUT_OF_RANGE),
        ("0001-01-01 00:00:00", OUT_OF_RANGE),
        ("9999-12-31T23:59:59-14:00", OUT_OF_RANGE),
        ("1899-12-31 23:59:59", OUT_OF_RANGE),
        ("2201-01-01T00:00:00Z", OUT_OF_RANGE),
        # Only ASCII digits: int() and fromisoformat would take these.
        ("２０２６-12-01 08:00:00", DATETIME_PROBLEM),
        ("2026-12-01 ０8:00:00", DATETIME_PROBLEM),
        ("2026-12-01T08:00:00+０1:00", DATETIME_PROBLEM),
        ("٢٠٢٦-12-01 08:00:00", DATETIME_PROBLEM),
        ("2026-12-01 08:00:00\n", DATETIME_PROBLEM),
        # Real UTC offsets go from -12:00 to +14:00.
        ("2026-12-01T08:00:00+14:01", BEYOND_14),
        ("2026-12-01T08:00:00-15:00", BEYOND_14),
        ("2026-12-01T08:00:00+2359", BEYOND_14),
    ],
)
def test_datetime_out_of_range_or_not_ascii_is_a_clear_400(
    server: Server, http: Client, tenant: Tenant, value: str, problem: str
) -> None:
    r = bulk(http, tenant, body(params(0), params(1, appointmentDateTime=value)))
    shown = json.dumps(value, ensure_ascii=False)
    assert errors_of(r)[0].startswith(f"instances[1].parameters.appointmentDateTime: {shown} {problem}")
    assert len(errors_of(r)) == 1, r.text
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize(
    "value",
    ["1900-01-01 00:00:00", "2200-12-31 23:59:59", "1900-01-01T00:00:00+14:00", "2200-12-31T23:59:59-14:00"],
)
def test_datetime_range_limits_are_accepted(server: Server, http: Client, tenant: Tenant, value: str) -> None:
    later = START + timedelta(days=36_500)  # keep these out of other tests' worker runs
    server.clock.set(later)
    r = bulk(http, tenant, body(params(1, appointmentDateTime=value)))
    assert r.status_code == 204, r.text
    found = find_one(http, tenant, "appointmentId", "APPT-000001")
    assert found["parameters"]["appointmentDateTime"] == value


@pytest.mark.parametrize(
    ("value", "until"),
    [
        # local to timeZone (America/Chicago is UTC-6 in late November)
        ("2026-11-20 09:00:00", "2026-11-19T15:00:00Z"),
        ("2026-11-20T09:00:00", "2026-11-19T15:00:00Z"),
        # absolute: the offset wins over timeZone
        ("2026-11-20T09:00:00-05:00", "2026-11-19T14:00:00Z"),
        ("2026-11-20T09:00:00+01:00", "2026-11-19T08:00:00Z"),
        ("2026-11-20T09:00:00Z", "2026-11-19T09:00:00Z"),
        ("2026-11-20T09:00:00.123Z", "2026-11-19T09:00:00Z"),
    ],
)
def test_datetime_formats_accepted(
    server: Server, http: Client, tenant: Tenant, value: str, until: str
) -> None:
    r = bulk(http, tenant, body(params(1, appointmentDateTime=value)))
    assert r.status_code == 204, r.text
    inst = find_one(http, tenant, "appointmentId", "APPT-000001")
    assert inst["parameters"]["appointmentDateTime"] == value
    server.run_worker()
    # Step 20 waits until 24h before the appointment: this shows how the value was read.
    detail = get_instance(http, tenant, inst["id"])
    waits = wait_events(detail)
    assert [(w["stepId"], w["detail"]["until"]) for w in waits] == [(20, until)]


def test_empty_required_datetime_is_one_problem(server: Server, http: Client, tenant: Tenant) -> None:
    errors = errors_of(bulk(http, tenant, body(params(0, appointmentDateTime=""))))
    assert len(errors) == 1, errors
    assert errors[0].startswith("instances[0].parameters.appointmentDateTime: "), errors


def test_missing_required_parameter(server: Server, http: Client, tenant: Tenant) -> None:
    r = bulk(http, tenant, body(params(0), params(1, patientName=...)))
    assert errors_of(r) == ["instances[1].parameters.patientName: required parameter is missing"]
    assert counts(server, tenant)["journey_instances"] == 0


def test_empty_required_parameter(server: Server, http: Client, tenant: Tenant) -> None:
    r = bulk(http, tenant, body(params(0, patientId="  ")))
    assert errors_of(r) == ["instances[0].parameters.patientId: required parameter is empty"]


def test_null_required_parameter_counts_as_missing(server: Server, http: Client, tenant: Tenant) -> None:
    r = bulk(http, tenant, body(params(0, patientId=None)))
    assert errors_of(r) == ["instances[0].parameters.patientId: required parameter is missing"]


def test_every_missing_parameter_is_listed(server: Server, http: Client, tenant: Tenant) -> None:
    errors = errors_of(bulk(http, tenant, body({})))
    assert errors == [
        "instances[0].parameters.patientId: required parameter is missing",
        "instances[0].parameters.patientName: required parameter is missing",
        "instances[0].parameters.appointmentId: required parameter is missing",
        "instances[0].parameters.appointmentDateTime: required parameter is missing",
    ]


def test_unknown_parameter(server: Server, http: Client, tenant: Tenant) -> None:
    r = bulk(http, tenant, body(params(0), params(1, favoriteColor="blue")))
    assert errors_of(r) == [unknown_msg(1, "favoriteColor")]
    assert counts(server, tenant)["journey_instances"] == 0


@pytest.mark.parametrize(
    "value", [100000, 1.5, True, {"first": "John"}, ["John"]], ids=["int", "float", "bool", "object", "array"]
)
def test_non_string_value(server: Server, http: Client, tenant: Tenant, value: Any) -> None:
    r = bulk(http, tenant, body(params(0, patientId=value)))
    assert errors_of(r) == ["instances[0].parameters.patientId: must be a string"]
    assert counts(server, tenant)["journey_instances"] == 0


def test_invalid_phone(server: Server, http: Client, tenant: Tenant) -> None:
    r = bulk(http, tenant, body(params(0, phoneNumber="call me")))
    assert errors_of(r) == ['instances[0].parameters.phoneNumber: "call me" is not a valid phone number']


@pytest.mark.parametrize("tz", [None, ""], ids=["absent", "empty"])
def test_missing_time_zone_with_datetime_parameters(
    server: Server, http: Client, tenant: Tenant, tz: str | None
) -> None:
    payload = body(params(0), tz=None)
    if tz is not None:
        payload["timeZone"] = tz
    assert errors_of(bulk(http, tenant, payload)) == [
        "timeZone: required because this journey has datetime parameters "
        "(an IANA zone, e.g. 'America/Chicago' or 'UTC')"
    ]
    assert counts(server, tenant)["journey_instances"] == 0


def test_time_zone_not_required_without_datetime_parameters(server: Server, http: Client) -> None:
    tenant = server.tenant(NO_DATETIME_JOURNEY)
    r = bulk(http, tenant, {"flowId": None, "instances": [{"parameters": {"patientId": "1"}}]})
    assert r.status_code == 204, r.text
    assert counts(server, tenant) == {"journey_instances": 1, "instance_parameters": 1, "instance_events": 1}
    # A given time zone must still be a real one.
    r = bulk(http, tenant, {"timeZone": "Nowhere/Land", "instances": [{"parameters": {"patientId": "2"}}]})
    assert errors_of(r) == [
        "timeZone: \"Nowhere/Land\" is not an IANA time zone (e.g. 'America/Chicago' or 'UTC')"
    ]


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "CST6CDT7", "america/chicago ", "../../etc/passwd"])
def test_invalid_time_zone(server: Server, http: Client, tenant: Tenant, tz: str) -> None:
    errors = errors_of(bulk(http, tenant, body(params(0), tz=tz)))
    assert errors == [
        f"timeZone: {json.dumps(tz)} is not an IANA time zone (e.g. 'America/Chicago' or 'UTC')"
    ]
    assert counts(server, tenant)["journey_instances"] == 0


def test_non_string_time_zone(server: Server, http: Client, tenant: Tenant) -> None:
    payload = body(params(0))
    payload["timeZone"] = 5
    errors = errors_of(bulk(http, tenant, payload))
    assert len(errors) == 1 and errors[0].startswith("timeZone: "), errors


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "Asia/Kolkata", "America/Argentina/Buenos_Aires"])
def test_valid_time_zones(server: Server, http: Client, tenant: Tenant, tz: str) -> None:
    assert bulk(http, tenant, body(params(0), tz=tz)).status_code == 204


def test_duplicate_identifier_within_one_request(server: Server, http: Client, tenant: Tenant) -> None:
    r = bulk(
        http,
        tenant,
        body(
            params(0),
            params(1),
            params(2, appointmentId="APPT-000000"),
            params(3, appointmentId="APPT-000001"),
        ),
    )
    assert errors_of(r) == [
        duplicate_msg(2, "APPT-000000", 0),
        duplicate_msg(3, "APPT-000001", 1),
    ]
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


def test_identifier_with_active_instance_then_again_after_cancel(
    server: Server, http: Client, tenant: Tenant
) -> None:
    assert bulk(http, tenant, body(params(1))).status_code == 204
    first = find_one(http, tenant, "appointmentId", "APPT-000001")
    before = counts(server, tenant)

    r = bulk(http, tenant, body(params(2), params(1, patientName="Again")))
    assert errors_of(r) == [active_msg(1, "APPT-000001", first["id"])]
    assert counts(server, tenant) == before

    cancel(http, tenant, first["id"])
    r = bulk(http, tenant, body(params(2), params(1, patientName="Again")))
    assert r.status_code == 204, r.text
    found = search(http, tenant, param_equals("appointmentId", "APPT-000001"))
    assert [(i["status"], i["parameters"]["patientName"]) for i in found] == [
        ("InProgress", "Again"),
        ("Cancelled", "Patient 1"),
    ]


def test_identifier_of_completed_instance_can_start_again(
    server: Server, http: Client, tenant: Tenant
) -> None:
    # An appointment in the past: the worker runs the instance to its end.
    assert bulk(http, tenant, body(params(1, appointmentDateTime="2023-12-01 08:00:00"))).status_code == 204
    server.run_worker()
    assert find_one(http, tenant, "appointmentId", "APPT-000001")["status"] == "Completed"
    assert bulk(http, tenant, body(params(1))).status_code == 204
    statuses = [i["status"] for i in search(http, tenant, param_equals("appointmentId", "APPT-000001"))]
    assert sorted(statuses) == ["Completed", "InProgress"]


def test_flow_id_not_a_subflow(server: Server, http: Client, tenant: Tenant) -> None:
    r = bulk(http, tenant, body(params(0), flow_id="cancelled"))
    assert errors_of(r) == [
        'flowId: "cancelled" is not a subflow of journey "Appointment Reminder" (subflows: rescheduled)'
    ]
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


def test_flow_id_is_the_main_flow(server: Server, http: Client, tenant: Tenant) -> None:
    r = bulk(http, tenant, body(params(0), flow_id="main"))
    assert errors_of(r) == ['flowId: "main" is the main flow; use null to start the main flow']
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize("flow_id", [5, True, {"id": "rescheduled"}, ["rescheduled"]])
def test_flow_id_not_a_string(server: Server, http: Client, tenant: Tenant, flow_id: Any) -> None:
    payload = body(params(0))
    payload["flowId"] = flow_id
    assert errors_of(bulk(http, tenant, payload)) == [
        "flowId: must be null (main flow) or a subflow id string"
    ]
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


def test_flow_id_may_be_omitted(server: Server, http: Client, tenant: Tenant) -> None:
    payload = body(params(0))
    del payload["flowId"]
    assert bulk(http, tenant, payload).status_code == 204
    assert counts(server, tenant)["journey_instances"] == 1


@pytest.mark.parametrize("payload", [[SEED_BULK_BODY], "instances", 42, None, True], ids=repr)
def test_body_not_an_object(server: Server, http: Client, tenant: Tenant, payload: Any) -> None:
    r = bulk_raw(http, tenant, json.dumps(payload).encode())
    assert errors_of(r) == ["request body: must be a JSON object with flowId, timeZone and instances"]
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize(
    "raw",
    [b'{"flowId": null, "instances": [', b"{'flowId': None}", b"not json", b'{"a": 1} {"b": 2}', b"\xff\xfe"],
)
def test_invalid_json(server: Server, http: Client, tenant: Tenant, raw: bytes) -> None:
    errors = errors_of(bulk_raw(http, tenant, raw))
    assert len(errors) == 1
    assert errors[0].startswith("request body is not valid JSON"), errors
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize("raw", [b"", b"   \n"])
def test_empty_body(server: Server, http: Client, tenant: Tenant, raw: bytes) -> None:
    assert errors_of(bulk_raw(http, tenant, raw)) == ["request body is empty; expected a JSON object"]


def test_empty_instances_array(server: Server, http: Client, tenant: Tenant) -> None:
    assert errors_of(bulk(http, tenant, body())) == ["instances: must contain at least one instance"]
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize(
    "instances",
    [None, {"parameters": params(0)}, "all", 3, ...],
    ids=["null", "object", "string", "number", "absent"],
)
def test_instances_not_an_array(server: Server, http: Client, tenant: Tenant, instances: Any) -> None:
    payload: dict[str, Any] = {"flowId": None, "timeZone": "UTC"}
    if instances is not ...:
        payload["instances"] = instances
    assert errors_of(bulk(http, tenant, payload)) == [
        'instances: must be an array of {"parameters": {...}} objects'
    ]
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize(
    "entry",
    [{}, {"parameters": None}, {"parameters": "x"}, {"parameters": [params(0)]}, {"params": params(0)}],
)
def test_entry_without_parameters_object(
    server: Server, http: Client, tenant: Tenant, entry: dict[str, Any]
) -> None:
    payload = body(params(0))
    payload["instances"].append(entry)
    assert errors_of(bulk(http, tenant, payload)) == [
        "instances[1].parameters: must be an object of parameter names to string values"
    ]
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize("entry", [None, "x", 1, [params(0)]])
def test_entry_not_an_object(server: Server, http: Client, tenant: Tenant, entry: Any) -> None:
    payload = body(params(0))
    payload["instances"].append(entry)
    assert errors_of(bulk(http, tenant, payload)) == [
        "instances[1]: must be an object with a 'parameters' object"
    ]


def test_top_level_and_instance_errors_are_reported_together(
    server: Server, http: Client, tenant: Tenant
) -> None:
    payload = body(params(0), params(1, favoriteColor="blue"), flow_id="main", tz="Nowhere/Land")
    errors = errors_of(bulk(http, tenant, payload))
    assert errors == [
        'flowId: "main" is the main flow; use null to start the main flow',
        "timeZone: \"Nowhere/Land\" is not an IANA time zone (e.g. 'America/Chicago' or 'UTC')",
        unknown_msg(1, "favoriteColor"),
    ]


# ---------------------------------------------------------------- all or nothing
def test_one_bad_instance_among_many_writes_nothing(server: Server, http: Client, tenant: Tenant) -> None:
    assert bulk(http, tenant, SEED_BULK_BODY).status_code == 204
    before = counts(server, tenant)
    assert before["journey_instances"] == 2

    entries = [params(i) for i in range(500)]
    entries[437] = params(437, appointmentDateTime="2023-13-01 08:00:00")
    errors = errors_of(bulk(http, tenant, body(*entries)))
    assert len(errors) == 1
    assert errors[0].startswith(
        'instances[437].parameters.appointmentDateTime: "2023-13-01 08:00:00" is not a valid datetime'
    )
    assert counts(server, tenant) == before
    assert len(search(http, tenant)) == 2


def test_several_bad_instances_are_all_listed_and_nothing_is_written(
    server: Server, http: Client, tenant: Tenant
) -> None:
    assert bulk(http, tenant, body(params(9999))).status_code == 204
    existing = find_one(http, tenant, "appointmentId", "APPT-009999")
    before = counts(server, tenant)

    entries: list[Any] = [params(i) for i in range(100)]
    entries[3] = params(3, appointmentDateTime="2023-13-01 08:00:00")
    entries[10] = params(10, patientName=...)
    entries[20] = params(20, favoriteColor="blue")
    entries[30] = params(30, patientId=30)
    entries[40] = params(40, appointmentId="APPT-000000")
    entries[50] = params(50, appointmentId="APPT-009999")
    entries[60] = params(60, patientId={"id": "60"})
    payload = body(*entries)
    payload["instances"][70] = {"parameters": None}
    payload["instances"][80] = "not an object"

    errors = errors_of(bulk(http, tenant, payload))
    assert len(errors) == 9, errors
    assert errors[0].startswith(
        'instances[3].parameters.appointmentDateTime: "2023-13-01 08:00:00" is not a valid datetime'
    )
    assert errors[1:] == [
        "instances[10].parameters.patientName: required parameter is missing",
        unknown_msg(20, "favoriteColor"),
        "instances[30].parameters.patientId: must be a string",
        duplicate_msg(40, "APPT-000000", 0),
        "instances[60].parameters.patientId: must be a string",
        "instances[70].parameters: must be an object of parameter names to string values",
        "instances[80]: must be an object with a 'parameters' object",
        active_msg(50, "APPT-009999", existing["id"]),
    ]
    assert sorted(int(m.split("[", 1)[1].split("]", 1)[0]) for m in errors) == [
        3,
        10,
        20,
        30,
        40,
        50,
        60,
        70,
        80,
    ]
    assert counts(server, tenant) == before


def test_many_problems_are_capped(server: Server, http: Client, tenant: Tenant) -> None:
    entries = [params(i, patientId=i) for i in range(1500)]
    errors = errors_of(bulk(http, tenant, body(*entries)))
    assert len(errors) == 1001
    assert errors[0] == "instances[0].parameters.patientId: must be a string"
    assert errors[999] == "instances[999].parameters.patientId: must be a string"
    assert errors[1000] == "more than 1000 problems; the rest are not listed"
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


# ---------------------------------------------------------------- limits
def test_more_than_max_instances_is_rejected(server: Server, http: Client, tenant: Tenant) -> None:
    limit = server.settings.max_bulk_instances
    assert limit == 10_000
    payload = {"flowId": None, "timeZone": "UTC", "instances": [{"parameters": {}}] * (limit + 1)}
    assert errors_of(bulk(http, tenant, payload)) == [
        f"instances: {limit + 1} instances given; at most {limit} per request"
    ]
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


def test_body_over_10_mb_is_413(server: Server, http: Client, tenant: Tenant) -> None:
    assert server.settings.max_body_bytes == 10 * 1024 * 1024
    payload = body(params(0, patientName="x" * (11 * 1024 * 1024)))
    errors = errors_of(bulk(http, tenant, payload), status=413)
    assert errors == [f"request body is larger than the {10 * 1024 * 1024} byte limit"]
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


def test_chunked_body_over_10_mb_is_413(server: Server, http: Client, tenant: Tenant) -> None:
    # No Content-Length: the limit is enforced while the body streams in.
    raw = json.dumps(body(params(0, patientName="x" * (11 * 1024 * 1024)))).encode()

    def chunks() -> Any:
        for start in range(0, len(raw), 1024 * 1024):
            yield raw[start : start + 1024 * 1024]

    headers = {**tenant.headers, "Content-Type": "application/json"}
    r = http.post(tenant.url("/bulk"), content=chunks(), headers=headers)
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert errors_of(r, status=413) == [f"request body is larger than the {10 * 1024 * 1024} byte limit"]
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


def test_body_just_under_10_mb_is_accepted(server: Server, http: Client, tenant: Tenant) -> None:
    # Parameter values are capped at 1,000 characters, so a large body is many instances.
    entries = [params(i, patientName="x" * 990) for i in range(9_000)]
    payload = json.dumps(body(*entries)).encode()
    assert 9 * 1024 * 1024 < len(payload) < 10 * 1024 * 1024
    later = START + timedelta(days=36_500)  # keep these out of other tests' worker runs
    server.clock.set(later)
    try:
        r = bulk_raw(http, tenant, payload)
    finally:
        server.clock.set(START)
    assert r.status_code == 204, r.text[:200]
    assert counts(server, tenant)["journey_instances"] == 9_000


def test_longest_parameter_value_is_accepted_and_searchable(
    server: Server, http: Client, tenant: Tenant
) -> None:
    value = "long-" + secrets.token_urlsafe(800)[:995]  # exactly 1,000 incompressible characters
    assert len(value) == 1000
    r = bulk(http, tenant, body(params(0, appointmentId=value, patientName="é" * 1000)))
    assert r.status_code == 204, r.text[:500]
    assert find_one(http, tenant, "appointmentId", value)["parameters"]["appointmentId"] == value
    assert counts(server, tenant) == {"journey_instances": 1, "instance_parameters": 4, "instance_events": 1}


@pytest.mark.parametrize("name", ["patientName", "appointmentId"])
def test_too_long_parameter_value_is_a_clear_error(
    server: Server, http: Client, tenant: Tenant, name: str
) -> None:
    value = "long-" + secrets.token_urlsafe(6000)  # ~8,000 characters: over the 1,000 limit
    r = bulk(http, tenant, body(params(0), params(1, **{name: value})))
    assert errors_of(r) == [f"instances[1].parameters.{name}: is too long (at most 1000 characters)"]
    assert value not in r.text
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


NUL_PROBLEM = "must not contain NUL characters (\\u0000)"


@pytest.mark.parametrize("name", ["patientName", "appointmentId", "appointmentDateTime", "phoneNumber"])
def test_nul_in_a_value_or_identifier_is_a_clear_400(
    server: Server, http: Client, tenant: Tenant, name: str
) -> None:
    # PostgreSQL cannot store NUL in text (it was a 500 there, and SQLite stored it).
    r = bulk(http, tenant, body(params(0), params(1, **{name: "x\u0000y"})))
    assert errors_of(r) == [f"instances[1].parameters.{name}: {NUL_PROBLEM}"]
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


def test_nul_in_a_subflow_value_or_identifier_is_a_clear_400(
    server: Server, http: Client, tenant: Tenant
) -> None:
    _start(server, http, tenant, params(1))
    before = counts(server, tenant)
    entries = ({"appointmentId": "APPT-000001", "patientName": "a\u0000"}, {"appointmentId": "APPT\u0000"})
    r = bulk(http, tenant, body(*entries, flow_id="rescheduled"))
    assert errors_of(r) == [
        f"instances[0].parameters.patientName: {NUL_PROBLEM}",
        f"instances[1].parameters.appointmentId: {NUL_PROBLEM}",
    ]
    assert counts(server, tenant) == before


def test_nul_in_the_path_or_query_is_a_clear_400(server: Server, http: Client, tenant: Tenant) -> None:
    bad_bot = f"/chatbotapi/external/orgs/{tenant.org_id}/journeys/x%00y/instances"
    r = http.post(bad_bot + "/bulk", json=body(params(0)), headers=tenant.headers)
    assert errors_of(r) == [f"chatBotId: {NUL_PROBLEM}"]
    r = http.post(bad_bot + "/search", json={}, headers=tenant.headers)
    assert errors_of(r) == [f"chatBotId: {NUL_PROBLEM}"]
    r = http.get(tenant.url("/a%00b"), headers=tenant.headers)
    assert errors_of(r) == [f"journeyInstanceId: {NUL_PROBLEM}"]
    r = http.delete(tenant.url("/a%00b/execution"), headers=tenant.headers)
    assert errors_of(r) == [f"journeyInstanceId: {NUL_PROBLEM}"]
    r = http.get(f"/api/orgs/{tenant.org_id}/replies", params={"unmatched": "\u0000"}, headers=tenant.headers)
    assert errors_of(r) == [f"query parameter 'unmatched': {NUL_PROBLEM}"]
    r = http.get(f"/chatbotapi/external/orgs/{tenant.org_id}%00/journeys", headers=tenant.headers)
    assert errors_of(r) == [f"orgId: {NUL_PROBLEM}"]
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


def test_ten_thousand_instances_in_one_request(server: Server, http: Client, tenant: Tenant) -> None:
    n = server.settings.max_bulk_instances
    payload = body(*(params(i) for i in range(n)))
    # Created with the clock a century ahead, so their first steps are not due for the rest of
    # the session: the worker runs that other tests trigger do not have to step 10,000 instances.
    later = START + timedelta(days=36_500)
    server.clock.set(later)
    try:
        r = bulk(http, tenant, payload)
    finally:
        server.clock.set(START)
    assert r.status_code == 204, r.text[:500]
    assert counts(server, tenant) == {
        "journey_instances": n,
        "instance_parameters": 4 * n,
        "instance_events": n,
    }
    page = search(http, tenant, take=1000)
    assert len(page) == 1000
    assert len({i["journeyBatchId"] for i in page}) == 1
    assert {i["status"] for i in page} == {"InProgress"}
    assert {datetime.fromisoformat(i["createdDateTime"]) for i in page} == {later}
    last = find_one(http, tenant, "appointmentId", f"APPT-{n - 1:06d}")
    assert last["parameters"] == params(n - 1)
    assert last["journeyBatchId"] == page[0]["journeyBatchId"]
    statuses = search(
        http, tenant, {"type": "JourneyStatusSpecification", "status": "InProgress"}, take=1000, skip=n - 1
    )
    assert len(statuses) == 1


# ---------------------------------------------------------------- subflows
def _start(server: Server, http: Client, tenant: Tenant, *entries: dict[str, Any]) -> list[dict[str, Any]]:
    assert bulk(http, tenant, body(*entries)).status_code == 204
    server.run_worker()
    return [find_one(http, tenant, "appointmentId", e["appointmentId"]) for e in entries]


def test_subflow_reschedules_an_instance(server: Server, http: Client, tenant: Tenant) -> None:
    (inst,) = _start(server, http, tenant, params(1))
    assert inst["lastStepExecuted"]["flowName"] == "Main Flow"
    assert inst["lastStepExecuted"]["stepId"] == 20
    before = counts(server, tenant)

    r = bulk(
        http,
        tenant,
        body(
            {"appointmentId": "APPT-000001", "appointmentDateTime": "2026-11-27 10:30:00"},
            flow_id="rescheduled",
        ),
    )
    assert r.status_code == 204, r.text
    assert r.content == b""

    after = counts(server, tenant)
    assert after["journey_instances"] == before["journey_instances"]
    assert after["instance_parameters"] == before["instance_parameters"]  # replaced, not added
    assert after["instance_events"] == before["instance_events"] + 1

    detail = get_instance(http, tenant, inst["id"])
    assert detail["status"] == "InProgress"
    assert detail["journeyBatchId"] == inst["journeyBatchId"]
    assert detail["parameters"] == params(1, appointmentDateTime="2026-11-27 10:30:00")
    started = [e for e in detail["events"] if e["type"] == "subflow_started"]
    assert len(started) == 1
    assert started[0]["flowId"] == "rescheduled"
    assert started[0]["flowName"] == "Appointment Rescheduled"
    assert started[0]["detail"] == {"changedParameters": ["appointmentDateTime"]}

    server.run_worker()
    detail = get_instance(http, tenant, inst["id"])
    assert detail["status"] == "InProgress"
    assert detail["lastStepExecuted"]["flowName"] == "Appointment Rescheduled"
    assert detail["lastStepExecuted"]["stepId"] == 110
    # The old wait (24h before the old time) was interrupted; the new one uses the new time.
    assert [(w["stepId"], w["detail"]["until"]) for w in wait_events(detail)] == [
        (20, "2026-11-19T15:00:00Z"),
        (110, "2026-11-26T16:30:00Z"),
    ]

    assert [
        i["id"] for i in search(http, tenant, param_equals("appointmentDateTime", "2026-11-27 10:30:00"))
    ] == [inst["id"]]
    assert search(http, tenant, param_equals("appointmentDateTime", "2026-11-20 09:00:00")) == []


def test_subflow_entries_need_only_the_identifier(server: Server, http: Client, tenant: Tenant) -> None:
    a, b = _start(server, http, tenant, params(1), params(2))
    before = counts(server, tenant)
    r = bulk(
        http,
        tenant,
        body({"appointmentId": "APPT-000001"}, {"APPOINTMENTID": "APPT-000002"}, flow_id="rescheduled"),
    )
    assert r.status_code == 204, r.text
    for inst, n in ((a, 1), (b, 2)):
        detail = get_instance(http, tenant, inst["id"])
        assert detail["parameters"] == params(n)
        started = [e for e in detail["events"] if e["type"] == "subflow_started"]
        assert [s["detail"] for s in started] == [{"changedParameters": []}]
    after = counts(server, tenant)
    assert after["instance_parameters"] == before["instance_parameters"]
    assert after["instance_events"] == before["instance_events"] + 2


def test_subflow_adds_an_optional_parameter(server: Server, http: Client, tenant: Tenant) -> None:
    (inst,) = _start(server, http, tenant, params(1))
    before = counts(server, tenant)
    r = bulk(
        http,
        tenant,
        body({"appointmentId": "APPT-000001", "phoneNumber": "+15550100123"}, flow_id="rescheduled"),
    )
    assert r.status_code == 204, r.text
    assert get_instance(http, tenant, inst["id"])["parameters"]["phoneNumber"] == "+15550100123"
    assert counts(server, tenant)["instance_parameters"] == before["instance_parameters"] + 1
    assert find_one(http, tenant, "phoneNumber", "+15550100123")["id"] == inst["id"]
    server.run_worker()
    detail = get_instance(http, tenant, inst["id"])
    assert [e["stepId"] for e in detail["events"] if e["type"] == "sms_queued"] == [100]


def test_subflow_local_datetime_is_re_expressed_in_the_instance_zone(
    server: Server, http: Client, tenant: Tenant
) -> None:
    (inst,) = _start(server, http, tenant, params(1))  # started in America/Chicago
    r = bulk(
        http,
        tenant,
        body(
            {"appointmentId": "APPT-000001", "appointmentDateTime": "2026-11-27 16:30:00"},
            flow_id="rescheduled",
            tz="UTC",
        ),
    )
    assert r.status_code == 204, r.text
    assert (
        get_instance(http, tenant, inst["id"])["parameters"]["appointmentDateTime"] == "2026-11-27 10:30:00"
    )


def test_subflow_without_matching_instance_names_the_index(
    server: Server, http: Client, tenant: Tenant
) -> None:
    (inst,) = _start(server, http, tenant, params(1))
    before = counts(server, tenant)
    r = bulk(
        http,
        tenant,
        body(
            {"appointmentId": "APPT-000001", "appointmentDateTime": "2026-11-27 10:30:00"},
            {"appointmentId": "NO-SUCH-APPT"},
            flow_id="rescheduled",
        ),
    )
    assert errors_of(r) == ['instances[1]: no active instance found for appointmentId "NO-SUCH-APPT"']
    # All or nothing: the matching instance was not touched either.
    assert counts(server, tenant) == before
    detail = get_instance(http, tenant, inst["id"])
    assert detail["parameters"] == params(1)
    assert "subflow_started" not in [e["type"] for e in detail["events"]]
    server.run_worker()
    assert get_instance(http, tenant, inst["id"])["lastStepExecuted"]["flowName"] == "Main Flow"


def test_subflow_for_cancelled_instance(server: Server, http: Client, tenant: Tenant) -> None:
    (inst,) = _start(server, http, tenant, params(1))
    cancel(http, tenant, inst["id"])
    before = counts(server, tenant)
    r = bulk(http, tenant, body({"appointmentId": "APPT-000001"}, flow_id="rescheduled"))
    assert errors_of(r) == ['instances[0]: no active instance found for appointmentId "APPT-000001"']
    assert counts(server, tenant) == before
    assert get_instance(http, tenant, inst["id"])["status"] == "Cancelled"


def test_subflow_for_completed_instance(server: Server, http: Client, tenant: Tenant) -> None:
    (inst,) = _start(server, http, tenant, params(1, appointmentDateTime="2023-12-01 08:00:00"))
    assert inst["status"] == "Completed"
    r = bulk(http, tenant, body({"appointmentId": "APPT-000001"}, flow_id="rescheduled"))
    assert errors_of(r) == ['instances[0]: no active instance found for appointmentId "APPT-000001"']


def test_subflow_entry_validation(server: Server, http: Client, tenant: Tenant) -> None:
    _start(server, http, tenant, params(1), params(2))
    before = counts(server, tenant)
    r = bulk(
        http,
        tenant,
        body(
            {"patientName": "No identifier"},
            {"appointmentId": "APPT-000001", "appointmentDateTime": "2026-02-30 10:00:00"},
            {"appointmentId": "APPT-000002", "favoriteColor": "blue"},
            {"appointmentId": "APPT-000002"},
            {"appointmentId": "APPT-000002", "patientName": "Twice"},
            flow_id="rescheduled",
        ),
    )
    errors = errors_of(r)
    assert len(errors) == 4, errors
    assert errors[0] == "instances[0].parameters.appointmentId: required parameter is missing"
    assert errors[1].startswith(
        'instances[1].parameters.appointmentDateTime: "2026-02-30 10:00:00" is not a valid datetime'
    )
    assert errors[2] == unknown_msg(2, "favoriteColor")
    assert errors[3] == duplicate_msg(4, "APPT-000002", 3)
    assert counts(server, tenant) == before


def test_subflow_with_an_out_of_range_datetime_is_a_clear_400(
    server: Server, http: Client, tenant: Tenant
) -> None:
    _start(server, http, tenant, params(1))
    before = counts(server, tenant)
    for value in ("9999-12-31 23:59:59", "0001-01-01T00:00:00+14:00", "２０２６-12-01 08:00:00"):
        entry = {"appointmentId": "APPT-000001", "appointmentDateTime": value}
        r = bulk(http, tenant, body(entry, flow_id="rescheduled"))
        [error] = errors_of(r)
        shown = json.dumps(value, ensure_ascii=False)
        assert error.startswith(f"instances[0].parameters.appointmentDateTime: {shown} "), error
    assert counts(server, tenant) == before


def test_subflow_requires_time_zone(server: Server, http: Client, tenant: Tenant) -> None:
    _start(server, http, tenant, params(1))
    r = bulk(http, tenant, body({"appointmentId": "APPT-000001"}, flow_id="rescheduled", tz=None))
    assert errors_of(r) == [
        "timeZone: required because this journey has datetime parameters "
        "(an IANA zone, e.g. 'America/Chicago' or 'UTC')"
    ]


def test_subflow_duplicate_identifier_in_one_request(server: Server, http: Client, tenant: Tenant) -> None:
    _start(server, http, tenant, params(1))
    before = counts(server, tenant)
    r = bulk(
        http,
        tenant,
        body({"appointmentId": "APPT-000001"}, {"appointmentId": "APPT-000001"}, flow_id="rescheduled"),
    )
    assert errors_of(r) == [duplicate_msg(1, "APPT-000001", 0)]
    assert counts(server, tenant) == before


def test_subflow_twice_restarts_the_subflow(server: Server, http: Client, tenant: Tenant) -> None:
    (inst,) = _start(server, http, tenant, params(1))
    for when in ("2026-11-27 10:30:00", "2026-11-28 11:00:00"):
        r = bulk(
            http,
            tenant,
            body({"appointmentId": "APPT-000001", "appointmentDateTime": when}, flow_id="rescheduled"),
        )
        assert r.status_code == 204, r.text
        server.run_worker()
    detail = get_instance(http, tenant, inst["id"])
    assert detail["parameters"]["appointmentDateTime"] == "2026-11-28 11:00:00"
    assert [e["type"] for e in detail["events"]].count("subflow_started") == 2
    assert wait_events(detail)[-1]["detail"]["until"] == "2026-11-27T17:00:00Z"
    assert search(http, tenant, param_equals("appointmentDateTime", "2026-11-27 10:30:00")) == []


# ---------------------------------------------------------------- journey and auth
def test_unknown_chat_bot_id_is_404(server: Server, http: Client, tenant: Tenant) -> None:
    unknown = str(uuid.uuid4())
    url = f"/chatbotapi/external/orgs/{tenant.org_id}/journeys/{unknown}/instances/bulk"
    r = http.post(url, json=SEED_BULK_BODY, headers=tenant.headers)
    assert errors_of(r, status=404) == [f"journey {unknown} not found"]
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


def test_other_orgs_journey_is_404(server: Server, http: Client, tenant: Tenant) -> None:
    other = server.tenant()
    url = f"/chatbotapi/external/orgs/{tenant.org_id}/journeys/{other.journey_id}/instances/bulk"
    r = http.post(url, json=SEED_BULK_BODY, headers=tenant.headers)
    assert errors_of(r, status=404) == [f"journey {other.journey_id} not found"]
    assert counts(server, other) == dict.fromkeys(TABLES, 0)


def test_bulk_needs_the_create_scope(server: Server, http: Client, tenant: Tenant) -> None:
    read_only = server.new_token(tenant.org_id, scopes=["read.journey_instances"])
    r = http.post(tenant.url("/bulk"), json=SEED_BULK_BODY, headers={"Authorization": f"Bearer {read_only}"})
    errors_of(r, status=403)
    r = http.post(tenant.url("/bulk"), json=SEED_BULK_BODY)
    errors_of(r, status=401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert counts(server, tenant) == dict.fromkeys(TABLES, 0)


def test_seed_body_with_one_broken_value_names_only_it(server: Server, http: Client, tenant: Tenant) -> None:
    # The seed's body with one value broken: only that index and parameter are named.
    payload = copy.deepcopy(SEED_BULK_BODY)
    payload["instances"][1]["parameters"]["appointmentDateTime"] = "2023-12-01 8:30"
    errors = errors_of(bulk(http, tenant, payload))
    assert len(errors) == 1
    assert errors[0].startswith(
        'instances[1].parameters.appointmentDateTime: "2023-12-01 8:30" is not a valid'
    )
