"""The console's replies inbox: unmatched replies that need a human (consent keywords and replies
an instance took are not there), "mark handled" recording who and when (audited in the same
transaction), handled ones hidden unless asked for, and a viewer who may look but not handle —
no button, and a direct POST with a valid session and CSRF token is refused (403), nothing
changed. In a real browser, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from support.audit import audit_actions
from support.browser import screenshot
from support.console import make_user, page_csrf, session_client, sign_in
from support.server import Server, Tenant

from journeys.instances import replies
from journeys.store.db import read_only


@pytest.fixture()
def tenant(console_server: Server) -> Tenant:
    return console_server.tenant()


def _reply(srv: Server, t: Tenant, phone: str, body: str) -> str:
    r = srv.http.post(f"/api/orgs/{t.org_id}/replies", json={"from": phone, "body": body}, headers=t.headers)
    assert r.status_code == 200, r.text
    assert r.json()["matched"] is False
    return str(r.json()["id"])


def _handled(srv: Server, org_id: str, message_id: str) -> replies.InboundReply:
    phi = srv.worker.vault.org(org_id)  # the server seals replies with the org's key
    with read_only(srv.engine) as conn:
        [found] = [
            r
            for r in replies.inbox(conn, phi, include_handled=True, before=None, limit=100)
            if r.message_id == message_id
        ]
    return found


def test_an_operator_marks_a_reply_handled(console_server: Server, tenant: Tenant, page: Any) -> None:
    srv, org = console_server, tenant.org_id
    first = _reply(srv, tenant, "+13125550142", "Can I come on Friday instead?")
    second = _reply(srv, tenant, "+13125550143", "Wrong number, who is this?")
    _reply(srv, tenant, "+13125550144", "STOP")  # a consent keyword: handled, not in the inbox
    operator = make_user(srv, org, "operator")
    sign_in(page, srv, operator, next_path="/console/replies")
    assert page.get_by_role("heading", name="Replies that need a human").is_visible()
    table = page.locator("table")
    assert "Can I come on Friday instead?" in table.inner_text()
    assert "Wrong number, who is this?" in table.inner_text()
    assert "STOP" not in table.inner_text()
    assert table.locator("tbody tr").count() == 2
    screenshot(page, "replies")
    page.get_by_role("button", name="Mark handled (reply from +13125550142").click()
    page.wait_for_load_state()
    assert page.get_by_role("status").inner_text() == "Marked as handled."
    assert "Can I come on Friday" not in page.locator("table").inner_text()  # hidden by default
    found = _handled(srv, org, first)
    assert found.handled_by == operator.user_id and found.handled_at == srv.clock.now()
    assert _handled(srv, org, second).handled_at is None
    # the toggle shows handled ones, with who handled them
    page.get_by_label("Show handled replies too").check()
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state()
    row = page.locator("tbody tr", has_text="Can I come on Friday")
    assert f"by {operator.email}" in row.inner_text()
    assert row.get_by_role("button").count() == 0
    [entry] = audit_actions(srv, org, "reply.handled", operator.user_id)
    assert (entry.target_kind, entry.target_ids) == ("reply", (first,))
    views = audit_actions(srv, org, "replies.view", operator.user_id)
    assert [v.count for v in views] == [2, 1, 2]


def test_handling_twice_keeps_the_first_and_an_unknown_reply_is_404(
    console_server: Server, tenant: Tenant
) -> None:
    srv, org = console_server, tenant.org_id
    reply = _reply(srv, tenant, "+13125550150", "Is parking free?")
    one, two = make_user(srv, org, "operator"), make_user(srv, org, "admin")
    for login in (one, two):
        client = session_client(srv, login)
        r = client.post(
            f"/console/replies/{reply}/handled",
            data={"csrf_token": page_csrf(client, "/console/replies")},
            headers={"Origin": srv.base_url},
        )
        assert r.status_code == 303
    assert r.headers["location"] == "/console/replies?done=already"
    assert _handled(srv, org, reply).handled_by == one.user_id
    assert len(audit_actions(srv, org, "reply.handled")) == 1
    missing = client.post(
        "/console/replies/no-such-reply/handled",
        data={"csrf_token": page_csrf(client, "/console/replies")},
        headers={"Origin": srv.base_url},
    )
    assert missing.status_code == 404 and "no unmatched reply with that id" in missing.text
    nul = client.post(
        "/console/replies/a%00b/handled",
        data={"csrf_token": page_csrf(client, "/console/replies")},
        headers={"Origin": srv.base_url},
    )
    assert nul.status_code in (400, 404)  # refused, never a 500
    assert client.get("/console/replies?after=garbage").status_code == 400


def test_a_viewer_sees_the_inbox_but_cannot_handle(console_server: Server, tenant: Tenant, page: Any) -> None:
    srv, org = console_server, tenant.org_id
    reply = _reply(srv, tenant, "+13125550160", "Who do I call about my bill?")
    viewer = make_user(srv, org, "viewer")
    sign_in(page, srv, viewer, next_path="/console/replies")
    assert "Who do I call about my bill?" in page.locator("table").inner_text()
    assert page.get_by_role("button", name="Mark handled").count() == 0
    assert "Not yet handled" in page.locator("table").inner_text()
    client = session_client(srv, viewer)
    r = client.post(
        f"/console/replies/{reply}/handled",
        data={"csrf_token": page_csrf(client, "/console/replies")},
        headers={"Origin": srv.base_url},
    )
    assert r.status_code == 403 and "the operator role or above" in r.text
    assert _handled(srv, org, reply).handled_at is None
    assert audit_actions(srv, org, "reply.handled") == []
    # without the CSRF token even an operator is refused
    operator = session_client(srv, make_user(srv, org, "operator"))
    r = operator.post(f"/console/replies/{reply}/handled", data={}, headers={"Origin": srv.base_url})
    assert r.status_code == 403 and _handled(srv, org, reply).handled_at is None
