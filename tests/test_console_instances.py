"""Find a patient and the instance page, in a real browser: search by a parameter with the API's
filters, paging, the parser's messages for bad filters; the instance's parameters and timeline
(the message as sent, its delivery status, the wait's due time in the instance's zone); cancel
with confirmation; a subflow started with good and bad input; roles checked on the server; other
orgs' instances not found; every search, view and action audited."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from support.api import bulk, trigger_one
from support.browser import screenshot
from support.console import Login, make_user, page_csrf, session_client, sign_in
from support.databases import own_database
from support.fake_twilio import FakeTwilio, twilio_config
from support.journeys import reply_journey
from support.keys import strong_key
from support.server import Server, Tenant
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from journeys.accounts import audit
from journeys.store.db import read_only

PHONE = "+13125550142"
APPOINTMENT = "2026-11-20 09:30:00"  # a Friday; the reminder waits until the day before, 09:30 CST


@pytest.fixture()
def tenant(console_server: Server) -> Tenant:
    return console_server.tenant()


def _start(server: Server, tenant: Tenant, name: str, **extra: str) -> str:
    params = {"patientId": "100", "patientName": name, "appointmentDateTime": APPOINTMENT, **extra}
    return trigger_one(server.http, tenant, params, key="appointmentId")


def _instance(server: Server, tenant: Tenant, instance_id: str) -> dict[str, Any]:
    r = server.http.get(tenant.url(f"/{instance_id}"), headers=tenant.headers)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


def _audit(server: Server, org: str, action: audit.Action) -> list[audit.AuditEntry]:
    with read_only(server.engine) as conn:
        # staff entries (the API token's reads of set-up searches arrive through a buffer)
        entries = [r.entry for r in audit.export(conn, org)]
    return [e for e in entries if e.action == action and e.actor_kind == "user"]


def _page_url(server: Server, tenant: Tenant, instance_id: str) -> str:
    return f"{server.base_url}/console/instances/{tenant.journey_id}/{instance_id}"


def _chicago(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("America/Chicago")).strftime("%Y-%m-%d %H:%M %Z")


def _origin(server: Server) -> dict[str, str]:
    return {"Origin": server.base_url}


def _operator(server: Server, tenant: Tenant, page: Any) -> Login:
    login = make_user(server, tenant.org_id, "operator")
    sign_in(page, server, login)
    return login


# ---------------------------------------------------------------------------- find a patient
def test_search_by_a_parameter_finds_the_instance(console_server: Server, tenant: Tenant, page: Any) -> None:
    wanted = _start(console_server, tenant, "Jane Green")
    _start(console_server, tenant, "John Smith")
    login = _operator(console_server, tenant, page)
    page.goto(f"{console_server.base_url}/console/instances")
    assert page.get_by_role("heading", name="Find a patient").is_visible()
    condition = page.get_by_role("group", name="Condition 1")
    condition.get_by_label("Parameter").select_option("patientName")
    condition.get_by_label("Operator").select_option("equals")
    condition.get_by_label("Value").fill("Jane Green")
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()
    results = page.get_by_role("table", name="Results")
    assert results.get_by_role("row").count() == 2  # the header and one instance
    assert "Jane Green" in results.inner_text() and "John Smith" not in results.inner_text()
    assert page.get_by_role("status").inner_text().startswith("Showing 1–1")
    screenshot(page, "find-a-patient")
    results.get_by_role("link", name=wanted).click()
    page.wait_for_load_state()
    assert page.url == _page_url(console_server, tenant, wanted)
    searches = _audit(console_server, tenant.org_id, audit.Action.INSTANCES_SEARCH)
    assert [(e.actor_id, e.target_kind, e.target_ids, e.count) for e in searches] == [
        (login.user_id, "journey", (tenant.journey_id,), 1)
    ]


def test_the_api_operators_and_status_filter_apply(console_server: Server, tenant: Tenant) -> None:
    ids = {name: _start(console_server, tenant, name) for name in ("Ann Lee", "Anna Berg", "Bob Ray")}
    client = session_client(console_server, make_user(console_server, tenant.org_id, "viewer"))

    def found(**query: Any) -> set[str]:
        r = client.get("/console/instances", params={"journey": tenant.journey_id, **query})
        assert r.status_code == 200, r.text
        return {i for i in ids.values() if i in r.text}

    assert found(param="patientName", op="startsWith", value="Ann") == {ids["Ann Lee"], ids["Anna Berg"]}
    # The console's server encrypts patient data: `contains` cannot be answered, and the page says why.
    refused = client.get("/console/instances", params={"journey": tenant.journey_id, "param": "patientName",
                                                       "op": "contains", "value": "Ray"})  # fmt: skip
    assert refused.status_code == 400 and "is stored encrypted, so" in refused.text
    assert found(param="patientName", op="in", value="Bob Ray, Ann Lee") == {ids["Bob Ray"], ids["Ann Lee"]}
    assert found(param="PATIENTNAME", op="notEquals", value="Bob Ray") == {ids["Ann Lee"], ids["Anna Berg"]}
    assert found(param="patientName", op="startsWith", value="A", status="Cancelled") == set()
    assert found(param="patientName", op="startsWith", value="A", status="InProgress") == {
        ids["Ann Lee"],
        ids["Anna Berg"],
    }
    today = console_server.clock.now().date()
    assert found(**{"from": str(today), "to": str(today)}) == set(ids.values())  # the to day is included
    assert found(**{"from": str(today + timedelta(days=1))}) == set()
    advanced = '{"type": "NotSpecification", "specification": {"type": "JourneyParameterSpecification", '
    advanced += '"parameterName": "patientName", "operator": "startsWith", "rightOperand": "Ann"}}'
    assert found(filter=advanced) >= {ids["Bob Ray"]}
    assert ids["Ann Lee"] not in found(filter=advanced)


def test_results_are_paged(console_server: Server, tenant: Tenant, page: Any) -> None:
    batch = uuid.uuid4().hex[:6]
    people = [
        {"patientId": str(i), "patientName": f"Pager {batch} {i:02}", "appointmentId": f"{batch}-{i}",
         "appointmentDateTime": APPOINTMENT}
        for i in range(30)
    ]  # fmt: skip
    bulk(console_server.http, tenant, [{"parameters": p} for p in people])
    _operator(console_server, tenant, page)
    page.goto(
        f"{console_server.base_url}/console/instances?journey={tenant.journey_id}"
        f"&param=patientName&op=startsWith&value=Pager+{batch}"
    )
    results = page.get_by_role("table", name="Results")
    assert results.locator("tbody tr").count() == 25
    assert page.get_by_role("link", name="Previous page").count() == 0
    page.get_by_role("link", name="Next page").click()
    page.wait_for_load_state()
    assert page.get_by_role("table", name="Results").locator("tbody tr").count() == 5
    assert page.get_by_role("status").inner_text().startswith("Showing 26–30")
    assert page.get_by_role("link", name="Next page").count() == 0
    # the search is kept across pages
    assert (
        page.get_by_role("group", name="Condition 1").get_by_label("Value").input_value() == f"Pager {batch}"
    )
    page.get_by_role("link", name="Previous page").click()
    page.wait_for_load_state()
    assert page.get_by_role("table", name="Results").locator("tbody tr").count() == 25
    counts = [e.count for e in _audit(console_server, tenant.org_id, audit.Action.INSTANCES_SEARCH)]
    assert counts == [25, 5, 25]


def test_a_bad_filter_shows_the_parsers_messages(console_server: Server, tenant: Tenant, page: Any) -> None:
    _operator(console_server, tenant, page)
    page.goto(f"{console_server.base_url}/console/instances")
    page.get_by_label("From").fill("last week")
    page.get_by_text("Advanced filter").click()
    page.get_by_label("Filter").fill('{"type": "MaybeSpecification"}')
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()
    problems = page.get_by_role("alert", name="Problems with the search").inner_text()
    assert "Dates, from: 'last week' is not an ISO 8601 date-time" in problems
    assert "Advanced filter: type: unknown specification type 'MaybeSpecification'" in problems
    assert page.get_by_role("table", name="Results").count() == 0
    assert page.get_by_label("From").input_value() == "last week"  # the form is kept


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            {"param": "shoeSize", "value": "9"},
            "Condition 1, parameter: 'shoeSize' is not a parameter of this journey",
        ),
        (
            {"param": "patientName", "op": "like", "value": "x"},
            "Condition 1, operator: unknown operator 'like'",
        ),
        ({"status": "Sleeping"}, "Status, status: unknown status 'Sleeping'"),
        ({"from": "2026-11-05", "to": "2026-11-01"}, "Dates: the first date-time must be before the second"),
        ({"to": "2026-02-30"}, "Dates, to: '2026-02-30' is not an ISO 8601 date-time"),
        ({"skip": "-1"}, "skip: must be a whole number from 0 to"),
        ({"take": "lots"}, "take: must be a whole number from 1 to"),
        ({"filter": "{not json"}, "Advanced filter: not valid JSON"),
        ({"param": "patientName", "value": "a\x00b"}, "query parameter 'value': must not contain NUL"),
        (
            {"filter": '{"type": "NotSpecification"}'},
            "Advanced filter: specification: must be an object, not null",
        ),
    ],
)
def test_bad_filters_are_refused_with_400(
    console_server: Server, tenant: Tenant, query: dict[str, str], message: str
) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, "viewer"))
    r = client.get("/console/instances", params={"journey": tenant.journey_id, **query})
    assert r.status_code == 400, r.text
    assert message.replace("'", "&#39;") in r.text
    assert _audit(console_server, tenant.org_id, audit.Action.INSTANCES_SEARCH) == []


def test_the_journey_select_changes_the_parameters(console_server: Server, tenant: Tenant, page: Any) -> None:
    other = console_server.publish(
        tenant.org_id,
        "name: Flu Shot\nparameters:\n  - {name: mrn, identifier: true}\n"
        "flows:\n  - {id: main, name: Main, steps: [{id: 1, type: end, outcome: done}]}\n",
    )
    _operator(console_server, tenant, page)
    page.goto(f"{console_server.base_url}/console/instances")
    parameter = page.get_by_role("group", name="Condition 1").get_by_label("Parameter")
    assert "patientName" in parameter.inner_text()
    with page.expect_response(lambda r: "/console/instances/conditions" in r.url):
        page.get_by_label("Journey").select_option(str(other["id"]))
    parameter = page.get_by_role("group", name="Condition 1").get_by_label("Parameter")
    assert "mrn" in parameter.inner_text() and "patientName" not in parameter.inner_text()


# ---------------------------------------------------------------------------- the instance page
def test_the_instance_page_shows_parameters_and_timeline(
    console_server: Server, tenant: Tenant, page: Any
) -> None:
    iid = _start(console_server, tenant, "Maria Lopez", phoneNumber=PHONE)
    console_server.run_worker()  # the booking text goes out (no provider: the built-in outbox)
    login = _operator(console_server, tenant, page)
    page.goto(_page_url(console_server, tenant, iid))
    assert page.get_by_role("heading", name=f"Instance {iid}").is_visible()
    params = page.get_by_role("table", name="Parameters").inner_text()
    assert "Maria Lopez" in params and PHONE in params and APPOINTMENT in params
    timeline = page.get_by_role("table", name="Timeline").inner_text()
    assert "Started" in timeline
    assert "Text message written" in timeline
    assert (
        f"To {PHONE}:\nHi Maria Lopez, your appointment is booked for Friday, November 20, 2026" in timeline
    )
    assert f"Delivery: sent at {_chicago(console_server.clock.now())}" in timeline
    # the wait until the day before, 09:30 in the instance's zone (America/Chicago, CST)
    assert "Waiting until 2026-11-19 09:30 CST" in timeline
    assert "Next step due" in page.locator("dl.facts").inner_text()
    assert "2026-11-19 09:30 CST" in page.locator("dl.facts").inner_text()
    screenshot(page, "instance")
    views = _audit(console_server, tenant.org_id, audit.Action.INSTANCE_VIEW)
    assert [(e.actor_id, e.target_kind, e.target_ids) for e in views] == [(login.user_id, "instance", (iid,))]


def test_the_timeline_shows_the_reply_and_its_deadline(console_server: Server, page: Any) -> None:
    tenant = console_server.tenant(reply_journey())
    iid = trigger_one(console_server.http, tenant, {"phone": PHONE})
    console_server.run_worker()  # the question goes out, then the wait for the answer
    deadline = console_server.clock.now() + timedelta(days=2)
    r = console_server.http.post(
        f"/api/orgs/{tenant.org_id}/replies", json={"from": PHONE, "body": "c"}, headers=tenant.headers
    )
    assert r.status_code == 200 and r.json()["instanceId"] == iid, r.text
    console_server.run_worker()
    _operator(console_server, tenant, page)
    page.goto(_page_url(console_server, tenant, iid))
    timeline = page.get_by_role("table", name="Timeline").inner_text()
    assert f"To {PHONE}:\nReply C to confirm or R to reschedule" in timeline
    assert f"Waiting for a reply until {_chicago(deadline)}" in timeline
    assert f"Reply arrived\nFrom {PHONE}:\nc" in timeline
    assert "Reply read\noutcome: confirmed" in timeline
    assert "Completed" in page.locator("dl.facts").inner_text()
    assert page.get_by_role("heading", name="Actions").count() == 0  # nothing to do when it ended


CAPPED = """
name: Capped
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
send_window: null
frequency_cap: {per_day: 1, per_7_days: 3, when_capped: skip}
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: send_sms, to: phone, body: "First of the day"}
      - {id: 20, type: send_sms, to: phone, body: "One too many"}
      - {id: 30, type: end, outcome: done}
