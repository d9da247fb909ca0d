"""Admin › Registered APIs in the console: register (with each kind's fields), list (name, base URL,
kind; never a credential), replace and remove; bad settings are refused with a 400 and change
nothing; only admins may."""

from __future__ import annotations

from typing import Any

import pytest
from support.admin import audit_actions, post_form
from support.browser import screenshot
from support.console import CONSOLE_SECRET_KEY, make_user, session_client, sign_in
from support.server import Server

from journeys.keys.box import SecretBox
from journeys.store import apis as apis_repo
from journeys.store.db import read_only

CLIENT_SECRET = "oauth-client-secret-4711"
TOKEN = "bearer-token-secret-4711"


@pytest.fixture()
def org(console_server: Server) -> str:
    return console_server.tenant().org_id


def _stored(server: Server, org: str, name: str) -> tuple[str, str, dict[str, Any]] | None:
    with read_only(server.engine) as conn:
        row = apis_repo.get_api(conn, org, name)
    if row is None:
        return None
    return row["base_url"], row["auth"], SecretBox(CONSOLE_SECRET_KEY).open(row["config_encrypted"])


def test_register_and_remove_an_api_in_the_browser(console_server: Server, page: Any, org: str) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, console_server, make_user(console_server, org, "admin"))
    page.goto(f"{console_server.base_url}/console/admin/apis")
    page.get_by_label("Name (lower case").fill("ehr")
    page.get_by_label("Base URL").fill("https://ehr.clinic.example/api/")
    page.get_by_label("Authentication").select_option("oauth2")
    page.get_by_label("Token URL").fill("https://ehr.clinic.example/oauth/token")
    page.get_by_label("Client id").fill("journeys")
    page.get_by_label("Client secret").fill(CLIENT_SECRET)
    page.get_by_label("Scope").fill("appointments.read")
    page.get_by_label("Token", exact=True).fill("ignored: another kind's field")
    page.get_by_role("button", name="Save the API").click()
    assert page.get_by_text("The API was saved.").is_visible()
    row = page.get_by_role("row", name="ehr").inner_text()
    assert "https://ehr.clinic.example/api" in row and "oauth2" in row
    assert CLIENT_SECRET not in page.content()
    screenshot(page, "admin-apis")
    assert _stored(console_server, org, "ehr") == (
        "https://ehr.clinic.example/api", "oauth2",
        {"token_url": "https://ehr.clinic.example/oauth/token", "client_id": "journeys",
         "client_secret": CLIENT_SECRET, "scope": "appointments.read"},
    )  # fmt: skip

    page.get_by_role("button", name="Remove the API ehr").click()
    assert page.get_by_text("The API was removed.").is_visible()
    assert _stored(console_server, org, "ehr") is None
    assert audit_actions(console_server, org)[-2:] == ["api.set", "api.remove"]


BEARER = {"name": "lab", "base_url": "https://lab.clinic.example", "auth": "bearer", "token": TOKEN}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Lab Results"}, "name: lower-case letters"),
        ({"base_url": "lab.clinic.example"}, "base URL: must be an http:// or https:// URL"),
        ({"auth": "kerberos"}, "auth: must be one of"),
        ({"token": ""}, "token: required for bearer"),
        ({"auth": "oauth2", "token_url": "nope", "client_id": "c", "client_secret": "s"}, "token_url:"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(
    console_server: Server, org: str, change: dict[str, str], message: str
) -> None:
    client = session_client(console_server, make_user(console_server, org, "admin"))
    before = audit_actions(console_server, org)
    response = post_form(console_server, client, "/console/admin/apis", {**BEARER, **change})
    assert response.status_code == 400 and message in response.text, response.text
    assert TOKEN not in response.text
    assert _stored(console_server, org, "lab") is None and _stored(console_server, org, "Lab Results") is None
    assert audit_actions(console_server, org) == before
    assert post_form(console_server, client, "/console/admin/apis/nothing/remove", {}).status_code == 404


def test_only_admins_manage_apis_and_no_page_shows_a_credential(console_server: Server, org: str) -> None:
    admin = session_client(console_server, make_user(console_server, org, "admin"))
    assert post_form(console_server, admin, "/console/admin/apis", BEARER).status_code == 303
    page = admin.get("/console/admin/apis")
    assert page.status_code == 200 and "https://lab.clinic.example" in page.text and TOKEN not in page.text
    designer = session_client(console_server, make_user(console_server, org, "designer"))
    assert designer.get("/console/admin/apis").status_code == 403
    before = audit_actions(console_server, org)
    refused = post_form(console_server, designer, "/console/admin/apis", {**BEARER, "token": "x"})
    assert refused.status_code == 403
    assert post_form(console_server, designer, "/console/admin/apis/lab/remove", {}).status_code == 403
    assert audit_actions(console_server, org) == before
    stored = _stored(console_server, org, "lab")
    assert stored is not None and stored[2] == {"token": TOKEN}
