"""Staff users of an org: create, list, disable, reset a password, enrol a TOTP second factor,
and log in (argon2 passwords, optional or org-required TOTP, lockout after repeated failures).

Services take a connection; the caller commits — after a failed login too, so the failure counts
(`login` returns its outcome rather than raising). Audit entries are the caller's (it knows the
actor): journeys.accounts.audit."""

from __future__ import annotations

import functools
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection

from journeys.accounts.roles import Role
from journeys.ids import new_id
from journeys.keys.box import SecretBox
from journeys.store import accounts as accounts_repo
from journeys.store import users as repo

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
MAX_EMAIL_CHARS = 254
TOTP_ISSUER = "journeys"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to check an unknown user's password against (the same time as a known user's).
    Made on first use, not at import: an argon2 hash takes 64 MB and ~0.1 s, and every
    process that imports the CLI (the worker too) would pay for it."""
    return _hasher.hash("not a real password: evens out the time of unknown users")


class UserError(ValueError):
    """A bad request about users (unknown org or user, bad email, weak password, ...)."""


@dataclass(frozen=True)
class LockoutPolicy:
    """`max_failures` failed logins within `window` lock the account for `lock_for`."""

    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    lock_for: timedelta = timedelta(minutes=15)


DEFAULT_LOCKOUT = LockoutPolicy()


@dataclass(frozen=True)
class User:
    """A staff user as shown to admins (never the password hash or TOTP secret)."""

    org_id: str
    id: str
    email: str
    role: Role
    totp_enabled: bool
    created_at: datetime
    disabled_at: datetime | None
    last_login_at: datetime | None
    locked_until: datetime | None

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "orgId": self.org_id,
            "email": self.email,
            "role": self.role.value,
            "totp": self.totp_enabled,
            "createdAt": self.created_at,
            "disabledAt": self.disabled_at,
            "lastLoginAt": self.last_login_at,
            "lockedUntil": self.locked_until,
        }


def _user(r: repo.UserRecord) -> User:
    return User(
        org_id=r.org_id,
        id=r.user_id,
        email=r.email,
        role=Role(r.role),
        totp_enabled=r.totp_secret_encrypted is not None,
        created_at=r.created_at,
        disabled_at=r.disabled_at,
        last_login_at=r.last_login_at,
        locked_until=r.locked_until,
    )


# ---------------------------------------------------------------------------- input checks
def normalise_email(text: str) -> tuple[str, str]:
    """(the address as given, trimmed; its lower-cased key) or UserError."""
    email = text.strip()
    if len(email) > MAX_EMAIL_CHARS or not _EMAIL.match(email) or not email.isprintable():
        raise UserError(f"{text!r} is not an email address (like name@clinic.example)")
    return email, email.lower()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise UserError(
            f"the password is too short: it must be at least {MIN_PASSWORD_CHARS} characters long "
            f"(it has {len(password)})"
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise UserError(f"the password is too long: at most {MAX_PASSWORD_CHARS} characters")
    if "\x00" in password:
        raise UserError("the password must not contain NUL characters")


def _check_org(conn: Connection, org_id: str) -> None:
    if "\x00" in org_id or len(org_id) > 64 or accounts_repo.get_org(conn, org_id) is None:
        raise UserError(f"unknown org {org_id}")


def _find(conn: Connection, org_id: str, email: str, for_update: bool = False) -> repo.UserRecord:
    _check_org(conn, org_id)
    _, key = normalise_email(email)
    record = repo.get_user_by_email(conn, org_id, key, for_update=for_update)
    if record is None:
        raise UserError(f"no user {email.strip()} in org {org_id}")
    return record


# ---------------------------------------------------------------------------- admin actions
def create_user(conn: Connection, org_id: str, email: str, role: Role, password: str, now: datetime) -> User:
    _check_org(conn, org_id)
    address, key = normalise_email(email)
    check_password(password)
    if repo.email_taken(conn, org_id, key):
        raise UserError(f"org {org_id} already has a user {address}")
    record = repo.UserRecord(
        org_id=org_id,
        user_id=new_id(),
        email=address,
        role=role.value,
        password_hash=_hasher.hash(password),
        totp_secret_encrypted=None,
        totp_last_step=None,
        failed_logins=0,
        first_failed_at=None,
        locked_until=None,
        created_at=now,
        updated_at=now,
        disabled_at=None,
        last_login_at=None,
    )
    repo.insert_user(conn, record, key)
    return _user(record)


def list_users(conn: Connection, org_id: str) -> list[User]:
    _check_org(conn, org_id)
    return [_user(r) for r in repo.list_users(conn, org_id)]


def get_user_by_id(conn: Connection, org_id: str, user_id: str) -> User | None:
    record = repo.get_user(conn, org_id, user_id)
    return _user(record) if record else None


def get_user(conn: Connection, org_id: str, email: str) -> User:
    return _user(_find(conn, org_id, email))


def disable_user(conn: Connection, org_id: str, email: str, now: datetime) -> User:
    """Disable the user (they can no longer log in) and end their sessions; idempotent."""
    record = _find(conn, org_id, email)
    if record.disabled_at is None:
        repo.update_user(conn, org_id, record.user_id, disabled_at=now, updated_at=now)
    repo.revoke_user_sessions(conn, org_id, record.user_id, now)
    return _user(repo.get_user(conn, org_id, record.user_id) or record)


def enable_user(conn: Connection, org_id: str, email: str, now: datetime) -> User:
    """Let a disabled user log in again (with a clean failure count); idempotent."""
    record = _find(conn, org_id, email)
    repo.update_user(
        conn, org_id, record.user_id, disabled_at=None, failed_logins=0, first_failed_at=None,
        locked_until=None, updated_at=now,
    )  # fmt: skip
    return _user(repo.get_user(conn, org_id, record.user_id) or record)


def set_role(conn: Connection, org_id: str, email: str, role: Role, now: datetime) -> User:
    """Give the user another role. Their sessions end, so the new role applies from their next
    login (a session never carries more rights than its user has)."""
    record = _find(conn, org_id, email)
    if record.role != role.value:
        repo.update_user(conn, org_id, record.user_id, role=role.value, updated_at=now)
        repo.revoke_user_sessions(conn, org_id, record.user_id, now)
    return _user(repo.get_user(conn, org_id, record.user_id) or record)


def remove_totp(conn: Connection, org_id: str, email: str, now: datetime) -> User:
    """Remove the user's second factor (a lost phone); they log in with the password alone (unless
    the org requires TOTP: then they must enrol again). Their sessions end."""
    record = _find(conn, org_id, email)
    repo.update_user(
        conn, org_id, record.user_id, totp_secret_encrypted=None, totp_last_step=None, updated_at=now
    )
    repo.revoke_user_sessions(conn, org_id, record.user_id, now)
    return _user(repo.get_user(conn, org_id, record.user_id) or record)


def reset_password(conn: Connection, org_id: str, email: str, password: str, now: datetime) -> User:
    """Set a new password, lift a lockout and end the user's sessions."""
    record = _find(conn, org_id, email)
    check_password(password)
    repo.update_user(
        conn,
        org_id,
        record.user_id,
        password_hash=_hasher.hash(password),
        failed_logins=0,
        first_failed_at=None,
        locked_until=None,
        updated_at=now,
    )
    repo.revoke_user_sessions(conn, org_id, record.user_id, now)
    return _user(repo.get_user(conn, org_id, record.user_id) or record)


