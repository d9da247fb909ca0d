"""POST …/instances/search: the seed's body verbatim, every specification and operator, paging,
every error, org isolation, and the index the search runs on."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from httpx import Client
from support.api import SEED_BULK_BODY, SEED_SEARCH_BODY, bulk
from support.server import EXAMPLE, Server, Tenant

CHICAGO = ZoneInfo("America/Chicago")
INSTANCE_KEYS = {
    "id",
    "journeyBotName",
    "createdDateTime",
    "startDateTime",
    "journeyBatchId",
    "status",
    "lastStepExecuted",
}
STATUS_LIST = "InProgress, Completed, Cancelled, Failed"
SPEC_TYPES = (
    "AndSpecification, OrSpecification, NotSpecification, JourneyParameterSpecification, "
    "JourneyStatusSpecification, JourneyDateSpecification"
)
OPERATORS = "equals, notEquals, contains, startsWith, in"


# ---------------------------------------------------------------- helpers
def local(moment: datetime) -> str:
    """A moment as an America/Chicago local `YYYY-MM-DD HH:MM:SS` string."""
    return moment.astimezone(CHICAGO).strftime("%Y-%m-%d %H:%M:%S")


def parse_z(value: str) -> datetime:
    assert isinstance(value, str) and value.endswith("Z"), value
    parsed = datetime.fromisoformat(value[:-1] + "+00:00")
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def params(
    n: int,
    name: str,
    appointment: str = "2023-12-01 08:00:00",
    phone: str | None = None,
) -> dict[str, Any]:
    p = {
        "patientId": f"P{n:06d}",
        "patientName": name,
        "appointmentId": f"APT-{n:06d}",
        "appointmentDateTime": appointment,
    }
    if phone is not None:
        p["phoneNumber"] = phone
    return {"parameters": p}


def search(http: Client, tenant: Tenant, body: Any) -> list[dict[str, Any]]:
    r = http.post(tenant.url("/search"), json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    data = r.json()
    assert isinstance(data, list)
    return data


def search_error(http: Client, tenant: Tenant, body: Any) -> list[str]:
    r = http.post(tenant.url("/search"), json=body, headers=tenant.headers)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    errors = r.json()
    assert isinstance(errors, list) and errors and all(isinstance(e, str) for e in errors)
    return errors


def pspec(name: str, operator: str, operand: Any) -> dict[str, Any]:
    return {
        "type": "JourneyParameterSpecification",
        "parameterName": name,
        "operator": operator,
        "rightOperand": operand,
    }


def names_for(http: Client, tenant: Tenant, spec: dict[str, Any] | None) -> list[str]:
    body: dict[str, Any] = {"includeParameters": True, "take": 1000}
    if spec is not None:
        body["filterSpecification"] = spec
    return sorted(i["parameters"]["patientName"] for i in search(http, tenant, body))


def second_journey_text(name: str) -> str:
    text = EXAMPLE.read_text()
    assert "name: Appointment Reminder\n" in text
    return text.replace("name: Appointment Reminder\n", f"name: {name}\n", 1)


@pytest.fixture()
def people(http: Client, tenant: Tenant) -> Tenant:
    """A tenant with five instances whose names exercise case, prefixes and LIKE wildcards."""
    bulk(
        http,
        tenant,
        [
            params(1, "John Smith", phone="+1 312 555 0101"),
            params(2, "Jane Green"),
            params(3, "Johnny Appleseed", phone="+1 312 555 0103"),
            params(4, "100% Real_Name"),
            params(5, "Ünal Özdemir"),
        ],
    )
    return tenant


ALL_PEOPLE = sorted(["John Smith", "Jane Green", "Johnny Appleseed", "100% Real_Name", "Ünal Özdemir"])


# ---------------------------------------------------------------- the seed's bodies
def test_seed_search_body_verbatim_finds_john_smith(server: Server, http: Client, tenant: Tenant) -> None:
    created = server.clock.now()
    r = http.post(tenant.url("/bulk"), json=SEED_BULK_BODY, headers=tenant.headers)
    assert r.status_code == 204, r.text

    r = http.post(tenant.url("/search"), json=SEED_SEARCH_BODY, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    found = r.json()
    assert len(found) == 1
    inst = found[0]
    assert set(inst) == INSTANCE_KEYS | {"parameters"}
    assert inst["journeyBotName"] == "Appointment Reminder"
    assert inst["status"] == "InProgress"
    assert inst["lastStepExecuted"] is None
    assert inst["parameters"] == SEED_BULK_BODY["instances"][0]["parameters"]
    assert parse_z(inst["createdDateTime"]) == created
    assert parse_z(inst["startDateTime"]) == created
    assert isinstance(inst["id"], str) and inst["id"]
    assert isinstance(inst["journeyBatchId"], str) and inst["journeyBatchId"]

    # Both seed instances came from one request: one batch id.
    everyone = search(http, tenant, {"includeParameters": True})
    assert sorted(i["parameters"]["patientName"] for i in everyone) == ["Jane Green", "John Smith"]
    assert {i["journeyBatchId"] for i in everyone} == {inst["journeyBatchId"]}
    assert server.count("journey_instances", tenant.org_id) == 2


def test_last_step_executed_after_the_worker_ran(server: Server, http: Client, tenant: Tenant) -> None:
    now = server.clock.now()
    appointment = local(now + timedelta(days=5))
    bulk(http, tenant, [params(1, "John Smith", appointment, phone="+1 312 555 0101")])
    body = {
        "filterSpecification": pspec("patientName", "equals", "John Smith"),
        "includeParameters": True,
    }
    before = search(http, tenant, body)
    assert len(before) == 1 and before[0]["lastStepExecuted"] is None

    server.run_worker()  # step 10 sends, step 20 waits until 24h before the appointment
    ran_at = server.clock.now()
    after = search(http, tenant, body)
    assert len(after) == 1
    inst = after[0]
    assert set(inst) == INSTANCE_KEYS | {"parameters"}
    assert inst["id"] == before[0]["id"]
    assert inst["status"] == "InProgress"
    last = inst["lastStepExecuted"]
    assert set(last) == {"eventDateTime", "flowName", "stepId"}
    assert last["flowName"] == "Main Flow"
    assert last["stepId"] == 20
    assert parse_z(last["eventDateTime"]) == ran_at
    assert inst["parameters"] == {
        "patientId": "P000001",
        "patientName": "John Smith",
        "appointmentId": "APT-000001",
        "appointmentDateTime": appointment,
        "phoneNumber": "+1 312 555 0101",
    }
    assert server.count("outbox", tenant.org_id) == 1


@pytest.mark.parametrize("include", [False, "absent"])
def test_parameters_omitted_unless_included(http: Client, people: Tenant, include: Any) -> None:
    body: dict[str, Any] = {"filterSpecification": pspec("patientName", "equals", "John Smith")}
    if include != "absent":
        body["includeParameters"] = include
    found = search(http, people, body)
    assert len(found) == 1
    assert set(found[0]) == INSTANCE_KEYS
    assert "parameters" not in found[0]


# ---------------------------------------------------------------- operators
@pytest.mark.parametrize(
    ("name", "operator", "operand", "expected"),
    [
        ("patientName", "equals", "John Smith", ["John Smith"]),
        ("patientName", "equals", "john smith", []),  # values are exact (case-sensitive)
        ("patientName", "equals", "John Smith ", []),
        ("patientName", "equals", "John", []),
        ("patientName", "equals", "Ünal Özdemir", ["Ünal Özdemir"]),
        ("patientName", "notEquals", "John Smith", sorted(set(ALL_PEOPLE) - {"John Smith"})),
        ("patientName", "notEquals", "john smith", ALL_PEOPLE),
        ("patientName", "contains", "ohn", ["John Smith", "Johnny Appleseed"]),
        ("patientName", "contains", "ohn Smi", ["John Smith"]),
        ("patientName", "contains", "OHN", []),
        ("patientName", "contains", "%", ["100% Real_Name"]),  # no LIKE wildcards
        ("patientName", "contains", "_", ["100% Real_Name"]),
        ("patientName", "contains", "zdem", ["Ünal Özdemir"]),
        ("patientName", "startsWith", "John", ["John Smith", "Johnny Appleseed"]),
        ("patientName", "startsWith", "Johnny", ["Johnny Appleseed"]),
        ("patientName", "startsWith", "john", []),
        ("patientName", "startsWith", "J%", []),
        ("patientName", "startsWith", "100%", ["100% Real_Name"]),
        ("patientName", "startsWith", "Ün", ["Ünal Özdemir"]),
        ("patientName", "startsWith", "Smith", []),
        ("patientName", "in", ["John Smith", "Jane Green", "Nobody"], ["Jane Green", "John Smith"]),
        ("patientName", "in", ["john smith"], []),
        ("patientName", "in", [], []),
        ("patientId", "in", ["P000002", "P000005"], ["Jane Green", "Ünal Özdemir"]),
        ("appointmentId", "equals", "APT-000003", ["Johnny Appleseed"]),
        ("phoneNumber", "equals", "+1 312 555 0103", ["Johnny Appleseed"]),
        ("phoneNumber", "startsWith", "+1 312", ["John Smith", "Johnny Appleseed"]),
        # Instances without the (optional) parameter are "not equal" to any value.
        ("phoneNumber", "notEquals", "+1 312 555 0101", sorted(set(ALL_PEOPLE) - {"John Smith"})),
    ],
)
def test_operator(
    http: Client, people: Tenant, name: str, operator: str, operand: Any, expected: list[str]
) -> None:
    assert names_for(http, people, pspec(name, operator, operand)) == sorted(expected)


@pytest.mark.parametrize("name", ["patientName", "PatientName", "PATIENTNAME", "patientname", "pAtIeNtNaMe"])
def test_parameter_names_are_case_insensitive(http: Client, people: Tenant, name: str) -> None:
    assert names_for(http, people, pspec(name, "equals", "Jane Green")) == ["Jane Green"]


def test_no_filter_returns_all_of_the_journeys_instances(http: Client, people: Tenant) -> None:
    assert names_for(http, people, None) == ALL_PEOPLE
    assert len(search(http, people, {})) == 5
    assert len(search(http, people, {"filterSpecification": None})) == 5


# ---------------------------------------------------------------- composition
def test_and_or_not_and_nesting(http: Client, people: Tenant) -> None:
    john = pspec("patientName", "startsWith", "John")
    has_phone_0101 = pspec("phoneNumber", "equals", "+1 312 555 0101")
    jane = pspec("patientName", "equals", "Jane Green")

    assert names_for(
        http, people, {"type": "AndSpecification", "specifications": [john, has_phone_0101]}
    ) == ["John Smith"]
    assert names_for(http, people, {"type": "OrSpecification", "specifications": [jane, has_phone_0101]}) == [
        "Jane Green",
        "John Smith",
    ]
    assert names_for(http, people, {"type": "NotSpecification", "specification": john}) == sorted(
        ["Jane Green", "100% Real_Name", "Ünal Özdemir"]
    )
    nested = {
        "type": "OrSpecification",
        "specifications": [
            {
                "type": "AndSpecification",
                "specifications": [
                    john,
                    {"type": "NotSpecification", "specification": has_phone_0101},
                ],
            },
            {
                "type": "NotSpecification",
                "specification": {
                    "type": "OrSpecification",
                    "specifications": [john, jane, pspec("patientId", "in", ["P000004"])],
                },
            },
        ],
    }
    assert names_for(http, people, nested) == ["Johnny Appleseed", "Ünal Özdemir"]
    double_not = {
        "type": "NotSpecification",
        "specification": {"type": "NotSpecification", "specification": jane},
    }
    assert names_for(http, people, double_not) == ["Jane Green"]


def test_empty_and_matches_all_and_empty_or_matches_none(http: Client, people: Tenant) -> None:
    assert names_for(http, people, {"type": "AndSpecification", "specifications": []}) == ALL_PEOPLE
    assert names_for(http, people, {"type": "OrSpecification", "specifications": []}) == []


def test_journey_status_specification(server: Server, http: Client, tenant: Tenant) -> None:
    future = local(server.clock.now() + timedelta(days=5))
    bulk(
        http,
        tenant,
        [
            params(1, "Waiting Wanda", future),
            params(2, "Cancelled Carl", future),
            params(3, "Past Patty", "2023-12-01 08:00:00"),  # every wait is in the past
        ],
    )

    def status(s: str) -> list[str]:
        return names_for(http, tenant, {"type": "JourneyStatusSpecification", "status": s})

    assert status("InProgress") == ["Cancelled Carl", "Past Patty", "Waiting Wanda"]
    assert status("Completed") == []

    carl = search(http, tenant, {"filterSpecification": pspec("patientName", "equals", "Cancelled Carl")})[0]
    r = http.delete(tenant.url(f"/{carl['id']}/execution"), headers=tenant.headers)
    assert r.status_code == 204, r.text
    server.run_worker()

    assert status("InProgress") == ["Waiting Wanda"]
    assert status("Cancelled") == ["Cancelled Carl"]
    assert status("Completed") == ["Past Patty"]
    assert status("Failed") == []
    patty = search(http, tenant, {"filterSpecification": pspec("patientName", "equals", "Past Patty")})[0]
    assert patty["status"] == "Completed"
    assert patty["lastStepExecuted"]["stepId"] == 50
    assert patty["lastStepExecuted"]["flowName"] == "Main Flow"

    # Status and parameter specifications combine.
    combined = {
        "type": "AndSpecification",
        "specifications": [
            {
                "type": "NotSpecification",
                "specification": {"type": "JourneyStatusSpecification", "status": "InProgress"},
            },
            pspec("patientName", "contains", "a"),
        ],
    }
    assert names_for(http, tenant, combined) == ["Cancelled Carl", "Past Patty"]


# ---------------------------------------------------------------- order and paging
def test_newest_first_across_requests(server: Server, http: Client, tenant: Tenant) -> None:
    batches = []
    for i in range(3):
        bulk(http, tenant, [params(10 * i + 1, f"Batch{i} A"), params(10 * i + 2, f"Batch{i} B")])
        batches.append(server.clock.now())
        server.clock.advance(timedelta(seconds=1))
    found = search(http, tenant, {"includeParameters": True})
    assert len(found) == 6
    created = [parse_z(i["createdDateTime"]) for i in found]
    assert created == [batches[2]] * 2 + [batches[1]] * 2 + [batches[0]] * 2
    prefixes = [i["parameters"]["patientName"].split()[0] for i in found]
    assert prefixes == ["Batch2", "Batch2", "Batch1", "Batch1", "Batch0", "Batch0"]
    assert len({i["journeyBatchId"] for i in found}) == 3

    ids = [i["id"] for i in found]
    page = search(http, tenant, {"skip": 1, "take": 2})
    assert [i["id"] for i in page] == ids[1:3]
    assert [i["id"] for i in search(http, tenant, {"skip": 4, "take": 100})] == ids[4:]
    assert search(http, tenant, {"skip": 6}) == []
    assert search(http, tenant, {"skip": 1000}) == []


def test_take_defaults_to_100_and_allows_1000(http: Client, tenant: Tenant) -> None:
    bulk(http, tenant, [params(n, f"Patient {n}") for n in range(101)])
    assert len(search(http, tenant, {})) == 100
    everyone = search(http, tenant, {"take": 1000})
    assert len(everyone) == 101
    assert [i["id"] for i in search(http, tenant, {"skip": 100})] == [everyone[100]["id"]]
    assert [i["id"] for i in search(http, tenant, {"take": 100})] == [i["id"] for i in everyone[:100]]
    assert search(http, tenant, {"skip": 2**31 - 1}) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"take": 1001}, "take: must be a whole number from 1 to 1000"),
        ({"take": 0}, "take: must be a whole number from 1 to 1000"),
        ({"take": -5}, "take: must be a whole number from 1 to 1000"),
        ({"take": "10"}, "take: must be a whole number from 1 to 1000"),
        ({"take": 2.5}, "take: must be a whole number from 1 to 1000"),
        ({"take": True}, "take: must be a whole number from 1 to 1000"),
        ({"skip": -1}, "skip: must be a whole number from 0 to 2147483647"),
        ({"skip": "1"}, "skip: must be a whole number from 0 to 2147483647"),
        ({"skip": 2**31}, "skip: must be a whole number from 0 to 2147483647"),
        # past what the databases' OFFSET takes (it was a 500 on SQLite)
        ({"skip": 2**63}, "skip: must be a whole number from 0 to 2147483647"),
        ({"skip": 2**64 - 1}, "skip: must be a whole number from 0 to 2147483647"),
        ({"includeParameters": "yes"}, "includeParameters: must be true or false"),
        # Documented as an integer / a boolean: null is neither (it was taken as the default).
        ({"take": None}, "take: must be a whole number from 1 to 1000"),
        ({"skip": None}, "skip: must be a whole number from 0 to 2147483647"),
        ({"includeParameters": None}, "includeParameters: must be true or false"),
    ],
)
def test_paging_and_flag_errors(http: Client, tenant: Tenant, extra: dict[str, Any], message: str) -> None:
    assert search_error(http, tenant, {**copy.deepcopy(SEED_SEARCH_BODY), **extra}) == [message]


# ---------------------------------------------------------------- errors
def test_unknown_specification_type_is_named(http: Client, tenant: Tenant) -> None:
    errors = search_error(
        http, tenant, {"filterSpecification": {"type": "FuzzySpecification"}, "includeParameters": True}
    )
    assert errors == [
        "filterSpecification.type: unknown specification type 'FuzzySpecification' "
        f"(expected one of: {SPEC_TYPES})"
    ]
    nested = {
        "filterSpecification": {
            "type": "AndSpecification",
            "specifications": [pspec("patientName", "equals", "x"), {"type": "RegexSpecification"}],
        }
    }
    errors = search_error(http, tenant, nested)
    assert len(errors) == 1
    assert errors[0].startswith("filterSpecification.specifications[1].type: ")
    assert "'RegexSpecification'" in errors[0]
    missing = search_error(http, tenant, {"filterSpecification": {"specifications": []}})
    assert missing == [f"filterSpecification.type: missing (expected one of: {SPEC_TYPES})"]


def test_unknown_operator_is_named(http: Client, tenant: Tenant) -> None:
    body = {"filterSpecification": pspec("patientName", "like", "J%")}
    assert search_error(http, tenant, body) == [
        f"filterSpecification.operator: unknown operator 'like' (expected one of: {OPERATORS})"
    ]
    # Operators are exact: "Equals" is not "equals".
    body = {"filterSpecification": pspec("patientName", "Equals", "John Smith")}
    (error,) = search_error(http, tenant, body)
    assert "unknown operator 'Equals'" in error


def test_unknown_parameter_name(http: Client, tenant: Tenant) -> None:
    body = {
        "filterSpecification": {
            "type": "AndSpecification",
            "specifications": [pspec("patientNam", "equals", "John Smith")],
        }
    }
    assert search_error(http, tenant, body) == [
        "filterSpecification.specifications[0].parameterName: 'patientNam' is not a parameter of this journey"
    ]
    body = {"filterSpecification": pspec("", "equals", "x")}
    assert search_error(http, tenant, body) == [
        "filterSpecification.parameterName: must be a non-empty string"
    ]
    body = {
        "filterSpecification": {
            "type": "JourneyParameterSpecification",
            "operator": "equals",
            "rightOperand": "x",
        }
    }
    assert search_error(http, tenant, body) == [
        "filterSpecification.parameterName: must be a non-empty string"
    ]


@pytest.mark.parametrize(
    ("operator", "operand", "message"),
    [
        ("equals", 100000, "filterSpecification.rightOperand: must be a string, not a number"),
        ("equals", None, "filterSpecification.rightOperand: must be a string, not null"),
        ("contains", ["John"], "filterSpecification.rightOperand: must be a string, not an array"),
        ("startsWith", {"v": "J"}, "filterSpecification.rightOperand: must be a string, not an object"),
        ("notEquals", True, "filterSpecification.rightOperand: must be a string, not a boolean"),
        (
            "in",
            "John Smith",
            "filterSpecification.rightOperand: must be an array of strings for operator 'in'",
        ),
        (
            "in",
            ["John Smith", 1],
            "filterSpecification.rightOperand: must be an array of strings for operator 'in'",
        ),
        ("in", None, "filterSpecification.rightOperand: must be an array of strings for operator 'in'"),
    ],
)
def test_right_operand_type(http: Client, tenant: Tenant, operator: str, operand: Any, message: str) -> None:
    assert search_error(http, tenant, {"filterSpecification": pspec("patientName", operator, operand)}) == [
        message
    ]


@pytest.mark.parametrize(
    ("operator", "operand"),
    [("equals", "John\u0000"), ("startsWith", "\u0000"), ("contains", "a\u0000b"), ("in", ["x", "y\u0000"])],
)
def test_nul_in_an_operand_is_a_clear_400(http: Client, tenant: Tenant, operator: str, operand: Any) -> None:
    # PostgreSQL cannot compare text holding NUL: it was a 500 there.
    spec = {"type": "AndSpecification", "specifications": [pspec("patientName", operator, operand)]}
    assert search_error(http, tenant, {"filterSpecification": spec}) == [
        "filterSpecification.specifications[0].rightOperand: must not contain NUL characters (\\u0000)"
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([SEED_SEARCH_BODY], "request body: must be a JSON object, not an array"),
        ("search", "request body: must be a JSON object, not a string"),
        (42, "request body: must be a JSON object, not a number"),
        (
            {"filterSpecification": "PatientName = John"},
            "filterSpecification: must be an object, not a string",
        ),
        (
            {"filterSpecification": [SEED_SEARCH_BODY["filterSpecification"]]},
            "filterSpecification: must be an object, not an array",
        ),
        (
            {"filterSpecification": {"type": "AndSpecification", "specifications": {"type": "x"}}},
            "filterSpecification.specifications: must be an array of specifications",
        ),
        (
            {"filterSpecification": {"type": "OrSpecification"}},
            "filterSpecification.specifications: must be an array of specifications",
        ),
        (
            {"filterSpecification": {"type": "NotSpecification"}},
            "filterSpecification.specification: must be an object, not null",
        ),
        (
            {"filterSpecification": {"type": "JourneyStatusSpecification", "status": "Running"}},
            f"filterSpecification.status: unknown status 'Running' (expected one of: {STATUS_LIST})",
        ),
        (
            {"filterSpecification": {"type": "JourneyStatusSpecification", "status": "inprogress"}},
            f"filterSpecification.status: unknown status 'inprogress' (expected one of: {STATUS_LIST})",
        ),
        (
            {"filterSpecification": {"type": "JourneyStatusSpecification"}},
            f"filterSpecification.status: unknown status None (expected one of: {STATUS_LIST})",
        ),
    ],
)
def test_malformed_bodies(http: Client, tenant: Tenant, body: Any, message: str) -> None:
    assert search_error(http, tenant, body) == [message]


def test_invalid_json_and_empty_body(http: Client, tenant: Tenant) -> None:
    headers = {**tenant.headers, "Content-Type": "application/json"}
    r = http.post(tenant.url("/search"), content=b'{"filterSpecification": ', headers=headers)
    assert r.status_code == 400
    errors = r.json()
    assert len(errors) == 1 and errors[0].startswith("request body is not valid JSON: ")
    r = http.post(tenant.url("/search"), content=b"null", headers=headers)
    assert r.status_code == 400
    assert r.json() == ["request body: must be a JSON object, not null"]
    r = http.post(tenant.url("/search"), content=b"", headers=headers)
    assert r.status_code == 400
    assert r.json() == ["request body is empty; expected a JSON object"]


def test_every_problem_is_reported_at_once(http: Client, tenant: Tenant) -> None:
    body = {
        "filterSpecification": {
            "type": "OrSpecification",
            "specifications": [
                pspec("nope", "equals", "x"),
                pspec("patientName", "matches", "x"),
                {"type": "JourneyStatusSpecification", "status": "Done"},
            ],
        },
        "take": 0,
    }
    errors = search_error(http, tenant, body)
    assert errors == [
        "filterSpecification.specifications[0].parameterName: 'nope' is not a parameter of this journey",
        "filterSpecification.specifications[1].operator: unknown operator 'matches' "
        f"(expected one of: {OPERATORS})",
        "filterSpecification.specifications[2].status: unknown status 'Done' "
        f"(expected one of: {STATUS_LIST})",
        "take: must be a whole number from 1 to 1000",
    ]


# ---------------------------------------------------------------- isolation
def test_other_orgs_instances_never_appear(server: Server, http: Client, tenant: Tenant) -> None:
    other = server.tenant()
    bulk(http, other, [params(1, "John Smith"), params(2, "Jane Green")])
    assert search(http, tenant, {}) == []
    assert search(http, tenant, SEED_SEARCH_BODY) == []
    bulk(http, tenant, [params(1, "John Smith")])
    mine = search(http, tenant, SEED_SEARCH_BODY)
    theirs = search(http, other, SEED_SEARCH_BODY)
    assert len(mine) == 1 and len(theirs) == 1
    assert mine[0]["id"] != theirs[0]["id"]
    assert len(search(http, other, {})) == 2

    # Another org's journey is not reachable with this org's token, in either path position.
    r = http.post(
        f"/chatbotapi/external/orgs/{tenant.org_id}/journeys/{other.journey_id}/instances/search",
        json=SEED_SEARCH_BODY,
        headers=tenant.headers,
    )
    assert r.status_code == 404
    assert r.json() == [f"journey {other.journey_id} not found"]
    r = http.post(other.url("/search"), json=SEED_SEARCH_BODY, headers=tenant.headers)
    assert r.status_code == 404
    assert r.json() == [f"org {other.org_id} not found"]


def test_another_journey_of_the_same_org_sees_none_of_these(
    server: Server, http: Client, tenant: Tenant
) -> None:
    second = server.publish(tenant.org_id, second_journey_text("Appointment Reminder Two"))
    assert second["id"] != tenant.journey_id
    two = Tenant(tenant.org_id, tenant.token, str(second["id"]), tenant.headers)
    bulk(http, tenant, [params(1, "John Smith"), params(2, "Jane Green")])
    assert search(http, two, {}) == []
    assert search(http, two, SEED_SEARCH_BODY) == []
    bulk(http, two, [params(1, "John Smith")])  # same identifier: a different journey
    (found,) = search(http, two, SEED_SEARCH_BODY)
    assert found["journeyBotName"] == "Appointment Reminder Two"
    assert len(search(http, tenant, {})) == 2
    assert found["id"] not in {i["id"] for i in search(http, tenant, {})}


def test_search_auth(server: Server, http: Client, tenant: Tenant) -> None:
    r = http.post(tenant.url("/search"), json=SEED_SEARCH_BODY)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    create_only = server.new_token(tenant.org_id, scopes=["create.journey_instances"])
    r = http.post(
        tenant.url("/search"), json=SEED_SEARCH_BODY, headers={"Authorization": f"Bearer {create_only}"}
    )
    assert r.status_code == 403
    assert r.json() == ["this token lacks the read.journey_instances scope"]
    read_only = server.new_token(tenant.org_id, scopes=["read.journey_instances"])
    r = http.post(
        tenant.url("/search"), json=SEED_SEARCH_BODY, headers={"Authorization": f"Bearer {read_only}"}
    )
    assert r.status_code == 200


# ---------------------------------------------------------------- the index
def _capture_search_sql(
    server: Server, http: Client, tenant: Tenant, body: dict[str, Any]
) -> tuple[str, Any]:
    captured: list[tuple[str, Any]] = []

    def listener(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if "instance_parameters" in statement and "ORDER BY" in statement:
            captured.append((statement, parameters))

    sa.event.listen(server.engine, "before_cursor_execute", listener)
    try:
        search(http, tenant, body)
    finally:
        sa.event.remove(server.engine, "before_cursor_execute", listener)
    assert len(captured) == 1, captured
    return captured[0]


@pytest.fixture(scope="module")
def big_journey(server: Server) -> Tenant:
    """One journey with 2,000 instances, one of them John Smith (shared by the plan tests)."""
    tenant = server.tenant()
    instances = [params(n, f"Patient {n}") for n in range(2000)] + [params(99999, "John Smith")]
    bulk(server.http, tenant, instances)
    return tenant


@pytest.mark.parametrize(
    "spec",
    [
        SEED_SEARCH_BODY["filterSpecification"],
        pspec("patientName", "equals", "John Smith"),
        pspec("PATIENTNAME", "startsWith", "John S"),
        pspec("patientName", "in", ["John Smith", "Jane Green"]),
    ],
    ids=["seed", "equals", "startsWith", "in"],
)
def test_search_uses_the_parameter_index(
    server: Server, http: Client, big_journey: Tenant, spec: dict[str, Any]
) -> None:
    """A selective parameter search is driven by ix_instance_parameters_lookup and reaches
    journey_instances by primary key: it never walks all of the journey's instances."""
    body = {"filterSpecification": spec, "includeParameters": True}
    (found,) = search(http, big_journey, body)
    assert found["parameters"]["patientName"] == "John Smith"
    statement, parameters = _capture_search_sql(server, http, big_journey, body)
    with server.engine.connect() as conn:
        if server.engine.dialect.name == "sqlite":
            # No ANALYZE here: the product never gathers SQLite statistics, so this is the plan
            # a deployed SQLite database runs.
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            plan = [str(r[-1]) for r in rows]
            text = "\n".join(plan)
            assert any("USING INDEX ix_instance_parameters_lookup" in line for line in plan) or any(
                "USING COVERING INDEX ix_instance_parameters_lookup" in line for line in plan
            ), text
            assert not any(line.startswith("SCAN ") for line in plan), text
            # journey_instances is reached by (org_id, instance_id), one row per match, not by
            # walking the (org_id, journey_id) range, which is every instance of the journey.
            on_instances = [line for line in plan if " journey_instances " in f"{line} "]
            assert on_instances, text
            assert all("instance_id=?" in line for line in on_instances), text
        else:
            with conn.begin():
                # Fresh tables have no statistics: gather them, so the plan is the one a real
                # database would choose, then rule out sequential scans.
                conn.exec_driver_sql("ANALYZE journey_instances, instance_parameters")
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
            text = "\n".join(str(r[0]) for r in rows)
            assert "ix_instance_parameters_lookup" in text, text
            assert "Seq Scan" not in text, text
            assert "ix_journey_instances_org_journey_created" not in text, text
