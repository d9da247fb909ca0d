"""Staff users: roles, passwords (argon2), TOTP, lockout, sessions, and `journeys user …`.

Runs on the suite's database (SQLite, or PostgreSQL with JOURNEYS_TEST_DATABASE=postgresql). Every
time is a ManualClock's or a fixed datetime: nothing depends on the wall clock."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine
from support.keys import strong_key

from journeys.accounts import sessions, users
from journeys.accounts.roles import MINIMUM_ROLE, Permission, Role
from journeys.accounts.service import create_org
from journeys.clock import ManualClock
from journeys.keys.box import SecretBox
from journeys.store.db import create_db_engine, transaction

START = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
BOX = SecretBox(strong_key("users"))
_ENTRY_POINT = Path(sys.executable).parent / "journeys"
JOURNEYS = [str(_ENTRY_POINT)] if _ENTRY_POINT.exists() else [sys.executable, "-m", "journeys.cli"]


@pytest.fixture(autouse=True)
def _quick_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process tests hash with light argon2 parameters (the CLI's subprocesses use the real ones)."""
    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture()
def org(engine: Engine) -> str:
    with transaction(engine) as conn:
        return create_org(conn, "Users Clinic", START).id


def make_user(
    engine: Engine, org: str, email: str = "ann@clinic.example", role: Role = Role.OPERATOR
) -> users.User:
    with transaction(engine) as conn:
        return users.create_user(conn, org, email, role, PASSWORD, START)


def login(engine: Engine, org: str, password: str, clock: ManualClock, **kw: Any) -> users.LoginOutcome:
    email = kw.pop("email", "ann@clinic.example")
    with transaction(engine) as conn:
        return users.login(conn, org, email, password, kw.pop("code", None), BOX, clock.now(), **kw)


# ---------------------------------------------------------------------------- roles
def test_each_role_allows_what_the_roles_below_it_allow() -> None:
    assert [r.value for r in sorted(Role, key=lambda r: r.rank)] == [
        "viewer",
        "operator",
        "designer",
        "admin",
    ]
    assert Role.VIEWER.allows(Permission.READ) and not Role.VIEWER.allows(Permission.CANCEL)
    assert Role.OPERATOR.allows(Permission.CANCEL) and Role.OPERATOR.allows(Permission.MANAGE_OPT_OUTS)
    assert not Role.OPERATOR.allows(Permission.PUBLISH)
    assert Role.DESIGNER.allows(Permission.PUBLISH) and not Role.DESIGNER.allows(Permission.MANAGE_USERS)
    assert all(Role.ADMIN.allows(p) for p in Permission)
    assert set(MINIMUM_ROLE) == set(Permission)
    for permission in Permission:
        allowed = [r for r in Role if r.allows(permission)]
        assert allowed == [r for r in Role if r.rank >= MINIMUM_ROLE[permission].rank]
    assert Role.parse(" Admin ") is Role.ADMIN
    with pytest.raises(
        ValueError, match="unknown role 'boss' \\(one of: viewer, operator, designer, admin\\)"
    ):
        Role.parse("boss")


# ---------------------------------------------------------------------------- users
def test_create_and_list_users_emails_unique_per_org_whatever_their_case(engine: Engine, org: str) -> None:
    ann = make_user(engine, org, "Ann@Clinic.example", Role.ADMIN)
    assert (ann.email, ann.role, ann.totp_enabled, ann.disabled_at) == (
        "Ann@Clinic.example",
        Role.ADMIN,
        False,
        None,
    )
    with pytest.raises(users.UserError, match="already has a user ann@clinic.EXAMPLE"):
        make_user(engine, org, "ann@clinic.EXAMPLE")
    with transaction(engine) as conn:
        other = create_org(conn, "Other Clinic", START).id
    make_user(engine, other, "ann@clinic.example")  # another org may have the same address
    make_user(engine, org, "bob@clinic.example", Role.VIEWER)
    with transaction(engine) as conn:
        listed = users.list_users(conn, org)
        stored = conn.execute(
            sa.text("SELECT password_hash FROM users WHERE org_id = :o AND user_id = :u"),
            {"o": org, "u": ann.id},
        ).scalar_one()
    assert [(u.email, u.role) for u in listed] == [
        ("Ann@Clinic.example", Role.ADMIN),
        ("bob@clinic.example", Role.VIEWER),
    ]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert "password" not in json.dumps(listed[0].wire(), default=str).lower()


