"""The console's Design page, in a real browser: a bad definition's problems with their lines, the
simulator's preview with sample parameters and a reply, publishing a new version (audited), and
the checks a browser would not make (roles, sizes) over plain HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.browser import screenshot
from support.console import make_user, page_csrf, session_client, sign_in
from support.journeys import reply_journey
from support.server import Server, Tenant

import journeys.catalog.service as catalog
from journeys.accounts import audit
from journeys.store.db import read_only

BAD = """name: Broken
parameters:
  - {name: phone, type: phone}
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: send_sms, to: phone, body: "Hi"}
      - {id: 20, type: wait, duration: soon}
      - {id: 30, type: goto, target: 99}
"""


@pytest.fixture()
def tenant(console_server: Server) -> Tenant:
    return console_server.tenant()


def _latest(server: Server, tenant: Tenant) -> catalog.JourneyVersion:
    with read_only(server.engine) as conn:
        jv = catalog.get_latest(conn, tenant.org_id, tenant.journey_id)
    assert jv is not None
    return jv


def _actions(server: Server, org: str) -> list[audit.AuditRecord]:
    with read_only(server.engine) as conn:
        return [r for r in audit.export(conn, org) if r.entry.actor_kind != "token"]  # not API reads


def _design(page: Any, server: Server, tenant: Tenant, role: str = "designer") -> None:
    sign_in(page, server, make_user(server, tenant.org_id, role))
    page.goto(f"{server.base_url}/console/design")


def test_a_bad_definition_shows_its_problems_with_line_numbers(
    console_server: Server, page: Any, tenant: Tenant
) -> None:
    _design(page, console_server, tenant)
    page.get_by_label("Or paste the definition").fill(BAD)
    page.get_by_role("button", name="Check").click()
    page.wait_for_load_state()
    problems = page.get_by_role("alert").inner_text()
    assert "Line 9" in problems and "soon" in problems
    assert "Line 10" in problems and "99" in problems
    # the lines themselves, numbered, with the problems beside them
    assert "line 9:" in page.locator("#line-9 + .line-note").inner_text()
    assert "duration: soon" in page.locator("#line-9").inner_text()
    # the text is kept for the next try
    assert page.get_by_label("Or paste the definition").input_value() == BAD
    # nothing to preview or publish until the problems are fixed
    assert page.get_by_role("button", name="Publish").count() == 0
    assert page.get_by_role("button", name="Preview").count() == 0
    assert page.get_by_role("button", name="Check again").is_visible()
    screenshot(page, "design")
    assert len(_actions(console_server, tenant.org_id)) == 1  # the login only: nothing published


def test_preview_shows_the_timeline_and_publish_makes_a_new_version(
    console_server: Server, page: Any, tenant: Tenant
) -> None:
    _design(page, console_server, tenant)
    page.get_by_label("Start from an existing journey").select_option(tenant.journey_id)
    page.get_by_role("button", name="Edit a copy").click()
    page.wait_for_load_state()
    text = page.get_by_label("Or paste the definition").input_value()
    assert text.startswith("name: Appointment Reminder")
    page.get_by_label("Or paste the definition").fill(text.replace("We'll remind", "We will remind"))
    page.get_by_role("button", name="Check").click()
    page.wait_for_load_state()
    assert (
        "Publishing makes it version 2 of the journey Appointment Reminder"
        in page.get_by_role("status").inner_text()
    )
    for name, value in {
        "patientId": "p-1",
        "patientName": "Ana",
        "appointmentId": "a-1",
        "appointmentDateTime": "2026-11-10 10:00",
        "phoneNumber": "(312) 555-0100",
    }.items():
        page.locator(f"#param-{name}").fill(value)
    page.get_by_label("Time zone").fill("America/Chicago")
    page.get_by_label("Starts at").fill("2026-11-02 09:00")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_load_state()
    timeline = page.get_by_role("table").inner_text()
    assert "Hi Ana, your appointment is booked" in timeline and "We will remind" in timeline
    assert "sms to +13125550100" in timeline
    assert "Mon 2026-11-09 10:00 CST" in timeline  # the day-before reminder, local time
    assert page.locator("#param-patientName").input_value() == "Ana"  # kept between steps
    screenshot(page, "design-preview")
    page.get_by_role("button", name="Publish").click()
    page.wait_for_load_state()
    assert "Published Appointment Reminder as version 2" in page.get_by_role("status").inner_text()
    jv = _latest(console_server, tenant)
    assert jv.version == 2
    assert "We will remind" in jv.definition.flows[0].steps[0].body  # type: ignore[union-attr]
    published = [
        r.entry for r in _actions(console_server, tenant.org_id) if r.entry.action == "journey.publish"
    ]
    assert [(e.target_kind, e.target_ids) for e in published] == [("journey", (tenant.journey_id,))]
    listed = console_server.http.get(
        f"/chatbotapi/external/orgs/{tenant.org_id}/journeys", headers=tenant.headers
    )
    assert listed.status_code == 200 and "Appointment Reminder" in listed.text


def test_a_reply_choice_takes_its_route_in_the_preview(
    console_server: Server, page: Any, tenant: Tenant
) -> None:
    _design(page, console_server, tenant)
    page.get_by_label("Or paste the definition").fill(reply_journey())
    page.get_by_role("button", name="Check").click()
    page.wait_for_load_state()
    page.locator("#param-key").fill("k-1")
    page.locator("#param-phone").fill("+13125550100")
    page.get_by_label("Reply to Main: step 20").select_option("c")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_load_state()
    timeline = page.get_by_role("table").inner_text()
    assert "confirmed" in timeline and "no_reply" not in timeline
    page.get_by_label("Reply to Main: step 20").select_option("")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_load_state()
    assert "no_reply" in page.get_by_role("table").inner_text()


def test_an_uploaded_file_is_checked_and_published_as_a_new_journey(
    console_server: Server, page: Any, tenant: Tenant, tmp_path: Path
) -> None:
    _design(page, console_server, tenant)
    path = tmp_path / "reply.yaml"
    path.write_text(reply_journey(), encoding="utf-8")
    page.get_by_label("Upload a definition file").set_input_files(str(path))
    page.get_by_role("button", name="Check").click()
    page.wait_for_load_state()
    assert "Publishing makes it a new journey" in page.get_by_role("status").inner_text()
    assert page.get_by_label("Or paste the definition").input_value() == reply_journey()
    page.get_by_role("button", name="Publish").click()
    page.wait_for_load_state()
    assert "Published Reply as version 1" in page.get_by_role("status").inner_text()
    with read_only(console_server.engine) as conn:
        names = {jv.name: jv.version for jv in catalog.list_latest(conn, tenant.org_id)}
    assert names == {"Appointment Reminder": 1, "Reply": 1}


def test_bad_sample_parameters_are_named(console_server: Server, tenant: Tenant) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, "designer"))
    token = page_csrf(client, "/console/design")
    form = {
        "csrf_token": token,
        "definition": reply_journey(),
        "param.key": "k",
        "param.phone": "not a phone",
    }
    response = _post(client, console_server, "/console/design/preview", form)
    assert response.status_code == 400
    assert "Sample parameters: phone" in response.text
    response = _post(
        client,
        console_server,
        "/console/design/preview",
        {**form, "param.phone": "+13125550100", "tz": "Mars/Base"},
    )
    assert response.status_code == 400 and "&#39;Mars/Base&#39; is not an IANA time zone" in response.text


def _post(client: Any, server: Server, path: str, data: dict[str, str], files: Any = None) -> Any:
    return client.post(
        path, data=data, files=files or {"file": ("", b"")}, headers={"Origin": server.base_url}
    )


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_designers_may_publish(console_server: Server, tenant: Tenant, role: str) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, role))
    token = page_csrf(client)
    assert client.get("/console/design").status_code == 403
    text = _latest(console_server, tenant)
    from journeys.definitions.dump import definition_yaml

    form = {"csrf_token": token, "definition": definition_yaml(text.definition)}
    response = _post(client, console_server, "/console/design/publish", form)
    assert response.status_code == 403
    assert "needs the designer role" in response.text
    assert _latest(console_server, tenant).version == 1
    assert not [r for r in _actions(console_server, tenant.org_id) if r.entry.action == "journey.publish"]


def test_publish_needs_the_csrf_token(console_server: Server, tenant: Tenant) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, "admin"))
    response = _post(client, console_server, "/console/design/publish", {"definition": reply_journey()})
    assert response.status_code == 403 and "CSRF" in response.text
    with read_only(console_server.engine) as conn:
        assert len(catalog.list_latest(conn, tenant.org_id)) == 1


def test_bad_input_gets_a_clear_answer(console_server: Server, tenant: Tenant) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, "designer"))
    token = page_csrf(client, "/console/design")
    big = "# " + "x" * (260 * 1024)
    response = _post(
        client, console_server, "/console/design/check", {"csrf_token": token, "definition": big}
    )
    assert response.status_code == 400 and "too large (the limit is 256 KB)" in response.text
    huge = _post(
        client,
        console_server,
        "/console/design/check",
        {"csrf_token": token},
        {"file": ("d.yaml", b"x" * 400_000)},
    )
    assert huge.status_code == 400 and "too large: the limit is 256 KB" in huge.text
    latin1 = _post(
        client,
        console_server,
        "/console/design/check",
        {"csrf_token": token},
        {"file": ("d.yaml", b"name: caf\xe9\n")},
    )
    assert latin1.status_code == 400 and "not UTF-8" in latin1.text
    empty = _post(
        client, console_server, "/console/design/publish", {"csrf_token": token, "definition": "  "}
    )
    assert empty.status_code == 400 and "paste a definition" in empty.text
    bad = _post(client, console_server, "/console/design/publish", {"csrf_token": token, "definition": BAD})
    assert bad.status_code == 400 and "Line 9" in bad.text
    assert client.get("/console/design?from=nope").status_code == 404
    assert _latest(console_server, tenant).version == 1
