"""`journeys user …`: an org's staff users (the console's accounts). Each change is recorded in
the audit log (journeys/cli/auditing.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer
from sqlalchemy.engine import Connection

from journeys.accounts import user_admin, users
from journeys.accounts.audit import Action
from journeys.accounts.roles import Role
from journeys.cli.auditing import cli_actor, record_cli
from journeys.cli.common import _engine, _fail, _now, _print_json, _settings, json_option, new_app, org_option
from journeys.clock import iso_z
from journeys.keys.box import SecretKeyMissing
from journeys.store.db import read_only, transaction

user_app = new_app("Staff users of an org: create, list, disable, reset a password, enrol TOTP.")

ROLES = ", ".join(r.value for r in Role)


def _email_option() -> str:
    return typer.Option(..., "--email", metavar="EMAIL", help="The user's email address (their login)")  # type: ignore[no-any-return]


def _password_stdin_option() -> bool:
    return typer.Option(  # type: ignore[no-any-return]
        False, "--password-stdin", help="Read the password from standard input (else it is asked for)"
    )


def _read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or asked for twice without echo."""
    if from_stdin:
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        _fail("no terminal to ask for the password on: give it with --password-stdin")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@user_app.command("create")
def user_create(
    org: str = org_option(),
    email: str = _email_option(),
    role: str = typer.Option(..., "--role", metavar="ROLE", help=f"One of: {ROLES}"),
    password_stdin: bool = _password_stdin_option(),
    as_json: bool = json_option(),
) -> None:
    """Create a staff user with a role.

    viewer reads; operator also triggers, cancels, handles replies and opt-outs; designer also
    publishes journeys; admin also manages users, tokens, channels and webhooks. The password
    (at least 12 characters) is asked for, or read from stdin with --password-stdin."""
    try:
        parsed = Role.parse(role)
    except ValueError as exc:
        _fail(str(exc))
    password = _read_password(password_stdin)
    try:
        with transaction(_engine()) as conn:
            user = users.create_user(conn, org, email, parsed, password, _now())
            record_cli(conn, org, Action.USER_CREATE, "user", (user.id,))
    except users.UserError as exc:
        _fail(str(exc))
    if as_json:
        _print_json(user.wire())
    else:
        typer.echo(f"created user {user.id} ({user.email}, {user.role.value})")


@user_app.command("list")
def user_list(
    org: str = org_option(), as_json: bool = json_option("Print one JSON array instead of text")
) -> None:
    """List the org's users: role, state (active, locked, disabled), TOTP, last login."""
    now = _now()
    try:
        with read_only(_engine()) as conn:
            rows = users.list_users(conn, org)
    except users.UserError as exc:
        _fail(str(exc))
    if as_json:
        _print_json([u.wire() for u in rows])
        return
    for u in rows:
        state = (
            "disabled"
            if u.disabled_at
            else (
                f"locked until {iso_z(u.locked_until)}"
                if u.locked_until and u.locked_until > now
                else "active"
            )
        )
        typer.echo(
            f"{u.id}  {u.email}  {u.role.value}  {state}  totp={'yes' if u.totp_enabled else 'no'}  "
            f"last login {iso_z(u.last_login_at) or 'never'}"
        )


def _change_user(org: str, action: Action, change: Callable[[Connection], users.User]) -> users.User:
    """Apply one change to a user in a transaction, audited; a UserError ends the command."""
    try:
        with transaction(_engine()) as conn:
            user = user_admin.change_user(conn, org, cli_actor(), action, change)
    except users.UserError as exc:
        _fail(str(exc))
    return user


@user_app.command("disable")
def user_disable(org: str = org_option(), email: str = _email_option()) -> None:
    """Disable a user: they can no longer log in, and their sessions end at once."""
    user = _change_user(org, Action.USER_DISABLE, lambda conn: users.disable_user(conn, org, email, _now()))
    typer.echo(f"disabled {user.email}")


@user_app.command("enable")
def user_enable(org: str = org_option(), email: str = _email_option()) -> None:
    """Let a disabled user log in again (their failed-login count starts afresh)."""
    user = _change_user(org, Action.USER_ENABLE, lambda conn: users.enable_user(conn, org, email, _now()))
    typer.echo(f"enabled {user.email}")


@user_app.command("set-role")
def user_set_role(
    org: str = org_option(),
    email: str = _email_option(),
    role: str = typer.Option(..., "--role", metavar="ROLE", help=f"One of: {ROLES}"),
) -> None:
    """Give a user another role; their sessions end, so it applies from their next login."""
    try:
        parsed = Role.parse(role)
    except ValueError as exc:
        _fail(str(exc))
    user = _change_user(
        org, Action.USER_SET_ROLE, lambda conn: users.set_role(conn, org, email, parsed, _now())
    )
    typer.echo(f"{user.email} is now {user.role.value}")


@user_app.command("remove-totp")
def user_remove_totp(org: str = org_option(), email: str = _email_option()) -> None:
    """Remove a user's second factor (e.g. a lost phone); their sessions end.

    They log in with their password alone, or, where the org requires TOTP, enrol again first
    (journeys user totp)."""
    user = _change_user(
        org, Action.USER_TOTP_REMOVE, lambda conn: users.remove_totp(conn, org, email, _now())
    )
    typer.echo(f"TOTP removed for {user.email}; their sessions ended")


@user_app.command("reset-password")
def user_reset_password(
    org: str = org_option(), email: str = _email_option(), password_stdin: bool = _password_stdin_option()
) -> None:
    """Set a new password (at least 12 characters); lifts a lockout and ends the user's sessions."""
    password = _read_password(password_stdin)
    user = _change_user(
        org, Action.USER_RESET_PASSWORD, lambda conn: users.reset_password(conn, org, email, password, _now())
    )
    typer.echo(f"password reset for {user.email}; their sessions ended")


@user_app.command("totp")
def user_totp(org: str = org_option(), email: str = _email_option(), as_json: bool = json_option()) -> None:
    """Enrol a user in TOTP (a second factor): prints the otpauth:// URI once.

    Put it into the user's authenticator app (as a QR code or by hand); from then on their login
    asks for its 6-digit code. Enrolling again replaces the secret. Needs JOURNEYS_SECRET_KEY (the
    secret is stored sealed with it)."""
    box = _settings().secret_box()
    try:
        with transaction(_engine()) as conn:
            enrolment = users.enrol_totp(conn, org, email, box, _now())
            record_cli(conn, org, Action.USER_TOTP_ENROL, "user", (enrolment.user.id,))
    except users.UserError as exc:
        _fail(str(exc))
    except SecretKeyMissing as exc:
        _fail(str(exc))
    if as_json:
        _print_json({"id": enrolment.user.id, "email": enrolment.user.email, "uri": enrolment.uri})
    else:
        typer.echo(f"TOTP enrolled for {enrolment.user.email}; the URI (shown only now):")
        typer.echo(enrolment.uri)


@user_app.command("require-totp")
def user_require_totp(
    org: str = org_option(),
    off: bool = typer.Option(False, "--off", help="Stop requiring it"),
) -> None:
    """Require a TOTP second factor of every user of the org (users without one cannot log in)."""
    try:
        with transaction(_engine()) as conn:
            users.set_require_totp(conn, org, not off, _now())
            record_cli(conn, org, Action.ORG_REQUIRE_TOTP, "org", (org,), count=0 if off else 1)
    except users.UserError as exc:
        _fail(str(exc))
    typer.echo(f"org {org}: TOTP {'no longer required' if off else 'required'}")