@pytest.mark.parametrize(
    ("org_id", "email", "password", "message"),
    [
        ("no-such-org", "ann@clinic.example", PASSWORD, "unknown org no-such-org"),
        (None, "ann", PASSWORD, "'ann' is not an email address"),
        (None, "ann@clinic", PASSWORD, "is not an email address"),
        (None, "ann smith@clinic.example", PASSWORD, "is not an email address"),
        (None, "ann@clinic.example", "short pass", "at least 12 characters long (it has 10)"),
        (None, "ann@clinic.example", "x" * 1025, "too long"),
    ],
)
def test_create_user_refuses_bad_input(
    engine: Engine, org: str, org_id: str | None, email: str, password: str, message: str
) -> None:
    with transaction(engine) as conn, pytest.raises(users.UserError, match=re.escape(message)):
        users.create_user(conn, org_id or org, email, Role.VIEWER, password, START)
    with transaction(engine) as conn:
        assert users.list_users(conn, org) == []


def test_login_right_and_wrong_password_unknown_user_disabled_user(
    engine: Engine, org: str, clock: ManualClock
) -> None:
    make_user(engine, org)
    ok = login(engine, org, PASSWORD, clock, email="ANN@clinic.example")
    assert ok.ok and ok.user is not None and ok.user.last_login_at == START
    wrong = login(engine, org, "wrong password!", clock)
    unknown = login(engine, org, PASSWORD, clock, email="nobody@clinic.example")
    assert (wrong.problem, wrong.message) == (users.LoginProblem.BAD_CREDENTIALS, "wrong email or password")
    assert (unknown.problem, unknown.message) == (wrong.problem, wrong.message)  # no user enumeration
    with transaction(engine) as conn:
        users.disable_user(conn, org, "ann@clinic.example", clock.now())
    disabled = login(engine, org, PASSWORD, clock)
    assert disabled.problem is users.LoginProblem.DISABLED and "disabled" in disabled.message


def test_five_failures_in_fifteen_minutes_lock_the_account_for_fifteen_minutes(
    engine: Engine, org: str, clock: ManualClock
) -> None:
    make_user(engine, org)
    for _ in range(4):
        assert login(engine, org, "wrong password!", clock).problem is users.LoginProblem.BAD_CREDENTIALS
        clock.advance(timedelta(minutes=2))
    fifth = login(engine, org, "wrong password!", clock)  # at 16:08
    assert fifth.problem is users.LoginProblem.LOCKED
    assert fifth.locked_until == START + timedelta(minutes=23)
    assert fifth.message.startswith(
        "too many failed logins: this account is locked until 16:23 UTC (2026-11-02T16:23:00Z)"
    )
    clock.advance(timedelta(minutes=14))
    still = login(engine, org, PASSWORD, clock)  # the right password does not open a locked account
    assert still.problem is users.LoginProblem.LOCKED and "16:23 UTC" in still.message
    clock.advance(timedelta(minutes=1))
    assert login(engine, org, PASSWORD, clock).ok


def test_failures_spread_over_more_than_the_window_do_not_lock(
    engine: Engine, org: str, clock: ManualClock
) -> None:
    make_user(engine, org)
    for _ in range(4):
        login(engine, org, "wrong password!", clock)
    clock.advance(timedelta(minutes=15))
    for _ in range(4):
        assert login(engine, org, "wrong password!", clock).problem is users.LoginProblem.BAD_CREDENTIALS
    assert login(engine, org, PASSWORD, clock).ok  # and a success clears the count
    for _ in range(4):
        login(engine, org, "wrong password!", clock)
    assert login(engine, org, PASSWORD, clock).ok


