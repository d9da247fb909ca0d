"""The console's Start from a spreadsheet page, in a real browser: a CSV with good and bad rows is
mapped, previewed (the rejected rows by line, with the API's messages), started (only the good
rows, audited) and its report downloaded; bad uploads and roles over plain HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from support.browser import screenshot
from support.console import make_user, page_csrf, session_client, sign_in
from support.server import Server, Tenant

from journeys.accounts import audit
from journeys.store.db import read_only

# The tenant's journey (tests/data/classic-reminder.yaml): patientId, patientName, appointmentId
# (the identifier), appointmentDateTime (a datetime), phoneNumber (optional). Far-future times.
GOOD_AND_BAD = (
    "patientId,patientName,appointmentId,When\n"
    "p1,Pat One,A1,2099-03-01 09:00\n"  # line 2
    "p2,Pat Two,,2099-03-01 09:00\n"  # line 3: appointmentId missing
    "\n"  # line 4: blank, skipped
    "p3,Pat Three,A3,next tuesday\n"  # line 5: not a datetime
    "p4,Pat Four,A4,2099-03-02 09:00\n"  # line 6
)
HEADER = "patientId,patientName,appointmentId,appointmentDateTime\n"


@pytest.fixture()
def tenant(console_server: Server) -> Tenant:
    return console_server.tenant()


def _instances(server: Server, tenant: Tenant) -> int:
    return server.count("journey_instances", tenant.org_id)


def _triggers(server: Server, tenant: Tenant) -> list[audit.AuditEntry]:
    with read_only(server.engine) as conn:
        entries = [r.entry for r in audit.export(conn, tenant.org_id)]
    return [e for e in entries if e.action == "instances.trigger" and e.actor_kind == "user"]


def _choose_file(page: Any, path: Path) -> None:
    page.get_by_label("CSV file").set_input_files(str(path))
    page.locator("#map-patientId").wait_for()


def test_a_spreadsheet_with_bad_rows_is_previewed_started_and_reported(
    console_server: Server, page: Any, tenant: Tenant, tmp_path: Path
) -> None:
    login = make_user(console_server, tenant.org_id, "operator")
    sign_in(page, console_server, login)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Start from a spreadsheet").click()
    page.wait_for_load_state()
    path = tmp_path / "appointments.csv"
    path.write_text(GOOD_AND_BAD, encoding="utf-8")
    _choose_file(page, path)
    # same-named columns are chosen; the others are the user's choice
    assert page.locator("#map-patientId").input_value() == "patientId"
    assert page.locator("#map-appointmentDateTime").input_value() == ""
    page.get_by_label("appointmentDateTime").select_option("When")
    page.get_by_label("The rows' time zone").fill("America/Chicago")
    screenshot(page, "start")
    page.get_by_role("button", name="Preview the rows").click()
    page.get_by_role("heading", name="Preview: 4 rows for Appointment Reminder").wait_for()
    assert "2 would start, 2 rejected" in page.locator("#preview").get_by_role("status").inner_text()
    rows = page.locator("table.rejected tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).locator("th").inner_text() == "3"
    assert rows.nth(0).locator("td").inner_text() == "appointmentId: required parameter is missing"
    assert rows.nth(1).locator("th").inner_text() == "5"
    assert "is not a valid datetime" in rows.nth(1).locator("td").inner_text()
    screenshot(page, "start-preview")
    assert _instances(console_server, tenant) == 0  # a preview starts nothing
    with read_only(console_server.engine) as conn:  # but it tells which are active: a search
        entries = [r.entry for r in audit.export(conn, tenant.org_id)]
    found = [e for e in entries if e.action == "instances.search" and e.actor_kind == "user"]
    assert [(e.count, e.target_ids, e.actor_id) for e in found] == [(4, (tenant.journey_id,), login.user_id)]
    with page.expect_download() as preview_report:
        page.get_by_role("button", name="Download the rejected rows (CSV)").click()
    lines = Path(preview_report.value.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "row,problem" and [line.split(",")[0] for line in lines[1:]] == ["3", "5"]

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Start the journey").click()
    page.get_by_role("heading", name="Done").wait_for()
    assert "Batch 1 of 1 (lines 2–6): 2 started, 2 rejected" in page.locator("ol.progress").inner_text()
    assert page.get_by_role("status").inner_text() == "Started 2, rejected 2."
    assert _instances(console_server, tenant) == 2
    entries = _triggers(console_server, tenant)
    assert [(e.count, e.target_kind, e.actor_id) for e in entries] == [(2, "batch", login.user_id)]
    with page.expect_download() as report:
        page.get_by_role("button", name="Download the rejected rows (CSV)").click()
    assert report.value.suggested_filename == "rejected-rows.csv"
    text = Path(report.value.path()).read_text(encoding="utf-8")
    assert text.splitlines()[1].startswith("3,appointmentId: required parameter is missing")
    assert '5,"appointmentDateTime: ""next tuesday"" is not a valid datetime' in text
    assert "Pat" not in text and "p1" not in text  # line numbers and messages only


def test_the_page_shows_a_bad_step_in_place(
    console_server: Server, page: Any, tenant: Tenant, tmp_path: Path
) -> None:
    sign_in(page, console_server, make_user(console_server, tenant.org_id, "admin"))
    page.goto(f"{console_server.base_url}/console/start")
    path = tmp_path / "rows.csv"
    path.write_text(HEADER + "p1,Pat,A1,2099-03-01 09:00\n", encoding="utf-8")
    _choose_file(page, path)
    page.get_by_role("button", name="Preview the rows").click()
    alert = page.locator("#preview").get_by_role("alert")
    alert.wait_for()
    assert "choose the rows' time zone" in alert.inner_text()
    page.get_by_label("The rows' time zone").fill("UTC")
    page.get_by_role("button", name="Preview the rows").click()
    page.get_by_text("1 would start, 0 rejected").wait_for()
    assert _instances(console_server, tenant) == 0


def _post(
    client: httpx.Client, server: Server, path: str, data: dict[str, str], content: bytes | None
) -> Any:
    files = {"file": ("rows.csv", content or b"", "text/csv")}
    return client.post(path, data=data, files=files, headers={"Origin": server.base_url})


@pytest.mark.parametrize(
    ("change", "content", "message"),
    [
        (
            {},
            b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe",
            "this is not a CSV file we can read: the file is not UTF-8",
        ),
        ({}, b"", "choose a CSV file"),
        ({}, b"  \n\n", "the file is empty"),
        ({}, HEADER.encode(), "the file has no rows after the header"),
        ({}, b"patientId,PatientId\np1,p2\n", "duplicate column headers: PatientId, patientId"),
        ({}, b"a,b\n1,2\n", "patientId: no column &#39;patientId&#39; in the header"),
        ({"journey": "no-such-journey"}, None, "there is no journey &#39;no-such-journey&#39;"),
        ({"tz": "Mars/Olympus"}, None, "&#39;Mars/Olympus&#39; is not an IANA time zone"),
        ({"tz": ""}, None, "choose the rows&#39; time zone"),
        ({"map.appointmentId": ""}, None, "choose a column for the required parameter appointmentId"),
        ({"map.nothing": "patientId"}, None, "the journey has no parameter &#39;nothing&#39;"),
        ({"map.patientName": "patientId"}, None, "the column &#39;patientId&#39; is chosen for both"),
    ],
)
def test_bad_input_is_refused_and_starts_nothing(
    console_server: Server, tenant: Tenant, change: dict[str, str], content: bytes | None, message: str
) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, "operator"))
    form = {
        "csrf_token": page_csrf(client, "/console/start"),
        "journey": tenant.journey_id,
        "tz": "America/Chicago",
        "map.patientId": "patientId",
        "map.patientName": "patientName",
        "map.appointmentId": "appointmentId",
        "map.appointmentDateTime": "appointmentDateTime",
        **change,
    }
    body = (HEADER + "p1,Pat,A1,2099-03-01 09:00\n").encode() if content is None else content
    for step in ("trigger", "preview"):
        response = _post(client, console_server, f"/console/start/{step}", form, body)
        assert response.status_code == 400, (step, response.text)
        assert message in response.text, (step, response.text)
    assert _instances(console_server, tenant) == 0
    assert _triggers(console_server, tenant) == []


def test_a_file_over_the_limit_is_refused(console_server: Server, tenant: Tenant) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, "operator"))
    form = {"csrf_token": page_csrf(client, "/console/start"), "journey": tenant.journey_id, "tz": "UTC"}
    big = HEADER.encode() + b"p1,Pat,A1,2099-03-01 09:00\n" * (11 * 1024 * 1024 // 27)
    response = _post(client, console_server, "/console/start/trigger", form, big)
    assert response.status_code == 400 and "the file is too large: the limit is 10 MB" in response.text
    assert _instances(console_server, tenant) == 0


def test_without_a_mapping_the_same_named_columns_are_used(console_server: Server, tenant: Tenant) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, "operator"))
    form = {"csrf_token": page_csrf(client, "/console/start"), "journey": tenant.journey_id, "tz": "UTC"}
    rows = HEADER + "".join(f"p{n},Pat,A{n},2099-03-0{n} 09:00\n" for n in range(1, 4))
    response = _post(client, console_server, "/console/start/trigger", form, rows.encode())
    assert response.status_code == 200
    assert "Started 3, rejected 0." in response.text
    assert _instances(console_server, tenant) == 3
    assert [e.count for e in _triggers(console_server, tenant)] == [3]


@pytest.mark.parametrize("role", ["viewer"])
def test_a_viewer_cannot_start_a_spreadsheet(console_server: Server, tenant: Tenant, role: str) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, role))
    assert client.get("/console/start").status_code == 403
    form = {"csrf_token": page_csrf(client), "journey": tenant.journey_id, "tz": "UTC"}
    rows = (HEADER + "p1,Pat,A1,2099-03-01 09:00\n").encode()
    for step in ("trigger", "preview", "columns"):
        response = _post(client, console_server, f"/console/start/{step}", form, rows)
        assert response.status_code == 403 and "needs the operator role" in response.text
    assert _instances(console_server, tenant) == 0


def test_starting_needs_the_csrf_token(console_server: Server, tenant: Tenant) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, "operator"))
    form = {"journey": tenant.journey_id, "tz": "UTC"}
    rows = (HEADER + "p1,Pat,A1,2099-03-01 09:00\n").encode()
    response = _post(client, console_server, "/console/start/trigger", form, rows)
    assert response.status_code == 403 and "CSRF" in response.text
    assert _instances(console_server, tenant) == 0


def test_a_forged_report_is_refused(console_server: Server, tenant: Tenant) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, "operator"))
    token = page_csrf(client, "/console/start")
    origin = {"Origin": console_server.base_url}
    bad = client.post("/console/start/report", data={"csrf_token": token, "report": "{}"}, headers=origin)
    assert bad.status_code == 400 and "the report could not be read" in bad.text
    good = client.post(
        "/console/start/report",
        data={"csrf_token": token, "report": '[[7, ["=cmd()", "x: bad"]]]'},
        headers=origin,
    )
    assert good.status_code == 200
    assert good.text.splitlines() == ["row,problem", "7,'=cmd()", "7,x: bad"]


def test_a_large_file_is_started_in_chunks_of_ten_thousand(console_server: Server, tenant: Tenant) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, "operator"))
    form = {"csrf_token": page_csrf(client, "/console/start"), "journey": tenant.journey_id, "tz": "UTC"}
    rows = HEADER + "".join(f"p{n},Pat,A{n},2099-03-01 09:00\n" for n in range(10_001)) + "p1,Pat,,x\n"
    with client.stream(
        "POST",
        "/console/start/trigger",
        data=form,
        files={"file": ("rows.csv", rows.encode(), "text/csv")},
        headers={"Origin": console_server.base_url},
    ) as response:
        assert response.status_code == 200
        parts = list(response.iter_text())
    page = "".join(parts)
    assert "Batch 1 of 2 (lines 2–10001): 10000 started, 0 rejected" in page
    assert "Batch 2 of 2 (lines 10002–10003): 1 started, 1 rejected" in page
    assert "Started 10001, rejected 1." in page
    assert _instances(console_server, tenant) == 10_001
    assert sorted(e.count or 0 for e in _triggers(console_server, tenant)) == [1, 10_000]


def test_without_a_mapping_a_missing_required_column_is_named(console_server: Server, tenant: Tenant) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, "operator"))
    form = {"csrf_token": page_csrf(client, "/console/start"), "journey": tenant.journey_id, "tz": "UTC"}
    rows = b"patientId,patientName\np1,Pat\n"
    response = _post(client, console_server, "/console/start/trigger", form, rows)
    assert response.status_code == 400
    assert "choose a column for the required parameters appointmentId, appointmentDateTime" in response.text
    assert _instances(console_server, tenant) == 0
