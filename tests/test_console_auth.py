"""The console's sign-in, in a real browser: wrong password, lockout, TOTP, logout, session
timeout, the per-address throttle; CSRF and unauthenticated requests over plain HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pyotp
import pytest
from support.browser import screenshot
from support.console import CONSOLE_SECRET_KEY, csrf_in, make_user, page_csrf, session_client, sign_in
from support.server import Server

from journeys.accounts import users
from journeys.keys.box import SecretBox
from journeys.store.db import transaction


@pytest.fixture()
def org(console_server: Server) -> str:
    return console_server.tenant().org_id


def test_login_lands_on_the_journeys_page(console_server: Server, page: Any, org: str) -> None:
    login = make_user(console_server, org, "viewer")
    page.goto(f"{console_server.base_url}/console/login?org={org}")
    screenshot(page, "login")
    sign_in(page, console_server, login)
    assert page.url.endswith("/console/journeys")
    assert page.get_by_role("heading", name="Journeys").is_visible()
    assert page.get_by_text(login.email).is_visible()
    # a viewer sees no Design, Start or Admin links
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Journeys").is_visible()
    assert nav.get_by_role("link", name="Admin").count() == 0
    assert nav.get_by_role("link", name="Design").count() == 0


def test_wrong_password_is_refused_with_a_clear_message(console_server: Server, page: Any, org: str) -> None:
    login = make_user(console_server, org, "viewer")
    wrong = type(login)(login.org_id, login.email, "not the password at all", login.user_id, login.role)
    sign_in(page, console_server, wrong)
    assert "/console/login" in page.url
    assert page.get_by_role("alert").inner_text() == "wrong email or password"
    # the email is kept, the password is not
    assert page.get_by_label("Email").input_value() == login.email
    assert page.get_by_label("Password").input_value() == ""


def test_five_failures_lock_the_account(console_server: Server, page: Any, org: str) -> None:
    login = make_user(console_server, org, "operator")
    wrong = type(login)(login.org_id, login.email, "not the password at all", login.user_id, login.role)
    for _ in range(5):
        sign_in(page, console_server, wrong)
    assert "locked until" in page.get_by_role("alert").inner_text()
    sign_in(page, console_server, login)  # the right password does not help while locked
    assert "locked until" in page.get_by_role("alert").inner_text()
    screenshot(page, "login-locked")
    console_server.clock.advance(timedelta(minutes=16))
    sign_in(page, console_server, login)
    assert page.url.endswith("/console/journeys")


def test_totp_is_asked_for_and_checked(console_server: Server, page: Any, org: str) -> None:
    login = make_user(console_server, org, "admin")
    with transaction(console_server.engine) as conn:
        box = SecretBox(console_server.settings.secret_key)
        enrolment = users.enrol_totp(conn, org, login.email, box, console_server.clock.now())
    totp = pyotp.parse_uri(enrolment.uri)
    sign_in(page, console_server, login)
    assert "6-digit code" in page.get_by_role("alert").inner_text()
    sign_in(
        page,
        console_server,
        login,
        code="000000" if totp.at(console_server.clock.now()) != "000000" else "111111",
    )
    assert "wrong or already used code" in page.get_by_role("alert").inner_text()
    for odd in ("12 34 5é", "\x00" * 6, "١٢٣٤٥٦"):  # not ASCII digits: wrong, never an error
        sign_in(page, console_server, login, code=odd)
        assert "wrong or already used code" in page.get_by_role("alert").inner_text()
    sign_in(page, console_server, login, code=totp.at(console_server.clock.now()))
    assert page.url.endswith("/console/journeys")


def test_sign_out_ends_the_session(console_server: Server, page: Any, org: str) -> None:
    login = make_user(console_server, org, "viewer")
    sign_in(page, console_server, login)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    assert "/console/login" in page.url
    assert page.get_by_role("status").inner_text() == "You have signed out."
    page.goto(f"{console_server.base_url}/console/journeys")
    assert "/console/login" in page.url


def test_an_idle_session_ends_and_the_login_says_so(console_server: Server, page: Any, org: str) -> None:
    login = make_user(console_server, org, "viewer")
    sign_in(page, console_server, login)
    console_server.clock.advance(timedelta(minutes=14))
    page.goto(f"{console_server.base_url}/console/journeys")
    assert page.url.endswith("/console/journeys")  # used within 15 minutes: still signed in
    console_server.clock.advance(timedelta(minutes=15, seconds=1))
    page.goto(f"{console_server.base_url}/console/journeys")
    assert "/console/login" in page.url
    assert "session has ended" in page.get_by_role("status").inner_text()
    sign_in(page, console_server, login)
    assert page.url.endswith("/console/journeys")  # back where it was


def test_the_absolute_timeout_ends_a_busy_session(console_server: Server, org: str) -> None:
    login = make_user(console_server, org, "viewer")
    client = session_client(console_server, login)
    for _ in range(12 * 6):  # used every 10 minutes for 12 hours
        console_server.clock.advance(timedelta(minutes=10))
        response = client.get("/console/journeys")
        if response.status_code != 200:
            break
    assert response.status_code == 303
    assert "ended=1" in response.headers["location"]


def test_a_form_without_its_csrf_token_is_refused(console_server: Server, org: str) -> None:
    login = make_user(console_server, org, "viewer")
    client = session_client(console_server, login)
    origin = {"Origin": console_server.base_url}
    refused = client.post("/console/logout", data={}, headers=origin)
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert "text/html" in refused.headers["content-type"]
    forged = client.post("/console/logout", data={"csrf_token": "0" * 64}, headers=origin)
    assert forged.status_code == 403
    token = page_csrf(client)
    other_site = client.post(
        "/console/logout", data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403
    assert client.get("/console/journeys").status_code == 200  # still signed in
    accepted = client.post("/console/logout", data={"csrf_token": token}, headers=origin)
    assert accepted.status_code == 303
    assert client.get("/console/journeys").status_code == 303


def test_the_login_form_has_its_own_csrf_check(console_server: Server, org: str) -> None:
    login = make_user(console_server, org, "viewer")
    response = console_server.http.post(
        "/console/login", data={"org": org, "email": login.email, "password": login.password}
    )
    assert response.status_code == 403
    assert "expired" in response.text


def test_cookies_are_httponly_and_samesite(console_server: Server, org: str) -> None:
    login = make_user(console_server, org, "viewer")
    client = session_client(console_server, login)
    assert client.cookies.get("journeys_session")
    page = client.get("/console/journeys")
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    fresh = console_server.http.get(f"/console/login?org={org}")
    set_cookie = fresh.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "path=/console" in set_cookie


def test_session_cookie_attributes(console_server: Server, org: str) -> None:

    login = make_user(console_server, org, "viewer")
    with httpx.Client(base_url=console_server.base_url) as client:
        form = client.get(f"/console/login?org={org}")
        response = client.post(
            "/console/login",
            data={
                "org": org,
                "email": login.email,
                "password": login.password,
                "login_csrf": csrf_in(form.text),
            },
        )
    cookie = next(
        v for k, v in response.headers.multi_items() if k == "set-cookie" and "journeys_session" in v
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here; Secure when served over TLS


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"org": "", "email": "a@b.example", "password": "x" * 12}, "Enter your organisation."),
        ({"org": "o", "email": "", "password": ""}, "Enter your email, password."),
        ({"org": "no-such-org", "email": "a@b.example", "password": "x" * 12}, "wrong email or password"),
        ({"org": "o\x00", "email": "a\x00@b.example", "password": "x" * 5000}, "wrong email or password"),
    ],
)
def test_bad_login_input_gets_a_clear_answer(
    console_server: Server, fields: dict[str, str], message: str
) -> None:

    with httpx.Client(base_url=console_server.base_url) as client:
        form = client.get("/console/login")
        response = client.post("/console/login", data={**fields, "login_csrf": csrf_in(form.text)})
    assert response.status_code in (400, 401)
    assert message in response.text


def test_pages_need_a_session(console_server: Server) -> None:
    response = console_server.http.get("/console/journeys?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=%2Fconsole%2Fjourneys%3Fx%3D1"
    assert console_server.http.get("/console/static/console.css").status_code == 200


@pytest.fixture()
def throttled(database_url: str) -> Iterator[Server]:
    srv = Server(
        database_url, secret_key=CONSOLE_SECRET_KEY, console_login_attempts=3, console_login_window_seconds=60
    )
    yield srv
    srv.stop()


def test_many_failures_from_one_address_are_throttled(throttled: Server) -> None:

    org = throttled.tenant().org_id
    login = make_user(throttled, org, "viewer")
    with httpx.Client(base_url=throttled.base_url) as client:
        form = csrf_in(client.get("/console/login").text)
        for i in range(3):
            bad = {"org": org, "email": f"nobody{i}@x.example", "password": "x" * 12, "login_csrf": form}
            assert client.post("/console/login", data=bad).status_code == 401
        good = {"org": org, "email": login.email, "password": login.password, "login_csrf": form}
        refused = client.post("/console/login", data=good)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "60"
        assert "Too many failed sign-ins" in refused.text
        throttled.clock.advance(timedelta(seconds=61))
        assert client.post("/console/login", data=good).status_code == 303
