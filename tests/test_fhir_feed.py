"""FHIR R4 Appointments over real HTTP, on the suite's database (SQLite or PostgreSQL): create,
update (reschedule, no-show, cancel), a Subscription's notification Bundle, every error as an
OperationOutcome with nothing written, and the effects checked through the MedChat API."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.mllp import EXAMPLE_JOURNEY
from support.server import Server, Tenant

from journeys.cli.auditing import cli_actor
from journeys.feeds.registry import set_fhir_feed
from journeys.store.db import transaction

ROOT = Path(__file__).resolve().parent.parent
MAPPING = ROOT / "examples" / "feeds" / "appointment-reminder.fhir.yaml"
SAMPLES = ROOT / "examples" / "feeds" / "fhir"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((SAMPLES / f"{name}.json").read_text()))


def store_feed(server: Server, tenant: Tenant, extra: str = "") -> None:
    text = MAPPING.read_text().replace("org: Demo Clinic ", f"org: {tenant.org_id} ")
    text = text.replace("journey: Appointment Reminder ", f"journey: {tenant.journey_id} ") + extra
    with transaction(server.engine) as conn:
        set_fhir_feed(conn, cli_actor(), text, "feed.yaml")


@pytest.fixture(scope="module")
def tenant(server: Server) -> Tenant:
    t = server.tenant(EXAMPLE_JOURNEY)
    store_feed(server, t)
    return t


def fhir(server: Server, tenant: Tenant, method: str, path: str, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.http.request(
        method,
        f"/fhir/orgs/{tenant.org_id}{path}",
        content=content,
        headers={**tenant.headers, **FHIR_JSON, **headers},
    )


def put(server: Server, tenant: Tenant, resource: dict[str, Any], **headers: str) -> httpx.Response:
    return fhir(server, tenant, "PUT", f"/Appointment/{resource['id']}", resource, **headers)


def find(server: Server, tenant: Tenant, appointment: str) -> list[dict[str, Any]]:
    body = {
        "filterSpecification": {
            "type": "JourneyParameterSpecification",
            "parameterName": "appointmentId",
            "operator": "equals",
            "rightOperand": appointment,
        },
    }
    r = server.http.post(tenant.url("/search"), json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    found = []
    for row in r.json():
        detail = server.http.get(tenant.url(f"/{row['id']}"), headers=tenant.headers)
        found.append(detail.json())
    return found


def issues(r: httpx.Response) -> list[str]:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [i["diagnostics"] for i in body["issue"]]


def appointment(appt_id: str, **changes: Any) -> dict[str, Any]:
    resource = copy.deepcopy(sample("appointment-booked"))
    resource["id"] = appt_id
    resource.update(changes)
    return resource


def test_booked_rescheduled_no_show_and_cancelled(server: Server, tenant: Tenant) -> None:
    booked = appointment("F-1")
    r = put(server, tenant, booked)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    assert r.json() == booked  # the resource, as FHIR answers an update
    [detail] = find(server, tenant, "F-1")
    assert detail["status"] == "InProgress"
    assert detail["parameters"] == {
        "appointmentId": "F-1",
        "patientId": "MRN100234",  # the identifier of the mapped system
        "patientName": "John Smith",
        "phoneNumber": "+13125550199",  # the mobile number, before the home one
        "appointmentDateTime": "2030-06-12T09:30:00",
    }
    same = put(server, tenant, booked, Prefer="return=OperationOutcome")
    assert issues(same) == [
        f"Appointment (feed ehr-fhir): no mapped parameter changed; instance {detail['id']} left as it is"
    ]
    moved = put(
        server, tenant, appointment("F-1", start="2030-06-14T16:00:00Z"), Prefer="return=OperationOutcome"
    )
    assert issues(moved) == [
        f"Appointment (feed ehr-fhir): started subflow rescheduled on instance {detail['id']}"
    ]
    assert find(server, tenant, "F-1")[0]["parameters"]["appointmentDateTime"] == "2030-06-14T11:00:00"
    missed = put(server, tenant, appointment("F-1", status="noshow"), Prefer="return=minimal")
    assert missed.status_code == 200 and missed.content == b""
    cancelled = put(server, tenant, appointment("F-1", status="cancelled"), Prefer="return=OperationOutcome")
    assert issues(cancelled) == [f"Appointment (feed ehr-fhir): cancelled instance {detail['id']}"]
    [detail] = find(server, tenant, "F-1")
    assert detail["status"] == "Cancelled"
    flows = [e["flowId"] for e in detail["events"] if e["type"] == "subflow_started"]
    assert flows == ["rescheduled", "no-show"]


def test_create_answers_201_with_its_location(server: Server, tenant: Tenant) -> None:
    r = fhir(server, tenant, "POST", "/Appointment", appointment("F-2"))
    assert r.status_code == 201 and r.headers["location"] == f"/fhir/orgs/{tenant.org_id}/Appointment/F-2"
    assert len(find(server, tenant, "F-2")) == 1
    again = fhir(server, tenant, "POST", "/Appointment", appointment("F-2"))
    assert again.status_code == 201 and len(find(server, tenant, "F-2")) == 1


def test_statuses_the_feed_does_not_map_are_acknowledged_and_ignored(server: Server, tenant: Tenant) -> None:
    r = put(server, tenant, appointment("F-3", status="proposed"), Prefer="return=OperationOutcome")
    assert r.status_code == 200 and issues(r) == [
        "Appointment (feed ehr-fhir): proposed is ignored by feed:ehr-fhir"
    ]
    assert find(server, tenant, "F-3") == []


def test_a_subscription_notification_bundle(server: Server, tenant: Tenant) -> None:
    bundle = sample("notification-bundle")
    r = fhir(server, tenant, "POST", "/notify", bundle)
    assert r.status_code == 200
    assert issues(r)[0].startswith("entry[1] (feed ehr-fhir): started instance ")
    [detail] = find(server, tenant, "appt-8002")
    assert detail["parameters"]["patientName"] == "Jane Doe"  # the Patient the Bundle holds
    assert detail["parameters"]["phoneNumber"] == "+19175550166"
    heartbeat = {"resourceType": "Bundle", "type": "history", "entry": [bundle["entry"][0]]}
    assert issues(fhir(server, tenant, "POST", "/notify", heartbeat)) == ["no Appointment to apply"]
    ping = fhir(server, tenant, "POST", "/notify", b"")
    assert ping.status_code == 200 and issues(ping) == ["no Appointment to apply"]


def test_a_bundle_is_applied_whole_or_not_at_all(server: Server, tenant: Tenant) -> None:
    good = {"fullUrl": "urn:uuid:1", "resource": appointment("F-4")}
    orphan = appointment("F-5")
    orphan["contained"] = []  # no patient: its required name is missing
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [good, {"resource": orphan}]}
    r = fhir(server, tenant, "POST", "/notify", bundle)
    assert r.status_code == 422
    assert issues(r) == [
        "entry[1] (feed ehr-fhir): patientId: required parameter is missing; "
        "patientName: required parameter is missing"
    ]
    assert find(server, tenant, "F-4") == [] and find(server, tenant, "F-5") == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "the body is not valid JSON"),
        (b"", 400, "the body is empty; expected a FHIR Appointment"),
        ([1, 2], 400, "the body must be a FHIR resource"),
        (
            {"resourceType": "Patient", "id": "F-6"},
            400,
            "resourceType 'Patient': expected Appointment or Bundle",
        ),
        (
            {"resourceType": "Appointment", "id": "F-6", "participant": []},
            400,
            "Appointment.status: Value for",
        ),
        (
            {
                "resourceType": "Appointment",
                "id": "F-6",
                "status": "booked",
                "start": "soon",
                "participant": [],
            },
            400,
            "Appointment.start: Instant value string does not match spec regex.",
        ),
        (
            {"resourceType": "Appointment", "id": "F-6", "status": "maybe", "participant": []},
            400,
            "Appointment.status: must be one of",
        ),
        (
            {"resourceType": "Appointment", "id": "F-6", "status": "booked", "colour": 1},
            400,
            "Appointment.colour: Extra inputs",
        ),
        (
            {"resourceType": "Appointment", "id": "F-7", "status": "booked", "participant": []},
            400,
            "must be the id in the URL",
        ),
    ],
)
def test_bad_resources_get_an_operation_outcome_and_write_nothing(
    server: Server, tenant: Tenant, body: Any, status: int, message: str
) -> None:
    before = server.count("journey_instances", tenant.org_id)
    r = fhir(server, tenant, "PUT", "/Appointment/F-6", body)
    assert r.status_code == status and r.headers["content-type"].startswith("application/fhir+json")
    texts = issues(r)
    assert any(message in t for t in texts), texts
    assert {i["severity"] for i in r.json()["issue"]} == {"error"}
    assert server.count("journey_instances", tenant.org_id) == before


def test_a_value_the_journey_refuses_is_named_by_its_path_not_quoted(server: Server, tenant: Tenant) -> None:
    resource = appointment("F-8")
    resource["contained"][0]["name"] = [{"family": "Q" * 60_000, "given": ["Zed"]}]
    r = put(server, tenant, resource)
    assert r.status_code == 422
    [text] = issues(r)
    assert text == "Appointment (feed ehr-fhir): patientName: is too long (at most 1000 characters)"
    assert "QQQQ" not in r.text
    assert find(server, tenant, "F-8") == []


def test_who_may_send(server: Server, tenant: Tenant) -> None:
    resource = appointment("F-9")
    path = f"/fhir/orgs/{tenant.org_id}/Appointment/F-9"
    no_token = server.http.put(path, json=resource)
    assert no_token.status_code == 401 and issues(no_token) == [
        "missing bearer token (Authorization: Bearer <token>)"
    ]
    other = server.tenant(EXAMPLE_JOURNEY)
    wrong_org = server.http.put(path, json=resource, headers=other.headers)
    assert wrong_org.status_code == 404 and issues(wrong_org) == [f"org {tenant.org_id} not found"]
    reader = server.new_token(tenant.org_id, ["read.journey_instances"])
    read_only = server.http.put(path, json=resource, headers={"Authorization": f"Bearer {reader}"})
    assert read_only.status_code == 403 and issues(read_only) == [
        "this token lacks the create.journey_instances scope"
    ]
    no_feed = fhir(server, other, "PUT", "/Appointment/F-9", resource)
    assert no_feed.status_code == 422 and "this org has no FHIR feed" in issues(no_feed)[0]
    text = server.http.put(path, content=b"x", headers={**tenant.headers, "Content-Type": "text/plain"})
    assert text.status_code == 400 and "send application/fhir+json" in issues(text)[0]
    assert find(server, tenant, "F-9") == []


def test_the_token_is_the_audited_actor(server: Server, tenant: Tenant) -> None:
    from journeys.accounts.audit import export
    from journeys.store.db import read_only

    r = put(server, tenant, appointment("F-10"), Prefer="return=OperationOutcome")
    iid = issues(r)[0].rsplit(" ", 1)[1]
    with read_only(server.engine) as conn:
        mine = [x.entry for x in export(conn, tenant.org_id) if iid in x.entry.target_ids]
    assert [(e.actor_kind.value, e.action.value) for e in mine] == [("token", "instances.trigger")]


def test_no_patient_value_reaches_a_log(
    server: Server, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    resource = appointment("F-11")
    resource["contained"][0]["name"] = [{"family": "Xylophonist", "given": ["Wilhelmina"]}]
    assert put(server, tenant, resource).status_code == 200
    bad = appointment("F-12", start="2030-13-45T99:00:00Z")
    bad["contained"][0]["name"] = [{"family": "Xylophonist"}]
    put(server, tenant, bad)
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("Xylophonist", "Wilhelmina", "5550199", "MRN100234"):
        assert secret not in text


def test_the_capability_statement(server: Server, tenant: Tenant) -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    r = server.http.get(f"/fhir/orgs/{tenant.org_id}/metadata")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    statement = CapabilityStatement.model_validate(r.json())
    assert statement.fhirVersion == "4.0.1"
    wrong = server.http.delete(f"/fhir/orgs/{tenant.org_id}/Appointment/F-1", headers=tenant.headers)
    assert wrong.status_code == 405 and issues(wrong) == ["Method Not Allowed"]


def test_a_referenced_patient_is_fetched_from_the_ehr_through_a_registered_api(database_url: str) -> None:
    """`patient_api: ehr`: an Appointment that only references its Patient gets it from the
    EHR's FHIR server (a small real server here), with the registered API's credentials."""
    from support.keys import strong_key
    from support.net import LocalHttpServer, QuietHandler

    from journeys.registered_apis import service as apis

    asked: list[tuple[str, str]] = []

    class Ehr(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            asked.append((self.path, self.headers.get("Authorization", "")))
            if (
                self.path == "/fhir/Patient/pat-77"
                and self.headers.get("Authorization") == "Bearer ehr-token"
            ):
                patient = {
                    "resourceType": "Patient",
                    "id": "pat-77",
                    "name": [{"family": "Okafor", "given": ["Ada"]}],
                    "telecom": [{"system": "phone", "use": "mobile", "value": "312-555-0177"}],
                }
                self.send_body(200, json.dumps(patient).encode(), "application/fhir+json")
            else:
                self.send_body(404, b'{"resourceType": "OperationOutcome"}', "application/fhir+json")

    ehr = LocalHttpServer(Ehr)
    srv = Server(database_url, secret_key=strong_key("fhir-patient-api"))
    try:
        t = srv.tenant(EXAMPLE_JOURNEY)
        with transaction(srv.engine) as conn:
            base, box = f"{ehr.base_url}/fhir", srv.settings.secret_box()
            apis.set_api(conn, cli_actor(), t.org_id, "ehr", base, "bearer", {"token": "ehr-token"}, box)
        store_feed(srv, t, "patient_api: ehr\n")
        resource = appointment("F-20", contained=[])
        resource["participant"][0]["actor"] = {"reference": "Patient/pat-77"}
        r = put(srv, t, resource)
        assert r.status_code == 200, r.text
        assert asked == [("/fhir/Patient/pat-77", "Bearer ehr-token")]
        [detail] = find(srv, t, "F-20")
        assert detail["parameters"]["patientName"] == "Ada Okafor"
        assert detail["parameters"]["phoneNumber"] == "+13125550177"
        unknown = appointment("F-21", contained=[])
        unknown["participant"][0]["actor"] = {"reference": "https://ehr.example/fhir/Patient/pat-404"}
        gone = put(srv, t, unknown)
        assert gone.status_code == 422
        assert issues(gone) == [
            "Appointment: its Patient/pat-404 could not be fetched from registered API ehr: HTTP 404"
        ]
        assert find(srv, t, "F-21") == []
    finally:
        srv.stop()
        ehr.stop()
