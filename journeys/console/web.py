"""The console's shared machinery: templates, the signed-in staff member, permission checks,
CSRF, the session cookie, and recording what staff see in the audit log.

Every page depends on `allowed(Permission.X)` (or `form_action(Permission.X)` for a state-changing
POST): the check is made on the server for every request, whatever buttons a page shows."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, Response

from journeys.accounts import audit
from journeys.accounts.audit import Action, ActorKind, AuditEntry
from journeys.accounts.roles import MINIMUM_ROLE, Permission, Role
from journeys.accounts.sessions import Session, touch
from journeys.accounts.signin import signed_in
from journeys.accounts.users import User
from journeys.errors import Forbidden
from journeys.store.db import read_only, transaction

PREFIX = "/console"
COOKIE = "journeys_session"
LOGIN_CSRF_COOKIE = "journeys_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class LoginRequired(Exception):
    """No live session: the browser is sent to the login page (then back to `next_url`)."""

    def __init__(self, next_url: str, ended: bool) -> None:
        super().__init__("login required")
        self.next_url = next_url
        self.ended = ended  # a session cookie was sent, but its session has ended


@dataclass(frozen=True)
class Staff:
    """The signed-in staff member of a request."""

    session: Session
    user: User
    csrf: str  # the token every form of this session carries

    @property
    def org_id(self) -> str:
        return self.session.org_id

    @property
    def role(self) -> Role:
        return self.user.role

    def can(self, permission: Permission | str) -> bool:
        return self.user.role.allows(Permission(permission))


def csrf_for(session_token: str) -> str:
    """The session's CSRF token: derived from the cookie's secret, so it needs no storage and a
    page from another site (which cannot read the cookie) cannot know it."""
    return hmac.new(session_token.encode("utf-8"), b"journeys console csrf", hashlib.sha256).hexdigest()


def client_address(request: Request) -> str | None:
    host = request.client.host if request.client else None
    if host is None:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def is_https(request: Request) -> bool:
    settings = request.app.state.settings
    public = settings.public_base_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def safe_next(url: str | None) -> str:
    """Where to go after login: a console path of ours, never another site."""
    if url and url.startswith(PREFIX + "/") and not url.startswith("//") and "\\" not in url:
        return url
    return PREFIX + "/"


# ---------------------------------------------------------------------------- the session
def _load_staff(request: Request, token: str) -> Staff | None:
    state = request.app.state
    now = state.clock.now()
    with read_only(state.engine) as conn:
        found = signed_in(conn, token, now)
    if found is None:
        return None
    with transaction(state.engine) as conn:
        touch(conn, found.session, now)  # restarts the idle timeout (written at most every 30 s)
    return Staff(found.session, found.user, csrf_for(token))


async def current_staff(request: Request) -> Staff:
    token = request.cookies.get(COOKIE, "")
    staff = await run_in_threadpool(_load_staff, request, token) if token else None
    if staff is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(here if request.method == "GET" else PREFIX + "/", ended=bool(token))
    request.state.staff = staff  # for error pages
    return staff


def allowed(permission: Permission) -> Callable[[Request], Awaitable[Staff]]:
    """A dependency: the signed-in staff member, whose role allows `permission` (else 403)."""

    async def dependency(request: Request) -> Staff:
        staff = await current_staff(request)
        if not staff.can(permission):
            raise Forbidden(
                f"your role ({staff.role.value}) may not do this: it needs "
                f"{_needed(permission)} (ask an admin)"
            )
        return staff

    return dependency


def _needed(permission: Permission) -> str:
    return f"the {MINIMUM_ROLE[permission].value} role or above"


@dataclass(frozen=True)
class FormAction:
    """A state-changing request: who, and the form (its CSRF token checked)."""

    staff: Staff
    form: FormData

    def text(self, name: str, default: str = "") -> str:
        value = self.form.get(name)
        return value if isinstance(value, str) else default


def _origin_ok(request: Request) -> bool:
    """A browser's Origin (or Referer) header, when sent, must be this server."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin != "null"
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin == own or origin.startswith(own + "/")


def check_csrf(request: Request, form: FormData, expected: str) -> None:
    given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if (
        not isinstance(given, str)
        or not expected
        or not hmac.compare_digest(given.encode(), expected.encode())
        or not _origin_ok(request)
    ):
        raise Forbidden(
            "this form could not be accepted: it was stale or did not come from this console "
            "(CSRF check). Reload the page and try again."
        )


def form_action(permission: Permission) -> Callable[[Request], Awaitable[FormAction]]:
    """A dependency for POSTs: the staff member (allowed `permission`) and the CSRF-checked form."""
    check_role = allowed(permission)

    async def dependency(request: Request) -> FormAction:
        staff = await check_role(request)
        form = await request.form()
        check_csrf(request, form, staff.csrf)
        return FormAction(staff, form)

    return dependency


# ---------------------------------------------------------------------------- the audit log
def record(
    request: Request,
    staff: Staff,
    action: Action,
    *,
    target_kind: str | None = None,
    target_ids: tuple[str, ...] = (),
    count: int | None = None,
) -> None:
    """Record what a staff member saw or did, in its own transaction (call from a thread).
    Actions that change data record inside their own transaction instead (audit_entry)."""
    entry = audit_entry(request, staff, action, target_kind=target_kind, target_ids=target_ids, count=count)
    with transaction(request.app.state.engine) as conn:
        audit.record(conn, entry)


def actor(request: Request, staff: Staff) -> audit.Actor:
    """The staff member as the actor of a change made in this request (its audit entries)."""
    return audit.Actor(ActorKind.USER, staff.user.id, request.app.state.clock.now(), client_address(request))


def audit_entry(
    request: Request,
    staff: Staff,
    action: Action,
    *,
    target_kind: str | None = None,
    target_ids: tuple[str, ...] = (),
    count: int | None = None,
) -> AuditEntry:
    return AuditEntry(
        org_id=staff.org_id,
        at=request.app.state.clock.now(),
        actor_kind=ActorKind.USER,
        actor_id=staff.user.id,
        action=action,
        target_kind=target_kind,
        target_ids=target_ids[: audit.MAX_TARGET_IDS],
        count=count,
        client_address=client_address(request),
    )


# ---------------------------------------------------------------------------- rendering
def local_time(value: datetime | None, zone: str | None = None) -> str:
    """A time for people: in `zone` (the instance's) when given, else UTC."""
    if value is None:
        return "—"
    try:
        tz = ZoneInfo(zone) if zone else None
    except (KeyError, ValueError):
        tz = None
    if tz is None:
        return value.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M UTC")
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def iso(value: datetime | None) -> str:
    return value.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


@cache
def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("journeys.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local_time"] = local_time
    env.filters["iso"] = iso
    env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    env.globals["PREFIX"] = PREFIX
    env.globals["CSRF_FIELD"] = CSRF_FIELD
    return env


def render(
    request: Request,
    template: str,
    *,
    staff: Staff | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    staff = staff or getattr(request.state, "staff", None)
    page = templates().get_template(template)
    body = page.render(request=request, staff=staff, Permission=Permission, **context)
    return HTMLResponse(body, status_code=status, headers=headers)
