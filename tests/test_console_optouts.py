"""The console's opt-outs: the org's opted-out numbers (paged), adding one (phone, channel,
optional reason) and removing one (a reason is required, kept on the number's consent record)
through the same consent service as the API; bad input answered inline with the service's message
(400), every change audited in its own transaction without the number, and a viewer who may look
but not change — no forms, and a direct POST with a valid session and CSRF token is refused (403),
nothing changed. In a real browser, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from support.audit import audit_actions
from support.browser import screenshot
from support.console import make_user, page_csrf, session_client, sign_in
from support.server import Server, Tenant

from journeys.messaging import consent
from journeys.store import consent as consent_store
from journeys.store.db import read_only

BAD_PHONE = "phone: must be a phone number with its country code (e.g. +13125550100) or 10 digits"


@pytest.fixture()
def tenant(console_server: Server) -> Tenant:
    return console_server.tenant()


def _record(srv: Server, org_id: str, phone: str) -> dict[str, Any] | None:
    """The number's consent record, its number and staff's note opened."""
    phi = srv.worker.vault.org(org_id)
    with read_only(srv.engine) as conn:
        row = consent_store.get(conn, org_id, phi.phone_key(phone))
    if row is None:
        return None
    reason = row["reason"]
    return {**row, "phone": phone, "reason": None if reason is None else phi.open(reason)}


def _opted_out(srv: Server, org_id: str) -> list[str]:
    phi = srv.worker.vault.org(org_id)
    with read_only(srv.engine) as conn:
        return [o.phone for o in consent.list_opt_outs(conn, phi, None, 100)]


def test_an_operator_adds_and_removes_an_opt_out(console_server: Server, tenant: Tenant, page: Any) -> None:
    srv, org = console_server, tenant.org_id
    operator = make_user(srv, org, "operator")
    sign_in(page, srv, operator, next_path="/console/opt-outs")
    assert page.get_by_role("heading", name="Opt-outs", exact=True).is_visible()
    assert "No opted-out numbers." in page.content()
    # a bad number: the service's message, inline, and what was typed is kept
    page.get_by_label("Phone number").fill("555-01")
    page.get_by_label("Reason").first.fill("asked at the desk")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Opt out").click()
    assert posted.value.status == 400
    assert page.get_by_role("alert").inner_text() == BAD_PHONE
    assert page.get_by_label("Phone number").input_value() == "555-01"
    # a good one
    page.get_by_label("Phone number").fill("(312) 555-0142")
    page.get_by_role("button", name="Opt out").click()
    page.wait_for_load_state()
    assert page.get_by_role("status").inner_text() == "Opted out: no SMS goes to that number any more."
    row = page.locator("tbody tr", has_text="+13125550142")
    assert "asked at the desk" in row.inner_text() and "by staff (console)" in row.inner_text()
    assert _opted_out(srv, org) == ["+13125550142"]
    screenshot(page, "opt-outs")
    # removing needs a reason
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Opt back in").click()
    page.wait_for_load_state()
    assert "reason: say why the number may be texted again" in page.get_by_role("alert").inner_text()
    assert _opted_out(srv, org) == ["+13125550142"]
    row = page.locator("tbody tr", has_text="+13125550142")
    row.get_by_label("Reason for opting +13125550142 back in").fill("patient texted us from a new phone")
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Opt back in").click()
    page.wait_for_load_state()
    assert page.get_by_role("status").inner_text() == "Opted back in: SMS to that number go out again."
    assert _opted_out(srv, org) == []
    record = _record(srv, org, "+13125550142")
    assert record is not None and (record["status"], record["source"], record["reason"]) == (
        "opted_in",
        "console",
        "patient texted us from a new phone",
    )
    # audited, without the number: an add and a remove by this user, counted
    [added] = audit_actions(srv, org, "optout.add", operator.user_id)
    [removed] = audit_actions(srv, org, "optout.remove", operator.user_id)
    for entry in (added, removed):
        assert (entry.target_kind, entry.target_ids, entry.count) == ("sms_consent", (), 1)
    assert len(audit_actions(srv, org, "optouts.view", operator.user_id)) >= 4


def test_bad_input_is_answered_with_a_400_and_changes_nothing(console_server: Server, tenant: Tenant) -> None:
    srv, org = console_server, tenant.org_id
    client = session_client(srv, make_user(srv, org, "admin"))
    csrf = page_csrf(client, "/console/opt-outs")
    origin = {"Origin": srv.base_url}
    cases = [
        ({"phone": "+1 000 555 0100", "channel": "sms"}, BAD_PHONE),
        ({"phone": "", "channel": "sms"}, BAD_PHONE),
        ({"phone": "+13125550142", "channel": "email"}, "channel: opt-outs are kept for SMS only"),
        ({"phone": "+13125550142", "channel": "sms", "reason": "a\x00b"}, "reason: "),
        (
            {"phone": "+13125550142", "channel": "sms", "reason": "x" * 501},
            "reason: must be a string of at most 500",
        ),
    ]
    for form, message in cases:
        r = client.post("/console/opt-outs", data={"csrf_token": csrf, **form}, headers=origin)
        assert r.status_code == 400 and message in r.text, form
    assert _opted_out(srv, org) == []
    r = client.post(
        "/console/opt-outs/remove",
        data={"csrf_token": csrf, "phone": "+13125550142", "reason": "no longer wanted"},
        headers=origin,
    )
    assert r.status_code == 404 and "that phone number is not opted out" in r.text
    r = client.post(
        "/console/opt-outs/remove", data={"csrf_token": csrf, "phone": "nope", "reason": ""}, headers=origin
    )
    assert r.status_code == 400 and BAD_PHONE in r.text and "reason: say why" in r.text
    assert audit_actions(srv, org, "optout.add") == [] and audit_actions(srv, org, "optout.remove") == []
    # adding twice: the second changes nothing and is not audited again
    for _ in range(2):
        r = client.post(
            "/console/opt-outs",
            data={"csrf_token": csrf, "phone": "3125550199", "channel": "sms"},
            headers=origin,
        )
        assert r.status_code == 303
    assert r.headers["location"] == "/console/opt-outs?done=already"
    assert len(audit_actions(srv, org, "optout.add")) == 1
    assert client.get("/console/opt-outs?after=garbage").status_code == 400


def test_a_viewer_sees_the_list_but_cannot_change_it(
    console_server: Server, tenant: Tenant, page: Any
) -> None:
    srv, org = console_server, tenant.org_id
    admin = session_client(srv, make_user(srv, org, "admin"))
    origin = {"Origin": srv.base_url}
    csrf = page_csrf(admin, "/console/opt-outs")
    r = admin.post(
        "/console/opt-outs",
        data={"csrf_token": csrf, "phone": "+13125550177", "channel": "sms"},
        headers=origin,
    )
    assert r.status_code == 303
    viewer = make_user(srv, org, "viewer")
    sign_in(page, srv, viewer, next_path="/console/opt-outs")
    assert "+13125550177" in page.locator("table").inner_text()
    assert page.get_by_role("button", name="Opt out").count() == 0
    assert page.get_by_role("button", name="Opt back in").count() == 0
    client = session_client(srv, viewer)
    csrf = page_csrf(client, "/console/opt-outs")
    add = client.post(
        "/console/opt-outs",
        data={"csrf_token": csrf, "phone": "+13125550178", "channel": "sms"},
        headers=origin,
    )
    remove = client.post(
        "/console/opt-outs/remove",
        data={"csrf_token": csrf, "phone": "+13125550177", "reason": "asked"},
        headers=origin,
    )
    assert add.status_code == 403 and remove.status_code == 403
    assert _opted_out(srv, org) == ["+13125550177"]
    assert audit_actions(srv, org, "optout.add", viewer.user_id) == []
    assert audit_actions(srv, org, "optout.remove", viewer.user_id) == []


def test_the_list_is_paged(console_server: Server, tenant: Tenant) -> None:
    srv, org = console_server, tenant.org_id
    client = session_client(srv, make_user(srv, org, "operator"))
    csrf = page_csrf(client, "/console/opt-outs")
    phones = [f"+1312555{n:04d}" for n in range(300, 355)]  # 55: more than a page of 50
    for phone in phones:
        r = client.post(
            "/console/opt-outs",
            data={"csrf_token": csrf, "phone": phone, "channel": "sms"},
            headers={"Origin": srv.base_url},
        )
        assert r.status_code == 303
    first = client.get("/console/opt-outs").text
    assert first.count('<th scope="row">') == 50
    assert 'rel="next"' in first
    next_url = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = client.get(next_url).text
    assert second.count('<th scope="row">') == 5 and 'rel="next"' not in second
    listed = {p for p in phones if p in first or p in second}
    assert listed == set(phones)
