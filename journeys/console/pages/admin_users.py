"""Admin › Users: list, create, disable/enable, change role, reset a password, remove TOTP,
require TOTP for the org. Each change goes through journeys.accounts.user_admin (as the CLI's
do), audited in its own transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from fastapi import APIRouter, Depends, Request
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from journeys.accounts import user_admin, users
from journeys.accounts.audit import Action
from journeys.accounts.roles import Permission, Role
from journeys.console import web
from journeys.console.web import FormAction, Staff
from journeys.errors import Invalid, NotFound
from journeys.store.db import read_only, transaction

router = APIRouter(prefix=web.PREFIX + "/admin")
USERS = web.PREFIX + "/admin/users"
NOTICES = {
    "created": "The user was created.",
    "disabled": "The user was disabled; their sessions ended.",
    "enabled": "The user was enabled.",
    "role": "The role was changed; their sessions ended.",
    "password": "The password was reset; their sessions ended.",
    "totp-removed": "The second factor was removed; their sessions ended.",
    "totp-required": "Every user of this organisation now needs a second factor.",
    "totp-optional": "A second factor is no longer required.",
}


@contextmanager
def _user_errors() -> Iterator[None]:
    """A UserError (bad email, weak password, ...) is a bad request: 400 with its message."""
    try:
        yield
    except users.UserError as exc:
        raise Invalid(str(exc)) from None


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("done", ""))


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
async def admin_home(staff: Staff = Depends(web.allowed(Permission.MANAGE_USERS))) -> Response:
    return RedirectResponse(USERS, status_code=303)


@router.get("/users", include_in_schema=False)
async def users_page(
    request: Request, staff: Staff = Depends(web.allowed(Permission.MANAGE_USERS))
) -> Response:
    def load() -> tuple[list[users.User], bool]:
        with read_only(request.app.state.engine) as conn:
            return users.list_users(conn, staff.org_id), users.requires_totp(conn, staff.org_id)

    found, required = await run_in_threadpool(load)
    return web.render(
        request, "admin/users.html", staff=staff, users=found, totp_required=required,
        roles=list(Role), now=request.app.state.clock.now(), notice=_notice(request),
    )  # fmt: skip


@router.post("/users", include_in_schema=False)
async def create_user(
    request: Request, action: FormAction = Depends(web.form_action(Permission.MANAGE_USERS))
) -> Response:
    role = user_admin.parse_role(action.text("role"))
    org_id, actor = action.staff.org_id, web.actor(request, action.staff)

    email, password = action.text("email"), action.text("password")

    def create() -> users.User:
        with _user_errors(), transaction(request.app.state.engine) as conn:
            return user_admin.change_user(
                conn, org_id, actor, Action.USER_CREATE,
                lambda c: users.create_user(c, org_id, email, role, password, actor.at),
            )  # fmt: skip

    user = await run_in_threadpool(create)
    return RedirectResponse(f"{USERS}/{user.id}?done=created", status_code=303)


@router.post("/users/require-totp", include_in_schema=False)
async def require_totp(
    request: Request, action: FormAction = Depends(web.form_action(Permission.MANAGE_USERS))
) -> Response:
    required = action.text("required") == "yes"
    actor = web.actor(request, action.staff)

    def change() -> None:
        with _user_errors(), transaction(request.app.state.engine) as conn:
            user_admin.set_require_totp(conn, action.staff.org_id, actor, required)

    await run_in_threadpool(change)
    return RedirectResponse(f"{USERS}?done=totp-{'required' if required else 'optional'}", status_code=303)


@router.get("/users/{user_id}", include_in_schema=False)
async def user_page(
    request: Request, user_id: str, staff: Staff = Depends(web.allowed(Permission.MANAGE_USERS))
) -> Response:
    def load() -> users.User:
        with read_only(request.app.state.engine) as conn:
            return user_admin.find(conn, staff.org_id, user_id)

    user = await run_in_threadpool(load)
    return web.render(
        request, "admin/user.html", staff=staff, user=user, roles=list(Role),
        now=request.app.state.clock.now(), notice=_notice(request),
    )  # fmt: skip


Change = Callable[[Connection, str, str], users.User]  # (conn, org, email) -> the changed user


def _change_for(what: str, action: FormAction, now: datetime) -> tuple[Action, Change, Role | None]:
    """The audited action, the change and (for a role change) the new role a form asks for."""
    if what == "disable":
        return Action.USER_DISABLE, lambda c, org, email: users.disable_user(c, org, email, now), None
    if what == "enable":
        return Action.USER_ENABLE, lambda c, org, email: users.enable_user(c, org, email, now), None
    if what == "role":
        role = user_admin.parse_role(action.text("role"))
        return Action.USER_SET_ROLE, lambda c, org, email: users.set_role(c, org, email, role, now), role
    if what == "password":
        password = action.text("password")
        return (
            Action.USER_RESET_PASSWORD,
            lambda c, org, email: users.reset_password(c, org, email, password, now),
            None,
        )
    if what == "remove-totp":
        return Action.USER_TOTP_REMOVE, lambda c, org, email: users.remove_totp(c, org, email, now), None
    raise NotFound(f"no such change: {what}")


@router.post("/users/{user_id}/{what}", include_in_schema=False)
async def change_user(
    request: Request,
    user_id: str,
    what: str,
    action: FormAction = Depends(web.form_action(Permission.MANAGE_USERS)),
) -> Response:
    actor = web.actor(request, action.staff)
    audit_action, change, role = _change_for(what, action, actor.at)
    org_id = action.staff.org_id

    def apply() -> None:
        with _user_errors(), transaction(request.app.state.engine) as conn:
            target = user_admin.find(conn, org_id, user_id)
            user_admin.check_not_self(action.staff.user.id, target, audit_action, role)
            user_admin.change_user(
                conn, org_id, actor, audit_action, lambda c: change(c, org_id, target.email)
            )

    await run_in_threadpool(apply)
    done = {"disable": "disabled", "enable": "enabled", "remove-totp": "totp-removed"}.get(what, what)
    return RedirectResponse(f"{USERS}/{user_id}?done={done}", status_code=303)
