"""Admin › API tokens in the console: create (the secret shown once), list, revoke (only the
org's own tokens); bad input is refused; only admins may do any of it."""

from __future__ import annotations

from typing import Any

import pytest
from support.admin import audit_actions, post_form
from support.browser import screenshot
from support.console import make_user, session_client, sign_in
from support.server import Server

from journeys.accounts import service
from journeys.store.db import read_only


@pytest.fixture()
def org(console_server: Server) -> str:
    return console_server.tenant().org_id


def _tokens(server: Server, org: str) -> dict[str, service.TokenInfo]:
    with read_only(server.engine) as conn:
        return {t.name: t for t in service.list_tokens(conn, org, server.clock.now())}


def _works(server: Server, secret: str) -> bool:
    with read_only(server.engine) as conn:
        return service.authenticate(conn, secret, server.clock.now()) is not None


def test_create_shows_the_secret_once_then_revoke(console_server: Server, page: Any, org: str) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, console_server, make_user(console_server, org, "admin"))
    page.goto(f"{console_server.base_url}/console/admin/tokens")
    page.get_by_label("Name").fill("EHR integration")
    page.get_by_label("create.journey_instances").check()
    page.get_by_label("Expires after (days)").fill("30")
    page.get_by_role("button", name="Create token").click()
    assert page.get_by_text("shown only this once").is_visible()
    secret = page.locator("#token-secret").inner_text().strip()
    assert secret.startswith(service.TOKEN_PREFIX)
    assert _works(console_server, secret)
    created = _tokens(console_server, org)["EHR integration"]
    assert created.scopes == (service.SCOPE_CREATE,) and created.expires_at is not None
    screenshot(page, "admin-tokens")

    page.goto(f"{console_server.base_url}/console/admin/tokens")  # never again
    assert secret not in page.content()
    assert page.get_by_role("row", name="EHR integration").is_visible()
    page.reload()
    assert secret not in page.content()
    page.get_by_role("button", name="Revoke EHR integration").click()
    assert page.get_by_text("The token was revoked").is_visible()
    assert "revoked" in page.get_by_role("row", name="EHR integration").inner_text()
    assert not _works(console_server, secret)
    assert audit_actions(console_server, org)[-2:] == ["token.create", "token.revoke"]


def test_another_orgs_token_cannot_be_revoked(console_server: Server, org: str) -> None:
    other = console_server.tenant()
    other_token = next(iter(_tokens(console_server, other.org_id).values()))
    client = session_client(console_server, make_user(console_server, org, "admin"))
    before = audit_actions(console_server, org)
    response = post_form(console_server, client, f"/console/admin/tokens/{other_token.id}/revoke", {})
    assert response.status_code == 404
    assert _tokens(console_server, other.org_id)[other_token.name].state == "active"
    assert audit_actions(console_server, org) == before


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "no scopes"}, "at least one scope is required"),
        ({"name": "bad scope", "scopes": "delete.everything"}, "unknown scope"),
        ({"name": "", "scopes": service.SCOPE_READ}, "token name must not be empty"),
        ({"name": "bad expiry", "scopes": service.SCOPE_READ, "expires_in_days": "-3"}, "number of days"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    console_server: Server, org: str, form: dict[str, str], message: str
) -> None:
    client = session_client(console_server, make_user(console_server, org, "admin"))
    before = (audit_actions(console_server, org), set(_tokens(console_server, org)))
    response = post_form(console_server, client, "/console/admin/tokens", form)
    assert response.status_code == 400
    assert message in response.text
    assert service.TOKEN_PREFIX not in response.text
    assert (audit_actions(console_server, org), set(_tokens(console_server, org))) == before


def test_a_designer_may_not_manage_tokens(console_server: Server, org: str) -> None:
    token = next(iter(_tokens(console_server, org).values()))
    client = session_client(console_server, make_user(console_server, org, "designer"))
    assert client.get("/console/admin/tokens").status_code == 403
    before = (audit_actions(console_server, org), set(_tokens(console_server, org)))
    created = post_form(
        console_server, client, "/console/admin/tokens", {"name": "x", "scopes": service.SCOPE_READ}
    )
    assert created.status_code == 403
    revoked = post_form(console_server, client, f"/console/admin/tokens/{token.id}/revoke", {})
    assert revoked.status_code == 403
    assert _tokens(console_server, org)[token.name].state == "active"
    assert (audit_actions(console_server, org), set(_tokens(console_server, org))) == before