"""


def test_a_capped_send_is_on_the_timeline(console_server: Server, page: Any) -> None:
    tenant = console_server.tenant(CAPPED)
    iid = trigger_one(console_server.http, tenant, {"phone": "+13125550199"})
    console_server.run_worker()
    _operator(console_server, tenant, page)
    page.goto(_page_url(console_server, tenant, iid))
    timeline = page.get_by_role("table", name="Timeline").inner_text()
    assert "First of the day" in timeline and "One too many" not in timeline
    assert "Text message not sent: frequency cap\nlimit: 1 per day" in timeline
    assert "Ended\noutcome: done" in timeline


def test_cancel_asks_first_then_cancels(console_server: Server, tenant: Tenant, page: Any) -> None:
    iid = _start(console_server, tenant, "Tom Hart")
    login = _operator(console_server, tenant, page)
    page.goto(_page_url(console_server, tenant, iid))
    questions: list[str] = []
    page.once("dialog", lambda d: (questions.append(d.message), d.dismiss()))
    page.get_by_role("button", name="Cancel this instance").click()
    assert questions and "Cancel this instance?" in questions[0]
    assert _instance(console_server, tenant, iid)["status"] == "InProgress"  # dismissed: nothing sent
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Cancel this instance").click()
    page.wait_for_load_state()
    assert page.get_by_role("status").inner_text() == "The instance was cancelled."
    assert "Cancelled" in page.locator("dl.facts").inner_text()
    assert "by: console" in page.get_by_role("table", name="Timeline").inner_text()
    assert page.get_by_role("button", name="Cancel this instance").count() == 0  # nothing left to do
    assert _instance(console_server, tenant, iid)["status"] == "Cancelled"
    cancels = _audit(console_server, tenant.org_id, audit.Action.INSTANCES_CANCEL)
    assert [(e.actor_id, e.target_ids, e.count) for e in cancels] == [(login.user_id, (iid,), 1)]


def test_a_subflow_with_bad_then_good_input(console_server: Server, tenant: Tenant, page: Any) -> None:
    iid = _start(console_server, tenant, "Ravi Patel", phoneNumber=PHONE)
    console_server.run_worker()
    login = _operator(console_server, tenant, page)
    page.goto(_page_url(console_server, tenant, iid))
    form = page.get_by_role("region", name="Start a subflow")
    form.get_by_label("Subflow").select_option(label="Appointment Rescheduled")
    form.get_by_label("appointmentDateTime").fill("next tuesday")
    form.get_by_label("phoneNumber").fill("not a phone")
    form.get_by_role("button", name="Start subflow").click()
    page.wait_for_load_state()
    problems = page.get_by_role("alert", name="Problems with the subflow").inner_text()
    assert 'appointmentDateTime: "next tuesday" is not a valid datetime' in problems
    assert 'phoneNumber: "not a phone" is not a valid phone number' in problems
    assert form.get_by_label("appointmentDateTime").input_value() == "next tuesday"  # kept
    client = session_client(console_server, login)
    nul = {"csrf_token": page_csrf(client), "flow": "rescheduled", "p.patientName": "a\x00b"}
    r = client.post(
        f"/console/instances/{tenant.journey_id}/{iid}/subflow", data=nul, headers=_origin(console_server)
    )
    assert r.status_code == 400 and "patientName: must not contain NUL" in r.text
    assert _audit(console_server, tenant.org_id, audit.Action.INSTANCES_TRIGGER) == []
    assert "Subflow started" not in page.get_by_role("table", name="Timeline").inner_text()

    form.get_by_label("appointmentDateTime").fill("2026-11-27 14:00")
    form.get_by_label("phoneNumber").fill("")
    form.get_by_role("button", name="Start subflow").click()
    page.wait_for_load_state()
    assert page.get_by_role("status").inner_text() == "The subflow was started."
    assert "2026-11-27 14:00" in page.get_by_role("table", name="Parameters").inner_text()
    timeline = page.get_by_role("table", name="Timeline").inner_text()
    assert "Subflow started" in timeline and "changedParameters: appointmentDateTime" in timeline
    console_server.run_worker()
    page.reload()
    timeline = page.get_by_role("table", name="Timeline").inner_text()
    assert "Ravi Patel, your appointment has moved to" in timeline
    assert "Waiting until 2026-11-26 14:00 CST" in timeline
    triggers = _audit(console_server, tenant.org_id, audit.Action.INSTANCES_TRIGGER)
    assert [(e.actor_id, e.target_ids, e.count) for e in triggers] == [(login.user_id, (iid,), 1)]


def test_a_viewer_sees_no_actions_and_may_not_post_them(
    console_server: Server, tenant: Tenant, page: Any
) -> None:
    iid = _start(console_server, tenant, "Lee Chen")
    viewer = make_user(console_server, tenant.org_id, "viewer")
    sign_in(page, console_server, viewer)
    page.goto(_page_url(console_server, tenant, iid))
    assert page.get_by_role("table", name="Timeline").is_visible()
    assert page.get_by_role("button", name="Cancel this instance").count() == 0
    assert page.get_by_role("button", name="Start subflow").count() == 0
    client = session_client(console_server, viewer)
    csrf = page_csrf(client, f"/console/instances/{tenant.journey_id}/{iid}")
    headers = {"Origin": console_server.base_url}
    base = f"/console/instances/{tenant.journey_id}/{iid}"
    r = client.post(f"{base}/cancel", data={"csrf_token": csrf}, headers=headers)
    assert r.status_code == 403 and "Not allowed" in r.text
    r = client.post(
        f"{base}/subflow",
        data={"csrf_token": csrf, "flow": "rescheduled", "p.appointmentDateTime": "2026-12-01 10:00"},
        headers=headers,
    )
    assert r.status_code == 403
    after = _instance(console_server, tenant, iid)
    assert after["status"] == "InProgress"
    assert after["parameters"]["appointmentDateTime"] == APPOINTMENT
    assert [e["type"] for e in after["events"]] == ["started"]
    for action in (audit.Action.INSTANCES_CANCEL, audit.Action.INSTANCES_TRIGGER):
        assert _audit(console_server, tenant.org_id, action) == []


def test_a_post_without_the_csrf_token_is_refused(console_server: Server, tenant: Tenant) -> None:
    iid = _start(console_server, tenant, "Ola Berg")
    client = session_client(console_server, make_user(console_server, tenant.org_id, "operator"))
    r = client.post(
        f"/console/instances/{tenant.journey_id}/{iid}/cancel", headers={"Origin": console_server.base_url}
    )
    assert r.status_code == 403 and "CSRF" in r.text
    assert _instance(console_server, tenant, iid)["status"] == "InProgress"


def test_unknown_and_other_orgs_instances_are_not_found(
    console_server: Server, tenant: Tenant, page: Any
) -> None:
    other = console_server.tenant()
    theirs = _start(console_server, other, "Not Yours")
    _operator(console_server, tenant, page)
    page.goto(_page_url(console_server, tenant, "0" * 26))
    assert page.get_by_role("heading", name="Not found").is_visible()
    response = page.goto(f"{console_server.base_url}/console/instances/{other.journey_id}/{theirs}")
    assert response is not None and response.status == 404
    assert page.get_by_role("heading", name="Not found").is_visible()
    assert "Not Yours" not in page.content()
    client: httpx.Client = session_client(console_server, make_user(console_server, tenant.org_id, "admin"))
    csrf = page_csrf(client)
    headers = {"Origin": console_server.base_url}
    r = client.post(
        f"/console/instances/{other.journey_id}/{theirs}/cancel", data={"csrf_token": csrf}, headers=headers
    )
    assert r.status_code == 404
    r = client.get("/console/instances", params={"journey": other.journey_id})
    assert r.status_code == 404
    assert _instance(console_server, other, theirs)["status"] == "InProgress"
    assert _audit(console_server, tenant.org_id, audit.Action.INSTANCE_VIEW) == []


def test_a_completed_instance_cannot_be_cancelled(console_server: Server, tenant: Tenant) -> None:
    iid = _start(console_server, tenant, "Eve Moss")
    client = session_client(console_server, make_user(console_server, tenant.org_id, "operator"))
    r = console_server.http.delete(tenant.url(f"/{iid}/execution"), headers=tenant.headers)
    assert r.status_code == 204
    base = f"/console/instances/{tenant.journey_id}/{iid}"
    csrf = page_csrf(client, base)
    assert "Cancel this instance" not in client.get(base).text
    headers = {"Origin": console_server.base_url}
    r = client.post(f"{base}/subflow", data={"csrf_token": csrf, "flow": "rescheduled"}, headers=headers)
    assert r.status_code == 409 and "only an InProgress instance can start a subflow" in r.text
    r = client.post(f"{base}/cancel", data={"csrf_token": csrf}, headers=headers)
    assert r.status_code == 303  # it already was: nothing to do
    assert [e.count for e in _audit(console_server, tenant.org_id, audit.Action.INSTANCES_CANCEL)] == [0]


# ---------------------------------------------------------------------------- through Twilio
TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "twilio-auth-token-for-console-tests"


@pytest.fixture(scope="module")
def twilio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, FakeTwilio]]:
    """A server sending SMS through a fake Twilio (and taking its signed status callbacks)."""
    with FakeTwilio(TWILIO_SID, TWILIO_TOKEN) as fake, own_database(tmp_path_factory.mktemp("tw")) as url:
        server = Server(
            url,
            public_url_is_own=True,
            secret_key=strong_key("console-twilio-tests"),
            twilio_api_base=fake.url,
            console_login_attempts=100_000,
        )
        yield server, fake
        server.stop()
        server.engine.dispose()


def test_delivery_statuses_and_failures_from_twilio(
    twilio_server: tuple[Server, FakeTwilio], page: Any
) -> None:
    server, fake = twilio_server
    tenant = server.tenant()
    server.set_channel(
        tenant.org_id, "sms", "twilio", twilio_config(TWILIO_SID, TWILIO_TOKEN, "+13125550100")
    )
    delivered = _start(server, tenant, "Kim Park", phoneNumber=PHONE)
    server.run_worker()
    sid = next(r.sid for r in fake.requests if r.sid)
    fake.reject_next(1, status=400, code=21211)
    rejected = _start(server, tenant, "Sam Young", phoneNumber="+13125550143")
    server.run_worker()
    url = f"{server.base_url}/channels/twilio/{tenant.org_id}/status"
    params = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    r = server.http.post(url, data=params, headers={"X-Twilio-Signature": signature})
    assert r.status_code == 204, r.text
    _operator(server, tenant, page)
    page.goto(_page_url(server, tenant, delivered))
    timeline = page.get_by_role("table", name="Timeline").inner_text()
    assert "Hi Kim Park, your appointment is booked" in timeline
    assert "Delivery: undelivered" in timeline
    assert "Text message sent\nprovider: twilio" in timeline
    assert "Delivery status\nstatus: undelivered; errorCode: 30003" in timeline
    page.goto(_page_url(server, tenant, rejected))
    timeline = page.get_by_role("table", name="Timeline").inner_text()
    assert "Delivery: failed — Twilio error 21211" in timeline
    assert "Text message failed" in timeline and "errorCode: 21211" in timeline
    assert page.locator("tr.problem-row").count() == 1


def test_a_send_held_for_the_send_window_is_shown_with_its_time(
    twilio_server: tuple[Server, FakeTwilio], page: Any
) -> None:
    server, _ = twilio_server
    tenant = server.tenant()  # no SMS provider: the built-in outbox
    now = server.clock.now().astimezone(ZoneInfo("America/Chicago"))
    late = now.replace(hour=22, minute=0, second=0, microsecond=0)  # after the 08:00-21:00 window
    server.clock.set(late.astimezone(ZoneInfo("UTC")))
    iid = _start(server, tenant, "Nia Ford", phoneNumber=PHONE)
    server.run_worker()
    opening = _chicago((late + timedelta(days=1)).replace(hour=8))
    _operator(server, tenant, page)
    page.goto(_page_url(server, tenant, iid))
    timeline = page.get_by_role("table", name="Timeline").inner_text()
    assert f"Send held until {opening}" in timeline and "reason: outside the send window" in timeline
    held = page.locator("ul.held").inner_text()
    assert f"Text message to {PHONE} goes at {opening} (outside the send window)" in held
    assert "Hi Nia Ford, your appointment is booked" in held  # a preview from today's parameters
    assert f"Next step due\n{opening}" in page.locator("dl.facts").inner_text()
