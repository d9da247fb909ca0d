"""The API describes itself truthfully, and its docs work offline.

- /openapi.json declares the bearer scheme on every route behind a token, real response shapes,
  the error array for every error status a route can give, and no 422 (never answered).
- Schemathesis drives every documented operation of the running server over real HTTP, with a
  valid token and real path values (an org, its published journey, an instance, a webhook), a
  bounded, deterministic number of generated requests (MAX_EXAMPLES per operation and mode, 480
  in all), and checks that no answer is a 5xx and that each status, content type, header set and
  body is one the document declares.
- /docs references only assets the package serves (no CDN), each with its content type.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from httpx import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.api import SEED_BULK_BODY, SEED_SEARCH_BODY
from support.keys import strong_key
from support.receivers import WebhookReceiver
from support.server import LOOPBACK_ALLOWED, Server, Tenant

SECRET_KEY = strong_key("test-secret-key-for-openapi")
HOOK_SECRET = "openapi-webhook-secret-0123456789"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 20  # per operation and mode (positive, negative): 640 requests in all
# NUL characters are generated too: every text input refuses them with a 400 (PostgreSQL cannot
# store them).
ALLOW_NUL = True

@dataclass
class Target:
    server: Server
    tenant: Tenant
    instance_id: str  # ran: it has a timeline
    waiting_id: str  # in progress: cancelled by the generated requests
    webhook_id: str
    receiver: WebhookReceiver


@pytest.fixture(scope="module")
def target(database_url: str) -> Iterator[Target]:
    server = Server(database_url, secret_key=SECRET_KEY, outbound_allow=LOOPBACK_ALLOWED)
    receiver = WebhookReceiver(HOOK_SECRET)
    try:
        t = server.tenant()
        http = server.http
        assert http.post(t.url("/bulk"), json=SEED_BULK_BODY, headers=t.headers).status_code == 204
        found = http.post(t.url("/search"), json=SEED_SEARCH_BODY, headers=t.headers).json()
        server.run_worker()  # a timeline and a lastStepExecuted to describe
        seed = SEED_BULK_BODY["instances"][0]["parameters"]
        waiting = {**SEED_BULK_BODY, "instances": [{"parameters": {**seed, "appointmentId": "W-1"}}]}
        assert http.post(t.url("/bulk"), json=waiting, headers=t.headers).status_code == 204
        query = {**SEED_SEARCH_BODY, "filterSpecification": {
            "type": "JourneyParameterSpecification", "parameterName": "appointmentId",
            "operator": "equals", "rightOperand": "W-1"}}  # fmt: skip
        waiting_id = http.post(t.url("/search"), json=query, headers=t.headers).json()[0]["id"]
        hook = http.post(
            f"/api/orgs/{t.org_id}/webhooks",
            json={"url": receiver.url, "secret": HOOK_SECRET, "eventTypes": ["*"]},
            headers=t.headers,
        )
        assert hook.status_code == 201, hook.text
        reply = {"from": "+15555550100", "body": "C"}
        assert http.post(f"/api/orgs/{t.org_id}/replies", json=reply, headers=t.headers).status_code == 200
        yield Target(server, t, str(found[0]["id"]), str(waiting_id), str(hook.json()["id"]), receiver)
    finally:
        receiver.stop()
        server.stop()


# Every documented operation, in the order they run (the deletions last, so that the others
# find the instance and the webhook). A route added to the API must be added here: the first test
# fails until it is, so that none goes unexercised.
OPERATIONS = [
    "GET /chatbotapi/external/orgs/{orgId}/journeys",
    "POST /chatbotapi/external/orgs/{orgId}/journeys/{chatBotId}/instances/bulk",
    "POST /chatbotapi/external/orgs/{orgId}/journeys/{chatBotId}/instances/search",
    "GET /chatbotapi/external/orgs/{orgId}/journeys/{chatBotId}/instances/{journeyInstanceId}",
    "POST /api/orgs/{orgId}/replies",
    "GET /api/orgs/{orgId}/replies",
    "POST /api/orgs/{orgId}/webhooks",
    "GET /api/orgs/{orgId}/webhooks",
    "POST /api/orgs/{orgId}/webhooks/{webhookId}/verify",
    "GET /api/orgs/{orgId}/webhooks/{webhookId}/deliveries",
    "GET /api/orgs/{orgId}/opt-outs",
    "POST /api/orgs/{orgId}/opt-outs",
    "DELETE /api/orgs/{orgId}/opt-outs/{phone}",
    "POST /api/orgs/{orgId}/journeys/{chatBotId}/instances/cancel",
    "DELETE /chatbotapi/external/orgs/{orgId}/journeys/{chatBotId}/instances/{journeyInstanceId}/execution",
    "DELETE /api/orgs/{orgId}/webhooks/{webhookId}",
]
CANCEL = OPERATIONS[-2]
BULK_OP, SEARCH_OP, REPLY_OP, WEBHOOK_OP = OPERATIONS[1], OPERATIONS[2], OPERATIONS[4], OPERATIONS[6]


@pytest.fixture(scope="module")
def api_schema(target: Target) -> Any:
    """The document as a client gets it: fetched from the running server."""
    config = SchemathesisConfig.from_dict({"generation": {"allow-x00": ALLOW_NUL}})
    return schemathesis.openapi.from_url(f"{target.server.base_url}/openapi.json", config=config)


def test_every_documented_operation_is_exercised(api_schema: Any) -> None:
    documented = [op.ok().label for op in api_schema.get_all_operations()]
    assert sorted(documented) == sorted(OPERATIONS)


# ---- plausible bodies: in positive mode, three requests in four have their body (or part of it)
# drawn from these, so that generated requests also get past the journey's own rules (its
# parameter names, phone numbers, event types) to the work behind them
TEXT_CHARS = st.characters(exclude_characters="" if ALLOW_NUL else "\x00")
TEXT = st.text(TEXT_CHARS, min_size=1, max_size=40)
# Any datetime Python has: outside years 1900-2200 the API answers 400, never an overflow.
LOCAL_TIMES = st.datetimes()
DATETIMES = st.one_of(
    LOCAL_TIMES.map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
    LOCAL_TIMES.map(lambda d: d.strftime("%Y-%m-%dT%H:%M")),
    LOCAL_TIMES.map(lambda d: d.isoformat() + "Z"),
    LOCAL_TIMES.map(lambda d: d.isoformat() + "+05:30"),
)
PHONES = st.sampled_from(["+15555550100", "(555) 555-0123", "5554128879", ""])
ZONES = st.sampled_from(["America/Chicago", "UTC", "Asia/Kolkata", "Pacific/Chatham"])
FLOWS = st.sampled_from([None, None, "rescheduled"])
PARAMETERS = st.fixed_dictionaries(
    {"patientId": TEXT, "patientName": TEXT, "appointmentId": TEXT, "appointmentDateTime": DATETIMES},
    optional={"phoneNumber": PHONES},
)
BULK = st.fixed_dictionaries(
    {
        "flowId": FLOWS,
        "timeZone": ZONES,
        "instances": st.lists(st.fixed_dictionaries({"parameters": PARAMETERS}), min_size=1, max_size=3),
    }
)
LEAVES = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("JourneyParameterSpecification"),
            "parameterName": st.sampled_from(["patientName", "PATIENTID", "appointmentId", "phoneNumber"]),
            "operator": st.sampled_from(["equals", "notEquals", "contains", "startsWith"]),
            "rightOperand": st.text(TEXT_CHARS, max_size=20),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("JourneyParameterSpecification"),
            "parameterName": st.just("appointmentId"),
            "operator": st.just("in"),
            "rightOperand": st.lists(st.text(TEXT_CHARS, max_size=20), max_size=5),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("JourneyStatusSpecification"),
            "status": st.sampled_from(["InProgress", "Completed", "Cancelled", "Failed"]),
        }
    ),
)
FILTERS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["AndSpecification", "OrSpecification"]),
                "specifications": st.lists(inner, max_size=3),
            }
        ),
        st.fixed_dictionaries({"type": st.just("NotSpecification"), "specification": inner}),
    ),
    max_leaves=6,
)
SEARCH = st.fixed_dictionaries(
    {"filterSpecification": FILTERS},
    optional={
        "includeParameters": st.booleans(),
        "skip": st.integers(0, 2**31 - 1),
        "take": st.integers(1, 1000),
    },
)
PLAUSIBLE: dict[str, Callable[[st.DataObject, Any], Any]] = {
    BULK_OP: lambda data, _: data.draw(BULK),
    SEARCH_OP: lambda data, _: data.draw(SEARCH),
    REPLY_OP: lambda data, body: {
        **body,
        "from": data.draw(PHONES),
        "body": data.draw(st.text(TEXT_CHARS, max_size=1700)),
    },
    WEBHOOK_OP: lambda data, body: {
        **body,
        "secret": HOOK_SECRET,
        "eventTypes": data.draw(st.sampled_from([["*"], ["instance.started", "instance.completed"]])),
    },
}


@pytest.mark.parametrize(
    ("label", "mode"),
    [(label, mode) for label in OPERATIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)],
    ids=lambda v: str(v),
)
def test_operation_answers_as_documented(api_schema: Any, target: Target, label: str, mode: Any) -> None:
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]
    values = {
        "orgId": target.tenant.org_id,
        "chatBotId": target.tenant.journey_id,
        "journeyInstanceId": target.waiting_id if label == CANCEL else target.instance_id,
        "webhookId": target.webhook_id,
        "phone": "+15555550100",
    }
    strategy = operation.as_strategy(
        mode, path_parameters={p.name: values[p.name] for p in operation.path_parameters}
    )
    plausible = PLAUSIBLE.get(label) if mode == GenerationMode.POSITIVE else None

    @given(case=strategy, data=st.data())
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def check(case: Any, data: st.DataObject) -> None:
        if plausible is not None and isinstance(case.body, dict) and data.draw(st.integers(0, 3)) < 3:
            case.body = plausible(data, case.body)
        if label == WEBHOOK_OP and isinstance(case.body, dict):
            if isinstance(case.body.get("url"), str):
                case.body["url"] = target.receiver.url  # the server never calls anywhere but loopback
        case.call_and_validate(headers=target.tenant.headers, checks=CHECKS)

    check()


# ---------------------------------------------------------------- the document itself
AUTH_ERRORS = {"401", "403", "404", "503"}
INSTANCE_FIELDS = {
    "id", "journeyBotName", "createdDateTime", "startDateTime", "journeyBatchId", "status",
    "lastStepExecuted", "parameters",
}  # fmt: skip


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


@pytest.fixture(scope="module")
def doc(target: Target) -> dict[str, Any]:
    r = target.server.http.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return dict(r.json())


def test_every_route_behind_a_token_declares_the_bearer_scheme(doc: dict[str, Any]) -> None:
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert sorted(label for label, _ in operations(doc)) == sorted(OPERATIONS)
    for label, operation in operations(doc):
        assert operation["security"] == [{"bearerAuth": []}], label
    # not documented: the health check, the Twilio webhooks (signed, not token-bearing), the docs
    assert not [p for p in doc["paths"] if not p.startswith(("/api/orgs/", "/chatbotapi/"))]


def test_every_error_is_the_error_array_and_none_is_a_422(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert schemas["ErrorMessages"]["type"] == "array"
    assert schemas["ErrorMessages"]["items"] == {"type": "string"}
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    for label, operation in operations(doc):
        responses = operation["responses"]
        assert "422" not in responses, label
        assert AUTH_ERRORS <= set(responses), label
        assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
        for status, response in responses.items():
            if int(status) >= 400:
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorMessages", (label, status)
        if "requestBody" in operation:  # a body can be malformed or too large
            assert {"400", "413"} <= set(responses), label


def test_success_responses_have_real_shapes(doc: dict[str, Any]) -> None:
    by_label = {label: label for label in OPERATIONS}
    expected: dict[str, dict[str, str | None]] = {
        OPERATIONS[0]: {"200": "Journeys"},
        BULK_OP: {"204": None},
        SEARCH_OP: {"200": "Instances"},
        OPERATIONS[3]: {"200": "InstanceDetail"},
        REPLY_OP: {"200": "ReplyResult"},
        OPERATIONS[5]: {"200": "Replies"},
        WEBHOOK_OP: {"201": "Webhook"},
        OPERATIONS[7]: {"200": "Webhooks"},
        OPERATIONS[8]: {"200": "Webhook"},
        OPERATIONS[9]: {"200": "Deliveries"},
        by_label["GET /api/orgs/{orgId}/opt-outs"]: {"200": "OptOuts"},
        by_label["POST /api/orgs/{orgId}/opt-outs"]: {"200": "OptOut", "201": "OptOut"},
        by_label["DELETE /api/orgs/{orgId}/opt-outs/{phone}"]: {"204": None},
        by_label["POST /api/orgs/{orgId}/journeys/{chatBotId}/instances/cancel"]: {"200": "CancelResult"},
        CANCEL: {"204": None},
        by_label["DELETE /api/orgs/{orgId}/webhooks/{webhookId}"]: {"204": None},
    }
    for label, operation in operations(doc):
        ok = sorted(s for s in operation["responses"] if int(s) < 400)
        assert ok == sorted(expected[label]), label
        for status, model in expected[label].items():
            content = operation["responses"][status].get("content")
            if model is None:
                assert content is None, label
            else:
                ref = {"$ref": f"#/components/schemas/{model}"}
                assert content["application/json"]["schema"] == ref, label
    schemas = doc["components"]["schemas"]
    assert set(schemas["Instance"]["properties"]) == INSTANCE_FIELDS
    assert set(schemas["InstanceDetail"]["properties"]) == INSTANCE_FIELDS | {"events"}
    assert set(schemas["InstanceDetail"]["required"]) == INSTANCE_FIELDS | {"events"}
    assert "parameters" not in schemas["Instance"]["required"]  # only with includeParameters
    assert schemas["Instances"]["items"] == {"$ref": "#/components/schemas/Instance"}
    assert set(schemas["Journey"]["properties"]) == {"id", "name", "version", "flows", "parameters"}


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "limit=ten", "unmatched=perhaps"], ids=lambda q: q
)
def test_query_validation_errors_are_400_with_the_error_array(target: Target, query: str) -> None:
    http, t = target.server.http, target.tenant
    replies = f"/api/orgs/{t.org_id}/replies"
    for path in (replies, f"/api/orgs/{t.org_id}/webhooks/{target.webhook_id}/deliveries"):
        if path.endswith("deliveries") and query.startswith("unmatched"):
            continue  # not a parameter there
        r = http.get(f"{path}?{query}", headers=t.headers)
        assert r.status_code == 400, (path, query, r.status_code, r.text)
        body = r.json()
        assert isinstance(body, list) and body and all(isinstance(m, str) for m in body), body


# ---------------------------------------------------------------- /docs, offline
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def test_docs_load_only_local_assets(target: Target) -> None:
    http: Client = target.server.http
    r = http.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "://" not in page, "the docs page must not load anything from another host"
    urls = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(urls) == 3, urls  # the script, the stylesheet, the icon
    for url in urls:
        assert url.startswith("/docs/assets/"), url
        asset = http.get(url)
        assert asset.status_code == 200, url
        media = asset.headers["content-type"].split(";")[0]
        assert media == ASSET_TYPES[url[url.rindex(".") :]], (url, media)
        assert len(asset.content) > 500, url
    assert "SwaggerUIBundle" in http.get("/docs/assets/swagger-ui-bundle.js").text
    spec = re.search(r"url: '([^']+)'", page)
    assert spec is not None and spec.group(1) == "/openapi.json"
    assert '"validatorUrl": null' in page  # no badge fetched from the online validator


@pytest.mark.parametrize(
    "path",
    [
        "/redoc",
        "/docs/oauth2-redirect",
        "/docs/assets/",
        "/docs/assets/nope.js",
        "/docs/assets/..%2F..%2Fapp.py",
        "/docs/assets/..%2Fswagger-ui%2FLICENSE",
    ],
)
def test_no_other_docs_paths(target: Target, path: str) -> None:
    r = target.server.http.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert isinstance(r.json(), list)
