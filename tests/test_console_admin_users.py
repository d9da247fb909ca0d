"""Admin › Users in the console: list, create, change role, reset a password, disable/enable,
remove TOTP, require TOTP; an admin cannot lock themselves out; only admins may do any of it."""

from __future__ import annotations

from typing import Any

import pytest
from support.admin import audit_actions, post_form
from support.browser import screenshot
from support.console import CONSOLE_SECRET_KEY, make_user, session_client, sign_in
from support.server import Server

from journeys.accounts import users
from journeys.keys.box import SecretBox
from journeys.store.db import read_only, transaction

NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture()
def org(console_server: Server) -> str:
    return console_server.tenant().org_id


def _user(server: Server, org: str, email: str) -> users.User:
    with read_only(server.engine) as conn:
        return users.get_user(conn, org, email)


def test_an_admin_manages_a_user_in_the_browser(console_server: Server, page: Any, org: str) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    admin = make_user(console_server, org, "admin")
    sign_in(page, console_server, admin)
    page.goto(f"{console_server.base_url}/console/admin")
    assert page.url.endswith("/console/admin/users")
    assert page.get_by_role("cell", name="admin").first.is_visible()
    page.get_by_label("Email").fill("nurse@clinic.example")
    page.get_by_label("Role").select_option("operator")
    page.get_by_label("Initial password").fill("initial password 1234")
    page.get_by_role("button", name="Add user").click()
    assert page.get_by_role("heading", name="nurse@clinic.example").is_visible()
    assert page.get_by_text("The user was created.").is_visible()
    created = _user(console_server, org, "nurse@clinic.example")
    assert created.role.value == "operator"

    page.get_by_label("Role").select_option("designer")
    page.get_by_role("button", name="Change role").click()
    assert page.get_by_text("The role was changed").is_visible()
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Reset password").click()
    assert page.get_by_text("The password was reset").is_visible()
    page.get_by_role("button", name="Disable user").click()
    assert page.get_by_text("The user was disabled").is_visible()
    assert _user(console_server, org, "nurse@clinic.example").disabled_at is not None
    page.get_by_role("button", name="Enable user").click()
    assert page.get_by_text("The user was enabled.").is_visible()

    page.goto(f"{console_server.base_url}/console/admin/users")
    row = page.get_by_role("row", name="nurse@clinic.example")
    assert "designer" in row.inner_text() and "Active" in row.inner_text()
    screenshot(page, "admin-users")
    after = _user(console_server, org, "nurse@clinic.example")
    assert after.role.value == "designer" and after.disabled_at is None
    assert audit_actions(console_server, org)[-5:] == [
        "user.create", "user.set_role", "user.reset_password", "user.disable", "user.enable",
    ]  # fmt: skip


def test_reset_password_ends_their_sessions(console_server: Server, org: str) -> None:
    admin = session_client(console_server, make_user(console_server, org, "admin"))
    target = make_user(console_server, org, "viewer")
    theirs = session_client(console_server, target)
    assert theirs.get("/console/journeys").status_code == 200
    done = post_form(
        console_server, admin, f"/console/admin/users/{target.user_id}/password", {"password": NEW_PASSWORD}
    )
    assert done.status_code == 303
    assert theirs.get("/console/journeys").status_code == 303  # back to the login


def test_remove_totp_and_require_totp(console_server: Server, page: Any, org: str) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    target = make_user(console_server, org, "viewer")
    with transaction(console_server.engine) as conn:
        users.enrol_totp(conn, org, target.email, SecretBox(CONSOLE_SECRET_KEY), console_server.clock.now())
    sign_in(page, console_server, make_user(console_server, org, "admin"))
    page.goto(f"{console_server.base_url}/console/admin/users/{target.user_id}")
    page.get_by_role("button", name="Remove TOTP").click()
    assert page.get_by_text("The second factor was removed").is_visible()
    assert not _user(console_server, org, target.email).totp_enabled
    page.goto(f"{console_server.base_url}/console/admin/users")
    page.get_by_role("button", name="Require TOTP for everyone").click()
    assert page.get_by_text("now needs a second factor").is_visible()
    with read_only(console_server.engine) as conn:
        assert users.requires_totp(conn, org)
    page.get_by_role("button", name="Stop requiring TOTP").click()
    with read_only(console_server.engine) as conn:
        assert not users.requires_totp(conn, org)
    assert audit_actions(console_server, org)[-3:] == [
        "user.totp_remove",
        "org.require_totp",
        "org.require_totp",
    ]


def test_an_admin_cannot_disable_or_demote_themselves(console_server: Server, org: str) -> None:
    admin = make_user(console_server, org, "admin")
    client = session_client(console_server, admin)
    before = audit_actions(console_server, org)
    refused = post_form(console_server, client, f"/console/admin/users/{admin.user_id}/disable", {})
    assert refused.status_code == 400
    assert "cannot disable your own account" in refused.text
    demoted = post_form(
        console_server, client, f"/console/admin/users/{admin.user_id}/role", {"role": "viewer"}
    )
    assert demoted.status_code == 400
    assert "cannot change your own role" in demoted.text
    me = _user(console_server, org, admin.email)
    assert me.disabled_at is None and me.role.value == "admin"
    assert audit_actions(console_server, org) == before


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"email": "not-an-email", "role": "viewer", "password": NEW_PASSWORD}, "is not an email address"),
        ({"email": "short@clinic.example", "role": "viewer", "password": "short"}, "too short"),
        ({"email": "role@clinic.example", "role": "superuser", "password": NEW_PASSWORD}, "unknown role"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    console_server: Server, org: str, form: dict[str, str], message: str
) -> None:
    admin = make_user(console_server, org, "admin")
    client = session_client(console_server, admin)
    before = audit_actions(console_server, org)
    response = post_form(console_server, client, "/console/admin/users", form)
    assert response.status_code == 400
    assert message in response.text
    with read_only(console_server.engine) as conn:
        assert [u.email for u in users.list_users(conn, org)] == [admin.email]
    assert audit_actions(console_server, org) == before
    other = make_user(console_server, org, "viewer")
    short = post_form(
        console_server, client, f"/console/admin/users/{other.user_id}/password", {"password": "short"}
    )
    assert short.status_code == 400 and "too short" in short.text
    unknown = post_form(console_server, client, "/console/admin/users/nobody/disable", {})
    assert unknown.status_code == 404


def test_a_designer_may_not_manage_users(console_server: Server, org: str) -> None:
    target = make_user(console_server, org, "viewer")
    client = session_client(console_server, make_user(console_server, org, "designer"))
    for path in ("/console/admin", "/console/admin/users", f"/console/admin/users/{target.user_id}"):
        assert client.get(path).status_code == 403, path
    before = audit_actions(console_server, org)
    for path, data in [
        ("/console/admin/users", {"email": "x@clinic.example", "role": "admin", "password": NEW_PASSWORD}),
        (f"/console/admin/users/{target.user_id}/disable", {}),
        (f"/console/admin/users/{target.user_id}/role", {"role": "admin"}),
        (f"/console/admin/users/{target.user_id}/password", {"password": NEW_PASSWORD}),
        ("/console/admin/users/require-totp", {"required": "yes"}),
    ]:
        response = post_form(console_server, client, path, data)
        assert response.status_code == 403, path
        assert "may not do this" in response.text
    after = _user(console_server, org, target.email)
    assert after.role.value == "viewer" and after.disabled_at is None
    assert audit_actions(console_server, org) == before