def test_reset_password_lifts_a_lockout_and_ends_sessions(
    engine: Engine, org: str, clock: ManualClock
) -> None:
    ann = make_user(engine, org)
    with transaction(engine) as conn:
        new = sessions.create_session(conn, org, ann.id, clock.now())
    for _ in range(5):
        login(engine, org, "wrong password!", clock)
    assert login(engine, org, PASSWORD, clock).problem is users.LoginProblem.LOCKED
    with transaction(engine) as conn, pytest.raises(users.UserError, match="at least 12 characters"):
        users.reset_password(conn, org, "ann@clinic.example", "too short", clock.now())
    with transaction(engine) as conn:
        users.reset_password(conn, org, "ann@clinic.example", "a brand new passphrase", clock.now())
        assert sessions.lookup(conn, new.token, clock.now()) is None
    assert login(engine, org, PASSWORD, clock).problem is users.LoginProblem.BAD_CREDENTIALS
    assert login(engine, org, "a brand new passphrase", clock).ok
    with transaction(engine) as conn, pytest.raises(users.UserError, match="no user zed@clinic.example"):
        users.reset_password(conn, org, "zed@clinic.example", "a brand new passphrase", clock.now())


def test_enable_set_role_and_remove_totp(engine: Engine, org: str, clock: ManualClock) -> None:
    ann = make_user(engine, org)
    with transaction(engine) as conn:
        users.disable_user(conn, org, "ann@clinic.example", clock.now())
    assert login(engine, org, PASSWORD, clock).problem is users.LoginProblem.DISABLED
    with transaction(engine) as conn:
        enabled = users.enable_user(conn, org, "ANN@clinic.example", clock.now())
    assert enabled.disabled_at is None and login(engine, org, PASSWORD, clock).ok

    with transaction(engine) as conn:
        session = sessions.create_session(conn, org, ann.id, clock.now())
        same = users.set_role(conn, org, "ann@clinic.example", Role.OPERATOR, clock.now())
        assert same.role is Role.OPERATOR and sessions.lookup(conn, session.token, clock.now()) is not None
        admin = users.set_role(conn, org, "ann@clinic.example", Role.ADMIN, clock.now())
        assert admin.role is Role.ADMIN
        assert sessions.lookup(conn, session.token, clock.now()) is None  # a new role: log in again
    assert [u.role for u in _users(engine, org)] == [Role.ADMIN]

    with transaction(engine) as conn:
        enrolment = users.enrol_totp(conn, org, "ann@clinic.example", BOX, clock.now())
    assert login(engine, org, PASSWORD, clock).problem is users.LoginProblem.TOTP_REQUIRED
    with transaction(engine) as conn:
        session = sessions.create_session(conn, org, ann.id, clock.now())
        removed = users.remove_totp(conn, org, "ann@clinic.example", clock.now())
        assert not removed.totp_enabled and sessions.lookup(conn, session.token, clock.now()) is None
    assert login(engine, org, PASSWORD, clock).ok
    assert enrolment.user.totp_enabled
    with transaction(engine) as conn:
        users.set_require_totp(conn, org, True, clock.now())
    assert login(engine, org, PASSWORD, clock).problem is users.LoginProblem.TOTP_NOT_ENROLLED
    for change in (users.enable_user, users.remove_totp):
        with transaction(engine) as conn, pytest.raises(users.UserError, match="no user zed@clinic.example"):
            change(conn, org, "zed@clinic.example", clock.now())
    with transaction(engine) as conn, pytest.raises(users.UserError, match="no user zed@clinic.example"):
        users.set_role(conn, org, "zed@clinic.example", Role.VIEWER, clock.now())


def _users(engine: Engine, org: str) -> list[users.User]:
    with transaction(engine) as conn:
        return users.list_users(conn, org)


def _secret(uri: str) -> str:
    return parse_qs(urlparse(uri).query)["secret"][0]


