"""The staff console as tests use it: staff users made through the real services, a browser
signed in through the real login form, and an HTTP client with a console session (for checks a
browser would not make, e.g. a forged form without its CSRF token)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from journeys.accounts import users
from journeys.accounts.roles import Role
from journeys.store.db import transaction
from support.keys import strong_key
from support.server import Server

PASSWORD = "correct horse battery staple"
# The console tests' servers seal TOTP secrets with it (and other tests may have stored channel
# credentials in the shared database, which a server without a key refuses to start with).
CONSOLE_SECRET_KEY = strong_key("console-tests")


@dataclass(frozen=True)
class Login:
    org_id: str
    email: str
    password: str
    user_id: str
    role: Role


def make_user(
    server: Server, org_id: str, role: Role | str, email: str | None = None, password: str = PASSWORD
) -> Login:
    role = Role.parse(role) if isinstance(role, str) else role
    email = email or f"{role.value}-{secrets.token_hex(4)}@clinic.example"
    with transaction(server.engine) as conn:
        user = users.create_user(conn, org_id, email, role, password, server.clock.now())
    return Login(org_id, email, password, user.id, role)


def sign_in(page: Any, server: Server, login: Login, code: str | None = None, next_path: str = "") -> None:
    """Fill in and submit the login form, as a person would."""
    page.goto(
        f"{server.base_url}/console/login?org={login.org_id}" + (f"&next={next_path}" if next_path else "")
    )
    page.get_by_label("Email").fill(login.email)
    page.get_by_label("Password").fill(login.password)
    if code is not None:
        page.get_by_label("Authenticator code").fill(code)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


_CSRF = re.compile(r'name="(?:csrf_token|login_csrf)" value="([^"]+)"')


def csrf_in(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def session_client(server: Server, login: Login) -> httpx.Client:
    """An HTTP client signed in through the login form (cookies kept), for requests a browser
    would not make."""
    client = httpx.Client(base_url=server.base_url, timeout=30, follow_redirects=False)
    page = client.get(f"/console/login?org={login.org_id}")
    response = client.post(
        "/console/login",
        data={
            "org": login.org_id,
            "email": login.email,
            "password": login.password,
            "login_csrf": csrf_in(page.text),
        },
        headers={"Origin": server.base_url},
    )
    assert response.status_code == 303, response.text
    return client


def page_csrf(client: httpx.Client, path: str = "/console/journeys") -> str:
    """The session's CSRF token, read from a console page."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    return csrf_in(response.text)
