"""Admin › Audit log in the console: entries newest first, paged, filtered by action and actor,
with the chain's verification at the top (and a tampered chain shown as broken)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from support.admin import audit_actions
from support.browser import screenshot
from support.console import make_user, session_client, sign_in
from support.server import Server

from journeys.accounts import audit
from journeys.accounts.audit import Action, Actor, ActorKind
from journeys.store.db import transaction


@pytest.fixture()
def org(console_server: Server) -> str:
    return console_server.tenant().org_id


def _record_many(server: Server, org: str, n: int) -> None:
    actor = Actor(ActorKind.CLI, "ops", server.clock.now())
    with transaction(server.engine) as conn:
        for i in range(n):
            audit.record(conn, actor.entry(org, Action.INSTANCE_VIEW, "instance", (f"inst-{i}",)))


def test_the_audit_page_shows_entries_and_the_chain(console_server: Server, page: Any, org: str) -> None:
    admin = make_user(console_server, org, "admin")
    _record_many(console_server, org, 60)
    sign_in(page, console_server, admin)  # records auth.login: the newest entry
    page.goto(f"{console_server.base_url}/console/admin/audit")
    assert page.get_by_text("Chain intact").is_visible()
    total = len(audit_actions(console_server, org))
    assert f"all {total} entries verified" in page.locator("#chain-status").inner_text()
    first_row = page.locator("tbody tr").first.inner_text()
    assert "auth.login" in first_row and admin.user_id in first_row and "127.0.0.1" in first_row
    assert page.locator("tbody tr").count() == 50
    screenshot(page, "admin-audit")
    page.get_by_role("link", name="Older entries").click()
    assert page.locator("tbody tr").count() == total - 50
    assert "inst-0" in page.content()

    page.goto(f"{console_server.base_url}/console/admin/audit")
    page.get_by_label("Action").select_option("auth.login")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("tbody tr").count() == 1
    page.goto(f"{console_server.base_url}/console/admin/audit?actor=ops")
    assert page.locator("tbody tr").count() == 50
    assert "auth.login" not in page.locator("tbody").inner_text()


def test_a_tampered_chain_is_shown_broken(console_server: Server, org: str) -> None:
    client = session_client(console_server, make_user(console_server, org, "admin"))
    _record_many(console_server, org, 3)
    with console_server.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET count = 99 WHERE org_id = :o AND seq = 2"), {"o": org})
    page = client.get("/console/admin/audit")
    assert page.status_code == 200
    assert "Chain broken at entry 2" in page.text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("action=nothing.at_all", "unknown action"),
        ("before=abc", "sequence number"),
        ("actor=" + "x" * 80, "64"),
    ],
)
def test_bad_filters_get_a_clear_answer(console_server: Server, org: str, query: str, message: str) -> None:
    client = session_client(console_server, make_user(console_server, org, "admin"))
    response = client.get(f"/console/admin/audit?{query}")
    assert response.status_code == 400
    assert message in response.text


def test_a_designer_may_not_read_the_audit_log(console_server: Server, org: str) -> None:
    client = session_client(console_server, make_user(console_server, org, "designer"))
    response = client.get("/console/admin/audit")
    assert response.status_code == 403
    assert "auth.login" not in response.text