@dataclass(frozen=True)
class TotpEnrolment:
    user: User
    uri: str  # otpauth://totp/...: shown once, for the user's authenticator app


def enrol_totp(conn: Connection, org_id: str, email: str, box: SecretBox, now: datetime) -> TotpEnrolment:
    """A new TOTP secret for the user (replacing any earlier one), required at their next login.
    The secret is stored sealed with JOURNEYS_SECRET_KEY (journeys.keys.box)."""
    record = _find(conn, org_id, email)
    secret = pyotp.random_base32()
    sealed = box.seal({"totp": secret})  # SecretKeyMissing without JOURNEYS_SECRET_KEY
    repo.update_user(
        conn, org_id, record.user_id, totp_secret_encrypted=sealed, totp_last_step=None, updated_at=now
    )
    uri = pyotp.TOTP(secret).provisioning_uri(name=record.email, issuer_name=TOTP_ISSUER)
    return TotpEnrolment(_user(repo.get_user(conn, org_id, record.user_id) or record), uri)


def set_require_totp(conn: Connection, org_id: str, required: bool, now: datetime) -> None:
    """Require (or stop requiring) a TOTP second factor of every user of the org."""
    _check_org(conn, org_id)
    repo.set_require_totp(conn, org_id, required, now)


def requires_totp(conn: Connection, org_id: str) -> bool:
    return repo.require_totp(conn, org_id)