def test_totp_code_required_once_enrolled_wrong_and_replayed_codes_refused(
    engine: Engine, org: str, clock: ManualClock
) -> None:
    make_user(engine, org)
    with transaction(engine) as conn:
        enrolment = users.enrol_totp(conn, org, "ann@clinic.example", BOX, clock.now())
        stored = conn.execute(
            sa.text("SELECT totp_secret_encrypted FROM users WHERE org_id = :o"), {"o": org}
        ).scalar_one()
    assert (
        enrolment.uri.startswith("otpauth://totp/journeys:ann%40clinic.example?")
        and enrolment.user.totp_enabled
    )
    secret = _secret(enrolment.uri)
    assert secret not in stored  # sealed
    totp = pyotp.TOTP(secret)
    assert login(engine, org, PASSWORD, clock).problem is users.LoginProblem.TOTP_REQUIRED
    wrong = "000000" if totp.at(clock.now()) != "000000" else "111111"
    assert login(engine, org, PASSWORD, clock, code=wrong).problem is users.LoginProblem.TOTP_WRONG
    code = totp.at(clock.now())
    assert login(engine, org, PASSWORD, clock, code=code).ok
    clock.advance(timedelta(seconds=5))
    assert (
        login(engine, org, PASSWORD, clock, code=code).problem is users.LoginProblem.TOTP_WRONG
    )  # used once
    clock.advance(timedelta(seconds=60))
    assert login(engine, org, PASSWORD, clock, code=totp.at(clock.now())).ok
    # Wrong codes count as failed logins (a code cannot be guessed without limit).
    for _ in range(4):
        login(engine, org, PASSWORD, clock, code=wrong)
    assert login(engine, org, PASSWORD, clock, code=wrong).problem is users.LoginProblem.LOCKED


def test_an_org_can_require_totp(engine: Engine, org: str, clock: ManualClock) -> None:
    make_user(engine, org)
    with transaction(engine) as conn:
        assert not users.requires_totp(conn, org)
        users.set_require_totp(conn, org, True, clock.now())
        assert users.requires_totp(conn, org)
    refused = login(engine, org, PASSWORD, clock)
    assert (
        refused.problem is users.LoginProblem.TOTP_NOT_ENROLLED
        and "requires a second factor" in refused.message
    )
    with transaction(engine) as conn:
        users.set_require_totp(conn, org, False, clock.now())
    assert login(engine, org, PASSWORD, clock).ok
    with transaction(engine) as conn, pytest.raises(users.UserError, match="unknown org"):
        users.set_require_totp(conn, "no-such-org", True, clock.now())


# ---------------------------------------------------------------------------- sessions
def test_session_idle_timeout_touch_and_revoke(engine: Engine, org: str, clock: ManualClock) -> None:
    ann = make_user(engine, org)
    with transaction(engine) as conn:
        new = sessions.create_session(conn, org, ann.id, clock.now(), client_address="192.0.2.7")
        hashes = (
            conn.execute(sa.text("SELECT token_hash FROM user_sessions WHERE org_id = :o"), {"o": org})
            .scalars()
            .all()
        )
    assert new.token.startswith(f"{org}.") and new.token.split(".", 1)[1] not in hashes
    clock.advance(timedelta(minutes=14))
    with transaction(engine) as conn:
        live = sessions.lookup(conn, new.token, clock.now())
        assert live is not None and live.user_id == ann.id and live.client_address == "192.0.2.7"
        sessions.touch(conn, live, clock.now())
    clock.advance(timedelta(minutes=14))  # 28 minutes after login, 14 after the last use
    with transaction(engine) as conn:
        live = sessions.lookup(conn, new.token, clock.now())
        assert live is not None and live.ends_at() == clock.now() + timedelta(minutes=1)
    clock.advance(timedelta(minutes=1))
    with transaction(engine) as conn:
        assert sessions.lookup(conn, new.token, clock.now()) is None  # idle for 15 minutes
        other = sessions.create_session(conn, org, ann.id, clock.now())
        assert sessions.lookup(conn, other.token, clock.now()) is not None
        sessions.revoke(conn, other.session, clock.now())
        assert sessions.lookup(conn, other.token, clock.now()) is None


