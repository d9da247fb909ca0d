"""Every console page passes axe-core's WCAG 2.1 A/AA rules (labels, contrast, names, landmarks),
at 1280 px and at a tablet's 800 px, and the main controls are reachable by keyboard."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.a11y import violations
from support.api import trigger_one
from support.console import make_user, sign_in
from support.server import Server

# Every page (the ones with ids are added per org below).
PAGES = [
    "/console/journeys",
    "/console/instances",
    "/console/messages",
    "/console/replies",
    "/console/opt-outs",
    "/console/design",
    "/console/start",
    "/console/admin/users",
    "/console/admin/tokens",
    "/console/admin/audit",
    "/console/admin/channels",
    "/console/admin/webhooks",
    "/console/admin/apis",
]


def _pages(server: Server) -> tuple[str, list[str]]:
    """An org with an instance, and every console page of it."""
    tenant = server.tenant()
    params = {"patientId": "1", "patientName": "Ann Example", "appointmentDateTime": "2026-11-20 09:30:00"}
    instance = trigger_one(server.http, tenant, params, key="appointmentId")
    journey = f"/console/journeys/{tenant.journey_id}"
    ids = [journey, f"/console/instances/{tenant.journey_id}/{instance}"]
    return tenant.org_id, [*PAGES, *ids, f"/console/instances?journey={tenant.journey_id}"]


@pytest.fixture()
def a11y_page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_the_login_page_is_accessible(console_server: Server, a11y_page: Any) -> None:
    a11y_page.goto(f"{console_server.base_url}/console/login")
    assert violations(a11y_page) == []


@pytest.mark.parametrize("width", [1280, 800])
def test_every_page_is_accessible(console_server: Server, a11y_page: Any, width: int) -> None:
    org, pages = _pages(console_server)
    sign_in(a11y_page, console_server, make_user(console_server, org, "admin"))
    a11y_page.set_viewport_size({"width": width, "height": 900})
    for path in pages:
        a11y_page.goto(f"{console_server.base_url}{path}")
        assert a11y_page.url.endswith(path), f"{path} redirected to {a11y_page.url}"
        found = violations(a11y_page)
        assert found == [], f"{path} at {width} px:\n" + "\n".join(found)
        # nothing wider than the screen (usable on a tablet)
        overflow = a11y_page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} at {width} px is {overflow} px too wide"


def test_the_keyboard_reaches_the_skip_link_then_the_navigation(console_server: Server, page: Any) -> None:
    org = console_server.tenant().org_id
    sign_in(page, console_server, make_user(console_server, org, "admin"))
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


@pytest.mark.parametrize("width", [1280, 800])
def test_admin_pages_with_content_are_accessible(console_server: Server, a11y_page: Any, width: int) -> None:
    org = console_server.tenant().org_id
    console_server.set_channel(
        org, "sms", "twilio", {"account_sid": "AC0123", "auth_token": "t" * 20, "from": "+13125550100"}
    )
    other = make_user(console_server, org, "viewer")
    sign_in(a11y_page, console_server, make_user(console_server, org, "admin"))
    a11y_page.set_viewport_size({"width": width, "height": 900})
    a11y_page.goto(f"{console_server.base_url}/console/admin/tokens")
    a11y_page.get_by_label("Name").fill("a11y token")
    a11y_page.get_by_label("read.journey_instances").check()
    a11y_page.get_by_role("button", name="Create token").click()  # the page showing a new secret
    assert a11y_page.locator("#token-secret").is_visible()
    checked = [None, f"{console_server.base_url}/console/admin/users/{other.user_id}"]
    for path in checked:
        if path is not None:
            a11y_page.goto(path)
        found = violations(a11y_page)
        assert found == [], f"{a11y_page.url} at {width} px:\n" + "\n".join(found)
        overflow = a11y_page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{a11y_page.url} at {width} px is {overflow} px too wide"
    a11y_page.goto(f"{console_server.base_url}/console/admin/channels")
    assert violations(a11y_page) == []