# ---------------------------------------------------------------------------- login
class LoginProblem(StrEnum):
    BAD_CREDENTIALS = "bad_credentials"
    LOCKED = "locked"
    DISABLED = "disabled"
    TOTP_REQUIRED = "totp_required"  # the user has TOTP: a code must be given
    TOTP_WRONG = "totp_wrong"
    TOTP_NOT_ENROLLED = "totp_not_enrolled"  # the org requires TOTP and the user has none


@dataclass(frozen=True)
class LoginOutcome:
    user: User | None  # set on success
    problem: LoginProblem | None = None
    message: str = ""
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _locked_message(until: datetime) -> str:
    at = until.astimezone(UTC)
    return (
        f"too many failed logins: this account is locked until {at:%H:%M} UTC "
        f"({at:%Y-%m-%dT%H:%M:%SZ}); try again then, or ask an admin to reset the password"
    )


_BAD_CREDENTIALS = "wrong email or password"


def login(
    conn: Connection,
    org_id: str,
    email: str,
    password: str,
    totp_code: str | None,
    box: SecretBox,
    now: datetime,
    policy: LockoutPolicy = DEFAULT_LOCKOUT,
) -> LoginOutcome:
    """Check a login. Failures (a wrong password or TOTP code) are counted: `policy.max_failures`
    within `policy.window` lock the account for `policy.lock_for`. The caller commits either way."""
    try:
        if "\x00" in org_id or "\x00" in email:  # no such user (and no database accepts NUL)
            raise UserError("no such user")
        record = _find(conn, org_id, email, for_update=True)
    except UserError:
        _verify_password(_dummy_hash(), password)  # the same time as a known user's
        return LoginOutcome(None, LoginProblem.BAD_CREDENTIALS, _BAD_CREDENTIALS)
    if record.locked_until is not None and record.locked_until > now:
        until = record.locked_until
        return LoginOutcome(None, LoginProblem.LOCKED, _locked_message(until), until)
    if not _verify_password(record.password_hash, password):
        return _fail(conn, record, LoginProblem.BAD_CREDENTIALS, _BAD_CREDENTIALS, now, policy)
    if record.disabled_at is not None:
        return LoginOutcome(None, LoginProblem.DISABLED, "this account is disabled: ask an admin")
    if record.totp_secret_encrypted is not None:
        if not totp_code or not totp_code.strip():
            return LoginOutcome(
                None, LoginProblem.TOTP_REQUIRED, "enter the 6-digit code from your authenticator app"
            )
        step = _totp_step(box.open(record.totp_secret_encrypted)["totp"], totp_code.strip(), now)
        if step is None or not repo.claim_totp_step(conn, org_id, record.user_id, step):
            return _fail(conn, record, LoginProblem.TOTP_WRONG, "wrong or already used code", now, policy)
    elif repo.require_totp(conn, org_id):
        return LoginOutcome(
            None,
            LoginProblem.TOTP_NOT_ENROLLED,
            "this org requires a second factor and your account has none: ask an admin to enrol you",
        )
    changes: dict[str, Any] = {"failed_logins": 0, "first_failed_at": None, "locked_until": None}
    if _hasher.check_needs_rehash(record.password_hash):
        changes["password_hash"] = _hasher.hash(password)
    repo.update_user(conn, org_id, record.user_id, last_login_at=now, **changes)
    return LoginOutcome(_user(repo.get_user(conn, org_id, record.user_id) or record))


def _verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _totp_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (now, or one either side for clock drift) whose code is `code`, or None."""
    code = code.replace(" ", "")
    if not (code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    base = totp.timecode(now)
    for step in (base - 1, base, base + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _fail(
    conn: Connection,
    record: repo.UserRecord,
    problem: LoginProblem,
    message: str,
    now: datetime,
    policy: LockoutPolicy,
) -> LoginOutcome:
    """Count a failed attempt; the one that reaches the limit locks the account."""
    fresh = record.first_failed_at is None or now - record.first_failed_at >= policy.window
    failures = 1 if fresh else record.failed_logins + 1
    first = now if fresh else record.first_failed_at
    if failures >= policy.max_failures:
        until = now + policy.lock_for
        repo.update_user(
            conn, record.org_id, record.user_id, failed_logins=0, first_failed_at=None, locked_until=until
        )
        return LoginOutcome(None, LoginProblem.LOCKED, _locked_message(until), until)
    repo.update_user(conn, record.org_id, record.user_id, failed_logins=failures, first_failed_at=first)
    return LoginOutcome(None, problem, message)
