"""Signing in and out: the login form (org, email, password, authenticator code), the per-address
throttle, and logout."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from journeys.accounts.roles import Permission
from journeys.accounts.signin import Credentials, SessionPolicy, SignIn, sign_in, sign_out
from journeys.accounts.throttle import LoginThrottle
from journeys.console import web
from journeys.console.web import FormAction
from journeys.store.db import transaction

router = APIRouter(prefix=web.PREFIX)

MAX_FIELD_CHARS = 1024
ENDED = "Your session has ended (idle too long, or signed in too long ago). Sign in again."
SIGNED_OUT = "You have signed out."


def throttle(request: Request) -> LoginThrottle:
    state = request.app.state
    if not hasattr(state, "login_throttle"):
        settings = state.settings
        state.login_throttle = LoginThrottle(
            settings.console_login_attempts, timedelta(seconds=settings.console_login_window_seconds)
        )
    found: LoginThrottle = state.login_throttle
    return found


def _login_page(
    request: Request,
    *,
    org: str = "",
    email: str = "",
    next_url: str = "",
    problem: str = "",
    notice: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    csrf = request.cookies.get(web.LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    page = web.render(
        request,
        "login.html",
        staff=None,
        org=org,
        email=email,
        next_url=web.safe_next(next_url),
        problem=problem,
        notice=notice,
        login_csrf=csrf,
        status=status,
        headers=headers,
    )
    page.set_cookie(
        web.LOGIN_CSRF_COOKIE,
        csrf,
        path=web.PREFIX,
        httponly=True,
        samesite="strict",
        secure=web.is_https(request),
    )
    return page


@router.get("/login", include_in_schema=False)
async def login_form(
    request: Request, org: str = "", next: str = "", ended: str = "", out: str = ""
) -> Response:
    notice = ENDED if ended else SIGNED_OUT if out else ""
    return _login_page(request, org=org[:MAX_FIELD_CHARS], next_url=next, notice=notice)


def _field(form: object, name: str) -> str:
    value = form.get(name) if hasattr(form, "get") else None
    return value.strip() if isinstance(value, str) else ""


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    form = await request.form()
    org, email = _field(form, "org")[:MAX_FIELD_CHARS], _field(form, "email")[:MAX_FIELD_CHARS]
    password = form.get("password")
    password = password if isinstance(password, str) else ""
    next_url = _field(form, "next")
    cookie = request.cookies.get(web.LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), _field(form, "login_csrf").encode()):
        problem = "The sign-in form had expired or came from another site. Please try again."
        return _login_page(request, org=org, email=email, next_url=next_url, problem=problem, status=403)
    missing = [
        label
        for label, value in (("organisation", org), ("email", email), ("password", password))
        if not value
    ]
    if missing:
        problem = f"Enter your {', '.join(missing)}."
        return _login_page(request, org=org, email=email, next_url=next_url, problem=problem, status=400)
    state = request.app.state
    address = web.client_address(request) or "unknown"
    wait = throttle(request).retry_after(address, state.clock.now())
    if wait is not None:
        problem = f"Too many failed sign-ins from your address. Try again in {_minutes(wait)}."
        return _login_page(
            request, org=org, email=email, next_url=next_url, problem=problem, status=429,
            headers={"Retry-After": str(wait)},
        )  # fmt: skip
    creds = Credentials(org, email, password[:MAX_FIELD_CHARS], _field(form, "code") or None)
    result = await run_in_threadpool(_sign_in, request, creds)
    if result.session is None:
        throttle(request).failed(address, state.clock.now())
        status = 423 if result.outcome.locked_until else 401
        return _login_page(
            request, org=org, email=email, next_url=next_url, problem=result.outcome.message, status=status
        )
    response = RedirectResponse(web.safe_next(next_url), status_code=303)
    response.set_cookie(
        web.COOKIE,
        result.session.token,
        path=web.PREFIX,
        httponly=True,
        samesite="lax",
        secure=web.is_https(request),
    )
    response.delete_cookie(web.LOGIN_CSRF_COOKIE, path=web.PREFIX)
    return response


def _minutes(seconds: int) -> str:
    minutes = -(-seconds // 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def _sign_in(request: Request, creds: Credentials) -> SignIn:
    state = request.app.state
    settings = state.settings
    policy = SessionPolicy(
        idle=timedelta(minutes=settings.console_idle_minutes),
        absolute=timedelta(hours=settings.console_session_hours),
    )
    with transaction(state.engine) as conn:  # commits a failure too: it counts toward the lockout
        return sign_in(
            conn,
            creds,
            settings.secret_box(),
            state.clock.now(),
            policy,
            web.client_address(request),
        )


@router.post("/logout", include_in_schema=False)
async def logout(
    request: Request, action: FormAction = Depends(web.form_action(Permission.READ))
) -> Response:
    def _out() -> None:
        with transaction(request.app.state.engine) as conn:
            sign_out(conn, action.staff.session, request.app.state.clock.now(), web.client_address(request))

    await run_in_threadpool(_out)
    org = quote(action.staff.org_id, safe="")
    response = RedirectResponse(f"{web.PREFIX}/login?org={org}&out=1", status_code=303)
    response.delete_cookie(web.COOKIE, path=web.PREFIX)
    return response