def test_session_absolute_timeout_and_disabled_user(engine: Engine, org: str, clock: ManualClock) -> None:
    ann = make_user(engine, org)
    with transaction(engine) as conn:
        new = sessions.create_session(conn, org, ann.id, clock.now())
    for _ in range(12 * 6 - 1):  # used every 10 minutes: never idle
        clock.advance(timedelta(minutes=10))
        with transaction(engine) as conn:
            live = sessions.lookup(conn, new.token, clock.now())
            assert live is not None, clock.now()
            sessions.touch(conn, live, clock.now())
    clock.advance(timedelta(minutes=10))  # 12 hours after login
    with transaction(engine) as conn:
        assert sessions.lookup(conn, new.token, clock.now()) is None
        again = sessions.create_session(conn, org, ann.id, clock.now(), idle=timedelta(minutes=5))
        assert sessions.lookup(conn, again.token, clock.now()) is not None
        users.disable_user(conn, org, ann.email, clock.now())
        assert sessions.lookup(conn, again.token, clock.now()) is None


@pytest.mark.parametrize("token", ["", "nodot", ".secret", "org.", "x" * 300, "no-such-org.abc", "\x00.abc"])
def test_session_lookup_of_malformed_or_unknown_tokens(engine: Engine, token: str) -> None:
    with transaction(engine) as conn:
        assert sessions.lookup(conn, token, START) is None


