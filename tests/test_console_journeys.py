"""The console's journeys pages in a real browser (and over plain HTTP for bad input): the
journeys list with instances by status, a journey version drawn as a graph with live counts at
each step, the version and period pickers, the instances at a step (audited), and the errors."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from typing import Any

import pytest
from support.api import bulk, param_equals
from support.browser import screenshot
from support.console import make_user, session_client, sign_in
from support.journeys import reply_journey
from support.server import Server, Tenant

from journeys.accounts import audit
from journeys.accounts.audit import Action
from journeys.store.db import read_only


@pytest.fixture()
def tenant(console_server: Server) -> Tenant:
    return console_server.tenant(reply_journey())


def start(server: Server, tenant: Tenant, n: int) -> list[str]:
    """Trigger `n` instances through the MedChat API and run the worker: each texts, then waits
    for a reply at step 20. Returns their phone numbers."""
    tag = uuid.uuid4().hex[:8]
    phones = [f"+1312555{_next_number():04d}" for _ in range(n)]
    bulk(
        server.http, tenant, [{"parameters": {"key": f"{tag}-{i}", "phone": p}} for i, p in enumerate(phones)]
    )
    server.run_worker()
    return phones


_numbers = itertools.count(100)


def _next_number() -> int:
    return next(_numbers)


def instance_with(server: Server, tenant: Tenant, phone: str) -> str:
    search = {"filterSpecification": param_equals("phone", phone), "includeParameters": False}
    r = server.http.post(tenant.url("/search"), json=search, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return str(r.json()[0]["id"])


def test_the_journeys_list_counts_instances_by_status(
    console_server: Server, page: Any, tenant: Tenant
) -> None:
    phones = start(console_server, tenant, 3)
    console_server.publish(tenant.org_id, reply_journey())  # version 2, no instances yet
    first = instance_with(console_server, tenant, phones[0])
    r = console_server.http.delete(tenant.url(f"/{first}/execution"), headers=tenant.headers)
    assert r.status_code in (200, 204), r.text
    sign_in(page, console_server, make_user(console_server, tenant.org_id, "viewer"))
    table = page.get_by_role("table")
    journey_row = table.get_by_role("row").filter(has=page.get_by_role("link", name="Reply", exact=True))
    cells = journey_row.get_by_role("cell").all_inner_texts()
    assert cells == ["2", "0", "1", "0"]  # InProgress, Completed, Cancelled, Failed
    v1 = table.get_by_role("row").filter(has=page.get_by_role("link", name="Reply, version 1"))
    assert v1.get_by_role("cell").all_inner_texts() == ["2", "0", "1", "0"]
    v2 = table.get_by_role("row").filter(has=page.get_by_role("link", name="Reply, version 2"))
    assert v2.get_by_role("cell").all_inner_texts() == ["0", "0", "0", "0"]
    screenshot(page, "journeys")


def test_the_journey_page_draws_the_flow_with_live_counts(
    console_server: Server, page: Any, tenant: Tenant
) -> None:
    phones = start(console_server, tenant, 3)
    sign_in(page, console_server, make_user(console_server, tenant.org_id, "viewer"))
    page.get_by_role("link", name="Reply", exact=True).click()
    assert page.get_by_role("heading", level=1).inner_text().startswith("Reply")
    svg = page.locator("svg.flow-graph")
    boxes = svg.locator("a.step-link")
    assert sorted(int(b.get_attribute("data-step")) for b in boxes.all()) == [10, 20, 30, 40, 50, 60]
    # every way on is an arrow, the reply routes labelled
    arrows = {
        (a.get_attribute("data-source"), a.get_attribute("data-target")): [
            t.text_content() for t in a.locator("text").all()
        ]
        for a in svg.locator("g.arrow").all()
    }
    assert arrows[("10", "20")] == []
    assert arrows[("20", "30")] == ["confirmed"]
    assert arrows[("20", "40")] == ["reschedule"]
    assert arrows[("20", "50")] == ["other reply"]
    assert arrows[("20", "60")] == ["no reply in 2d"]
    # live counts: the three texted (passed step 10) and wait at step 20
    step20 = page.get_by_role(
        "link", name="20 · wait for reply (wait for reply): 3 waiting now, 0 passed in the last 24 hours"
    )
    assert step20.count() == 1
    step10 = page.get_by_role(
        "link", name="10 · send sms (send sms): 0 waiting now, 3 passed in the last 24 hours"
    )
    assert step10.count() == 1
    # the text alternative says the same
    steps = page.get_by_role("table")
    row20 = steps.get_by_role("row").filter(has=page.get_by_role("link", name="20 · wait for reply"))
    assert row20.get_by_role("cell").all_inner_texts()[2:4] == ["3", "0"]
    screenshot(page, "journey")
    # a reply moves one on: it passes step 20 and ends at 30
    r = console_server.http.post(
        f"/api/orgs/{tenant.org_id}/replies", json={"from": phones[0], "body": "C"}, headers=tenant.headers
    )
    assert r.status_code < 300, r.text
    console_server.run_worker()
    page.reload()
    assert (
        page.get_by_role(
            "link",
            name="20 · wait for reply (wait for reply): 2 waiting now, 1 passed in the last 24 hours",
        ).count()
        == 1
    )


def test_periods_count_passes_by_the_hour(console_server: Server, page: Any, tenant: Tenant) -> None:
    start(console_server, tenant, 2)
    console_server.clock.advance(timedelta(days=2))
    start(console_server, tenant, 1)  # the first two time out meanwhile: they pass step 20
    console_server.clock.advance(timedelta(minutes=5))
    start(console_server, tenant, 1)  # the same hour, another batch: added to its count
    sign_in(page, console_server, make_user(console_server, tenant.org_id, "viewer"))
    page.goto(f"{console_server.base_url}/console/journeys/{tenant.journey_id}")

    def counts(step: int) -> str:
        return page.locator(f'a.step-link[data-step="{step}"] .step-counts').text_content()

    assert counts(10) == "0 waiting · 2 passed"
    page.get_by_label("Passed in the", exact=True).select_option("7d")
    page.get_by_role("button", name="Show").click()
    assert "period=7d" in page.url
    assert counts(10) == "0 waiting · 4 passed"
    assert counts(20) == "2 waiting · 2 passed"
    assert counts(60) == "0 waiting · 2 passed"  # the timed-out two ended at step 60


def test_the_version_picker_shows_each_version(console_server: Server, page: Any, tenant: Tenant) -> None:
    start(console_server, tenant, 2)
    console_server.publish(tenant.org_id, reply_journey().replace("Reply C to confirm", "Reply C to say yes"))
    sign_in(page, console_server, make_user(console_server, tenant.org_id, "viewer"))
    page.goto(f"{console_server.base_url}/console/journeys/{tenant.journey_id}")
    assert "version 2" in page.get_by_role("heading", level=1).inner_text()
    assert page.locator('a.step-link[data-step="20"] .step-counts').text_content() == "0 waiting · 0 passed"
    page.get_by_label("Version", exact=True).select_option("1")
    page.get_by_role("button", name="Show").click()
    assert "version 1" in page.get_by_role("heading", level=1).inner_text()
    assert page.locator('a.step-link[data-step="20"] .step-counts').text_content() == "2 waiting · 0 passed"


def test_a_step_lists_its_instances_and_the_view_is_audited(
    console_server: Server, page: Any, tenant: Tenant
) -> None:
    start(console_server, tenant, 3)
    login = make_user(console_server, tenant.org_id, "viewer")
    sign_in(page, console_server, login)
    page.goto(f"{console_server.base_url}/console/journeys/{tenant.journey_id}")
    page.locator('a.step-link[data-step="20"]').focus()  # keyboard reachable
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == "Step 20 · wait for reply"
    assert "3 active instances are at this step now" in page.get_by_role("main").inner_text()
    links = page.get_by_role("table").get_by_role("link").all()
    assert len(links) == 3
    href = links[0].get_attribute("href")
    assert href.startswith(f"/console/instances/{tenant.journey_id}/")
    with read_only(console_server.engine) as conn:
        entries = [r.entry for r in audit.export(conn, tenant.org_id)]
    seen = [e for e in entries if e.action == Action.INSTANCES_SEARCH and e.actor_id == login.user_id]
    assert len(seen) == 1
    assert seen[0].target_ids == (tenant.journey_id,) and seen[0].count == 3
    # an empty step says so
    page.goto(f"{console_server.base_url}/console/journeys/{tenant.journey_id}/steps/30")
    assert page.get_by_role("status").inner_text() == "No instance is at this step now."


def test_the_instances_at_a_step_are_paged(console_server: Server, tenant: Tenant) -> None:
    start(console_server, tenant, 55)
    client = session_client(console_server, make_user(console_server, tenant.org_id, "viewer"))
    first = client.get(f"/console/journeys/{tenant.journey_id}/steps/20")
    assert first.status_code == 200
    assert first.text.count("/console/instances/") == 50
    assert 'rel="next"' in first.text
    after = first.text.split("after=")[1].split('"')[0]
    second = client.get(f"/console/journeys/{tenant.journey_id}/steps/20?after={after}")
    assert second.text.count("/console/instances/") == 5
    assert "55 active instances are at this step now; a later page of them" in second.text
    assert 'rel="next"' not in second.text


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/console/journeys/no-such-journey", 404, "there is no journey"),
        ("/console/journeys/{jid}?version=9", 404, "has no version 9"),
        ("/console/journeys/{jid}?version=two", 400, "version must be a whole number"),
        ("/console/journeys/{jid}?version=0", 400, "version must be a whole number"),
        ("/console/journeys/{jid}?period=1y", 400, "period must be one of 24h, 7d, 30d"),
        ("/console/journeys/{jid}/steps/999", 404, "has no step 999"),
        ("/console/journeys/{jid}/steps/x", 404, "there is no step"),
        ("/console/journeys/{jid}/steps/20?version=x", 400, "version must be a whole number"),
    ],
)
def test_bad_input_gets_a_clear_page(
    console_server: Server, tenant: Tenant, path: str, status: int, message: str
) -> None:
    client = session_client(console_server, make_user(console_server, tenant.org_id, "viewer"))
    r = client.get(path.format(jid=tenant.journey_id))
    assert r.status_code == status
    assert message in r.text
    assert r.headers["content-type"].startswith("text/html")


def test_another_orgs_journey_is_not_found(console_server: Server, page: Any, tenant: Tenant) -> None:
    other = console_server.tenant(reply_journey())
    start(console_server, other, 1)
    client = session_client(console_server, make_user(console_server, tenant.org_id, "admin"))
    for path in (f"/console/journeys/{other.journey_id}", f"/console/journeys/{other.journey_id}/steps/20"):
        r = client.get(path)
        assert r.status_code == 404
        assert "there is no journey" in r.text
    sign_in(page, console_server, make_user(console_server, tenant.org_id, "viewer"))
    page.goto(f"{console_server.base_url}/console/journeys/{other.journey_id}")
    assert page.get_by_role("heading", level=1).inner_text() == "Not found"


def test_signed_out_the_pages_send_to_the_login(console_server: Server, tenant: Tenant) -> None:
    r = console_server.http.get(f"/console/journeys/{tenant.journey_id}", follow_redirects=False)
    assert r.status_code == 303
    assert "/console/login" in r.headers["location"]
