"""Admin › Webhooks in the console: create (the endpoint challenged), delete, the recent failed
deliveries with a Retry button that makes one due again; bad input refused; admins only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from support.admin import audit_actions, post_form
from support.api import trigger_one
from support.browser import screenshot
from support.console import CONSOLE_SECRET_KEY, make_user, session_client, sign_in
from support.databases import own_database
from support.journeys import wait_journey
from support.receivers import WebhookReceiver
from support.server import LOOPBACK_ALLOWED, Server

from journeys.webhooks import service

HOOK_SECRET = "whsec-console-0123456789"
WAIT = wait_journey("Webhook wait")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own (its worker and clock run far ahead), that may call loopback."""
    with own_database(tmp_path_factory.mktemp("console-webhooks")) as url:
        s = Server(
            url,
            secret_key=CONSOLE_SECRET_KEY,
            console_login_attempts=100_000,
            outbound_allow=LOOPBACK_ALLOWED,
        )
        yield s
        s.stop()


@pytest.fixture()
def rec() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(HOOK_SECRET, challenge_suffix="\n")
    yield r
    r.stop()


def _hooks(srv: Server, org: str) -> list[service.Subscription]:
    return service.list_all(srv.engine, org)


def _failed_delivery(srv: Server, org: Any, rec: WebhookReceiver) -> service.Delivery:
    """An instance.started delivery given up after 24 h of failures."""
    rec.fail = 1000
    trigger_one(srv.http, org, {})
    srv.run_worker()
    for _ in range(40):
        srv.clock.advance(timedelta(hours=1, minutes=15))
        srv.run_worker()
    [failed] = service.deliveries(srv.engine, org.org_id, None, "failed")
    return failed


def test_create_retry_and_delete_in_the_browser(srv: Server, page: Any, rec: WebhookReceiver) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    t = srv.tenant(WAIT)
    sign_in(page, srv, make_user(srv, t.org_id, "admin"))
    page.goto(f"{srv.base_url}/console/admin/webhooks")
    page.get_by_label("Endpoint URL").fill(rec.url)
    page.get_by_label("Shared secret").fill(HOOK_SECRET)
    page.get_by_label("all events").uncheck()
    page.get_by_label("instance.started").check()
    page.get_by_role("button", name="Add webhook").click()
    assert page.get_by_text("The webhook was created").is_visible()
    [hook] = _hooks(srv, t.org_id)
    assert hook.verified_at is not None and hook.event_types == ("instance.started",)
    assert HOOK_SECRET not in page.content()

    failed = _failed_delivery(srv, t, rec)
    sign_in(page, srv, make_user(srv, t.org_id, "admin"))  # the clock ran on: a new session
    page.goto(f"{srv.base_url}/console/admin/webhooks")
    row = page.get_by_role("row", name=failed.id)
    assert "instance.started" in row.inner_text() and "HTTP 500" in row.inner_text()
    screenshot(page, "admin-webhooks")
    rec.fail = 0
    page.get_by_role("button", name=f"Retry delivery {failed.id}").click()
    assert page.get_by_text("The delivery is due again").is_visible()
    [pending] = service.deliveries(srv.engine, t.org_id, None, "pending")
    assert pending.id == failed.id
    srv.run_worker()
    [delivered] = service.deliveries(srv.engine, t.org_id, None, "delivered")
    assert delivered.id == failed.id and delivered.attempts == failed.attempts + 1
    assert rec.ok_events()[-1]["type"] == "instance.started"

    page.reload()
    assert page.get_by_text("None.").is_visible()  # no failed deliveries left
    page.get_by_role("button", name=f"Delete the webhook {hook.url}").click()
    assert page.get_by_text("The webhook was deleted.").is_visible()
    assert _hooks(srv, t.org_id) == []
    hooks = [a for a in audit_actions(srv, t.org_id) if a.startswith("webhook.")]
    assert hooks == ["webhook.create", "webhook.retry", "webhook.delete"]


def test_a_delivery_of_a_deleted_webhook_or_another_org_is_not_retried(
    srv: Server, rec: WebhookReceiver
) -> None:
    t = srv.tenant(WAIT)
    admin = session_client(srv, make_user(srv, t.org_id, "admin"))
    made = post_form(
        srv,
        admin,
        "/console/admin/webhooks",
        {"url": rec.url, "secret": HOOK_SECRET, "event_types": "instance.started"},
    )
    assert made.status_code == 303
    failed = _failed_delivery(srv, t, rec)
    other = srv.tenant(WAIT)
    stranger = session_client(srv, make_user(srv, other.org_id, "admin"))
    before = audit_actions(srv, t.org_id)
    refused = post_form(srv, stranger, f"/console/admin/webhooks/deliveries/{failed.id}/retry", {})
    assert refused.status_code == 404
    admin = session_client(srv, make_user(srv, t.org_id, "admin"))
    [hook] = _hooks(srv, t.org_id)
    assert post_form(srv, admin, f"/console/admin/webhooks/{hook.id}/delete", {}).status_code == 303
    gone = post_form(srv, admin, f"/console/admin/webhooks/deliveries/{failed.id}/retry", {})
    assert gone.status_code == 404 and "no failed delivery" in gone.text
    assert [d.id for d in service.deliveries(srv.engine, t.org_id, None, "failed")] == [failed.id]
    assert audit_actions(srv, t.org_id) == [*before, "auth.login", "webhook.delete"]  # no retry


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"url": "ftp://clinic.example/hooks", "secret": HOOK_SECRET, "event_types": "*"},
            "absolute http or https URL",
        ),
        ({"url": "not a url", "secret": HOOK_SECRET, "event_types": "*"}, "absolute http or https URL"),
        ({"url": "https://clinic.example/h", "secret": "short", "event_types": "*"}, "secret must be 16"),
        ({"url": "https://clinic.example/h", "secret": HOOK_SECRET}, "non-empty list of event types"),
        (
            {"url": "https://clinic.example/h", "secret": HOOK_SECRET, "event_types": "nope"},
            "unknown event types",
        ),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(srv: Server, form: dict[str, str], message: str) -> None:
    t = srv.tenant(WAIT)
    client = session_client(srv, make_user(srv, t.org_id, "admin"))
    before = audit_actions(srv, t.org_id)
    response = post_form(srv, client, "/console/admin/webhooks", form)
    assert response.status_code == 400
    assert message in response.text
    assert _hooks(srv, t.org_id) == [] and audit_actions(srv, t.org_id) == before


def test_a_designer_may_not_manage_webhooks(srv: Server, rec: WebhookReceiver) -> None:
    t = srv.tenant(WAIT)
    admin = session_client(srv, make_user(srv, t.org_id, "admin"))
    assert (
        post_form(
            srv, admin, "/console/admin/webhooks", {"url": rec.url, "secret": HOOK_SECRET, "event_types": "*"}
        ).status_code
        == 303
    )
    [hook] = _hooks(srv, t.org_id)
    client = session_client(srv, make_user(srv, t.org_id, "designer"))
    assert client.get("/console/admin/webhooks").status_code == 403
    before = audit_actions(srv, t.org_id)
    for path, data in [
        ("/console/admin/webhooks", {"url": rec.url, "secret": HOOK_SECRET, "event_types": "*"}),
        (f"/console/admin/webhooks/{hook.id}/delete", {}),
        ("/console/admin/webhooks/deliveries/anything/retry", {}),
    ]:
        assert post_form(srv, client, path, data).status_code == 403, path
    assert [h.id for h in _hooks(srv, t.org_id)] == [hook.id]
    assert audit_actions(srv, t.org_id) == before
