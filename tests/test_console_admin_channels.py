"""Admin › Channels in the console: set Twilio and SMTP, remove; the page shows providers and
their non-secret settings, and no page ever shows a secret; bad settings are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.admin import audit_actions, post_form
from support.browser import screenshot
from support.console import CONSOLE_SECRET_KEY, make_user, session_client, sign_in
from support.server import Server

from journeys.keys.box import SecretBox
from journeys.messaging import org_channels
from journeys.store.db import read_only

TWILIO_TOKEN = "tw-secret-auth-token-4711"
SMTP_PASSWORD = "smtp-secret-password-4711"
TWILIO = {"account_sid": "AC0123456789", "auth_token": TWILIO_TOKEN, "from": "+13125550100"}
SMTP = {
    "host": "smtp.clinic.example", "port": "2525", "security": "starttls", "username": "mailer",
    "password": SMTP_PASSWORD, "from_address": "noreply@clinic.example",
}  # fmt: skip
ADMIN_PAGES = [
    "/console/admin/users",
    "/console/admin/tokens",
    "/console/admin/channels",
    "/console/admin/audit",
]


@pytest.fixture()
def org(console_server: Server) -> str:
    return console_server.tenant().org_id


def _config(server: Server, org: str, channel: str) -> tuple[str, dict[str, Any]] | None:
    with read_only(server.engine) as conn:
        found = org_channels.org_channel(conn, org, channel)
    return (found.provider, SecretBox(CONSOLE_SECRET_KEY).open(found.sealed)) if found else None


def test_set_and_remove_providers_in_the_browser(console_server: Server, page: Any, org: str) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, console_server, make_user(console_server, org, "admin"))
    page.goto(f"{console_server.base_url}/console/admin/channels")
    page.get_by_label("Account SID").fill(TWILIO["account_sid"])
    page.get_by_label("Auth token").fill(TWILIO_TOKEN)
    page.get_by_label("From number").fill(TWILIO["from"])
    page.get_by_role("button", name="Save Twilio").click()
    assert page.get_by_text("The provider was saved.").is_visible()
    page.get_by_label("SMTP host").fill(SMTP["host"])
    page.get_by_label("Port").fill(SMTP["port"])
    page.get_by_label("SMTP user").fill(SMTP["username"])
    page.get_by_label("SMTP password").fill(SMTP_PASSWORD)
    page.get_by_label("From address").fill(SMTP["from_address"])
    page.get_by_role("button", name="Save SMTP").click()
    sms = page.get_by_role("row", name="sms").inner_text()
    assert "twilio" in sms and "AC0123456789" in sms and "+13125550100" in sms
    email = page.get_by_role("row", name="email").inner_text()
    assert "smtp.clinic.example" in email and "2525" in email and "noreply@clinic.example" in email
    html = page.content()
    assert TWILIO_TOKEN not in html and SMTP_PASSWORD not in html
    screenshot(page, "admin-channels")
    assert _config(console_server, org, "sms") == ("twilio", TWILIO)
    stored = _config(console_server, org, "email")
    assert stored is not None and stored[1]["password"] == SMTP_PASSWORD and stored[1]["port"] == 2525

    page.get_by_role("button", name="Remove the sms provider").click()
    assert page.get_by_text("The provider was removed.").is_visible()
    assert _config(console_server, org, "sms") is None
    assert audit_actions(console_server, org)[-3:] == ["channel.set", "channel.set", "channel.remove"]


def test_no_page_shows_a_channel_secret(console_server: Server, org: str) -> None:
    client = session_client(console_server, make_user(console_server, org, "admin"))
    assert post_form(console_server, client, "/console/admin/channels/twilio", TWILIO).status_code == 303
    assert post_form(console_server, client, "/console/admin/channels/smtp", SMTP).status_code == 303
    for path in ["/console/journeys", *ADMIN_PAGES]:
        text = client.get(path).text
        assert TWILIO_TOKEN not in text and SMTP_PASSWORD not in text, path
        assert "•••" not in text and "****" not in text, path  # not even masked


@pytest.mark.parametrize(
    ("provider", "change", "message"),
    [
        ("twilio", {"account_sid": "XX123"}, "account_sid must be a Twilio Account SID"),
        ("twilio", {"from": "not a number"}, "from must be a valid phone number"),
        ("twilio", {"auth_token": ""}, "auth_token is required"),
        ("smtp", {"from_address": "nobody"}, "is not an email address"),
        ("smtp", {"port": "99999"}, "port must be a whole number"),
        ("smtp", {"password": ""}, "username is set but password is not"),
        ("smtp", {"security": "maybe"}, "security must be one of"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(
    console_server: Server, org: str, provider: str, change: dict[str, str], message: str
) -> None:
    client = session_client(console_server, make_user(console_server, org, "admin"))
    before = audit_actions(console_server, org)
    form = {**(TWILIO if provider == "twilio" else SMTP), **change}
    response = post_form(console_server, client, f"/console/admin/channels/{provider}", form)
    assert response.status_code == 400
    assert message in response.text
    assert TWILIO_TOKEN not in response.text and SMTP_PASSWORD not in response.text
    assert _config(console_server, org, "sms") is None and _config(console_server, org, "email") is None
    assert audit_actions(console_server, org) == before
    assert post_form(console_server, client, "/console/admin/channels/pigeon", {}).status_code == 404
    assert post_form(console_server, client, "/console/admin/channels/sms/remove", {}).status_code == 404


def test_a_designer_may_not_manage_channels(console_server: Server, org: str) -> None:
    console_server.set_channel(org, "sms", "twilio", TWILIO)
    client = session_client(console_server, make_user(console_server, org, "designer"))
    response = client.get("/console/admin/channels")
    assert response.status_code == 403 and "AC0123456789" not in response.text
    before = audit_actions(console_server, org)
    assert post_form(console_server, client, "/console/admin/channels/smtp", SMTP).status_code == 403
    assert post_form(console_server, client, "/console/admin/channels/sms/remove", {}).status_code == 403
    assert _config(console_server, org, "sms") == ("twilio", TWILIO)
    assert _config(console_server, org, "email") is None
    assert audit_actions(console_server, org) == before


@pytest.mark.same_on_every_database
def test_a_server_without_a_secret_key_says_so(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'keyless.db'}", console_login_attempts=100_000)
    try:
        org = server.tenant().org_id
        client = session_client(server, make_user(server, org, "admin"))
        page = client.get("/console/admin/channels")
        assert page.status_code == 200 and "no JOURNEYS_SECRET_KEY" in page.text
        refused = post_form(server, client, "/console/admin/channels/twilio", TWILIO)
        assert refused.status_code == 503 and "JOURNEYS_SECRET_KEY is not set" in refused.text
        assert _config(server, org, "sms") is None
    finally:
        server.stop()