# ---------------------------------------------------------------------------- the CLI
def run(
    database_url: str, tmp_path: Path, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
    return subprocess.run(
        [*JOURNEYS, "--db", database_url, *args],
        cwd=tmp_path, env={**clean, **env}, input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_user_commands(database_url: str, tmp_path: Path, org: str) -> None:
    def ok(*args: str, stdin: str = "", **env: str) -> str:
        proc = run(database_url, tmp_path, *args, stdin=stdin, **env)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        assert proc.stderr == "", proc.stderr
        return proc.stdout

    def fails(*args: str, stdin: str = "", code: int = 1, **env: str) -> str:
        proc = run(database_url, tmp_path, *args, stdin=stdin, **env)
        assert (proc.returncode, proc.stdout) == (code, ""), (args, proc.returncode, proc.stdout, proc.stderr)
        return proc.stderr

    created = json.loads(
        ok("user", "create", "--org", org, "--email", "Ann@Clinic.example", "--role", "Admin",
           "--password-stdin", "--json", stdin=PASSWORD + "\n")
    )  # fmt: skip
    assert {k: created[k] for k in ("orgId", "email", "role", "totp", "disabledAt")} == {
        "orgId": org, "email": "Ann@Clinic.example", "role": "admin", "totp": False, "disabledAt": None
    }  # fmt: skip
    text = ok("user", "create", "--org", org, "--email", "bob@clinic.example", "--role", "viewer",
              "--password-stdin", stdin=PASSWORD)  # fmt: skip
    assert text.startswith("created user ") and text.rstrip().endswith("(bob@clinic.example, viewer)")

    create = ("user", "create", "--org", org, "--role", "viewer", "--password-stdin")
    bad_org = ("user", "create", "--org", "no-such-org", "--email", "c@d.example", "--role", "viewer")
    assert "unknown org no-such-org" in fails(*bad_org, "--password-stdin", stdin=PASSWORD)
    assert "'not-an-email' is not an email address" in fails(
        *create, "--email", "not-an-email", stdin=PASSWORD
    )
    assert "unknown role 'boss' (one of: viewer, operator, designer, admin)" in fails(
        "user",
        "create",
        "--org",
        org,
        "--email",
        "c@d.example",
        "--role",
        "boss",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert "at least 12 characters long (it has 5)" in fails(
        *create, "--email", "c@d.example", stdin="short\n"
    )
    assert "already has a user ann@clinic.example" in fails(
        *create, "--email", "ann@clinic.example", stdin=PASSWORD
    )
    assert "--password-stdin" in fails(*create[:-1], "--email", "c@d.example")  # no terminal to prompt on

    listed = json.loads(ok("user", "list", "--org", org, "--json"))
    assert [(u["email"], u["role"]) for u in listed] == [
        ("Ann@Clinic.example", "admin"),
        ("bob@clinic.example", "viewer"),
    ]
    assert "unknown org" in fails("user", "list", "--org", "no-such-org")

    assert (
        ok("user", "disable", "--org", org, "--email", "BOB@clinic.example")
        == "disabled bob@clinic.example\n"
    )
    assert "no user zed@clinic.example" in fails(
        "user", "disable", "--org", org, "--email", "zed@clinic.example"
    )
    lines = ok("user", "list", "--org", org).splitlines()
    assert "  active  " in lines[0] and "  disabled  " in lines[1], lines
    bob = ("--org", org, "--email", "bob@clinic.example")
    zed = ("--org", org, "--email", "zed@clinic.example")
    assert ok("user", "enable", *bob) == "enabled bob@clinic.example\n"
    assert "no user zed@clinic.example" in fails("user", "enable", *zed)
    assert "  active  " in ok("user", "list", "--org", org).splitlines()[1]
    assert ok("user", "set-role", *bob, "--role", "Designer") == "bob@clinic.example is now designer\n"
    unknown_role = "unknown role 'boss' (one of: viewer, operator, designer, admin)"
    assert unknown_role in fails("user", "set-role", *bob, "--role", "boss")
    assert "no user zed@clinic.example" in fails("user", "set-role", *zed, "--role", "viewer")
    bad = ("--org", org, "--email", "x", "--role", "viewer")
    assert "not an email address" in fails("user", "set-role", *bad)
    listed = json.loads(ok("user", "list", "--org", org, "--json"))
    assert [u["role"] for u in listed] == ["admin", "designer"]
    assert ok("user", "remove-totp", *bob).startswith("TOTP removed for bob@clinic.example")
    no_org = ("--org", "no-such-org", "--email", "bob@clinic.example")
    assert "unknown org" in fails("user", "remove-totp", *no_org)

    reset = ("user", "reset-password", "--org", org, "--email", "ann@clinic.example", "--password-stdin")
    assert "at least 12 characters" in fails(*reset, stdin="tiny\n")
    assert "reset for Ann@Clinic.example" in ok(*reset, stdin="another long passphrase\n")
    bad_email = ("user", "reset-password", "--org", org, "--email", "x", "--password-stdin")
    assert "not an email address" in fails(*bad_email, stdin=PASSWORD)

    totp = ("user", "totp", "--org", org, "--email", "ann@clinic.example")
    assert "JOURNEYS_SECRET_KEY is not set" in fails(*totp)
    out = ok(*totp, JOURNEYS_SECRET_KEY=strong_key("a secret key for this test run"))
    assert out.splitlines()[1].startswith("otpauth://totp/journeys:Ann%40Clinic.example?secret=")
    assert "no user" in fails("user", "totp", "--org", org, "--email", "zed@clinic.example",
                              JOURNEYS_SECRET_KEY=strong_key("another key"))  # fmt: skip
    assert ok("user", "require-totp", "--org", org) == f"org {org}: TOTP required\n"
    assert "unknown org" in fails("user", "require-totp", "--org", "no-such-org")

    with transaction(create_db_engine(database_url)) as conn:
        assert users.requires_totp(conn, org)
        assert users.get_user(conn, org, "ann@clinic.example").totp_enabled

    exported = [json.loads(line) for line in ok("audit", "export", "--org", org, "--json").splitlines()]
    assert [e["action"] for e in exported] == [
        *("user.create", "user.create", "user.disable", "user.enable", "user.set_role", "user.totp_remove"),
        *("user.reset_password", "user.totp_enrol", "org.require_totp"),
    ]
    assert {e["actor"]["kind"] for e in exported} == {"cli"}
    assert exported[0]["target"] == {"kind": "user", "ids": [created["id"]]}
    dump = json.dumps(exported)
    assert "clinic.example" not in dump and PASSWORD not in dump  # ids only
