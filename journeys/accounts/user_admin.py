"""Admin changes to staff users, each applied and audited in the caller's transaction — the one
path the command line (journeys user …) and the console (/console/admin/users) both take."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection

from journeys.accounts import audit, users
from journeys.accounts.audit import Action, Actor
from journeys.accounts.roles import Role
from journeys.errors import Invalid, NotFound


def change_user(
    conn: Connection, org_id: str, actor: Actor, action: Action, change: Callable[[Connection], users.User]
) -> users.User:
    """Apply one change to a user and record it (actor, action, the user's id) in the audit log."""
    user = change(conn)
    audit.record(conn, actor.entry(org_id, action, "user", (user.id,)))
    return user


def set_require_totp(conn: Connection, org_id: str, actor: Actor, required: bool) -> None:
    users.set_require_totp(conn, org_id, required, actor.at)
    audit.record(conn, actor.entry(org_id, Action.ORG_REQUIRE_TOTP, "org", (org_id,), count=int(required)))


def find(conn: Connection, org_id: str, user_id: str) -> users.User:
    """The org's user with this id (NotFound otherwise: another org's user is not found either)."""
    user = users.get_user_by_id(conn, org_id, user_id) if len(user_id) <= 64 else None
    if user is None:
        raise NotFound(f"no user {user_id} in this organisation")
    return user


def check_not_self(actor_user_id: str, target: users.User, action: Action, role: Role | None = None) -> None:
    """An admin may not lock themselves out: disable themselves, or give themselves a lower role
    (another admin must do it)."""
    if target.id != actor_user_id:
        return
    if action is Action.USER_DISABLE:
        raise Invalid("you cannot disable your own account (another admin can)")
    if action is Action.USER_SET_ROLE and role is not None and role is not target.role:
        raise Invalid("you cannot change your own role (another admin can)")


def parse_role(text: str) -> Role:
    try:
        return Role.parse(text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
