"""Signing staff in and out of the console: check the login (journeys.accounts.users), open a
session (journeys.accounts.sessions) and record both in the audit log. The caller commits —
after a failed login too, so the failure counts toward the account's lockout."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from journeys.accounts import audit, sessions, users
from journeys.accounts.audit import Action, ActorKind, AuditEntry
from journeys.accounts.sessions import NewSession, Session
from journeys.accounts.users import LoginOutcome, User
from journeys.keys.box import SecretBox
from journeys.store import accounts as accounts_repo


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta = sessions.DEFAULT_IDLE
    absolute: timedelta = sessions.DEFAULT_ABSOLUTE


@dataclass(frozen=True)
class SignIn:
    outcome: LoginOutcome
    session: NewSession | None  # set when the login succeeded


@dataclass(frozen=True)
class Credentials:
    org_id: str
    email: str
    password: str
    totp_code: str | None


def _entry(
    org_id: str, at: datetime, action: Action, user_id: str | None, client_address: str | None
) -> AuditEntry:
    return AuditEntry(
        org_id=org_id,
        at=at,
        actor_kind=ActorKind.USER,
        actor_id=user_id,
        action=action,
        target_kind="user" if user_id else None,
        target_ids=(user_id,) if user_id else (),
        client_address=client_address,
    )


def sign_in(
    conn: Connection,
    creds: Credentials,
    box: SecretBox,
    now: datetime,
    policy: SessionPolicy,
    client_address: str | None,
) -> SignIn:
    """Check the credentials; on success open a session (and drop the org's ended ones)."""
    outcome = users.login(conn, creds.org_id, creds.email, creds.password, creds.totp_code, box, now)
    if "\x00" in creds.org_id or accounts_repo.get_org(conn, creds.org_id) is None:
        return SignIn(outcome, None)  # nothing to audit: there is no such org
    if outcome.user is None:
        audit.record(conn, _entry(creds.org_id, now, Action.LOGIN_FAILED, None, client_address))
        return SignIn(outcome, None)
    user = outcome.user
    sessions.prune(conn, creds.org_id, now)
    made = sessions.create_session(
        conn,
        creds.org_id,
        user.id,
        now,
        idle=policy.idle,
        absolute=policy.absolute,
        client_address=client_address,
    )
    audit.record(conn, _entry(creds.org_id, now, Action.LOGIN, user.id, client_address))
    return SignIn(outcome, made)


def sign_out(conn: Connection, session: Session, now: datetime, client_address: str | None) -> None:
    sessions.revoke(conn, session, now)
    audit.record(conn, _entry(session.org_id, now, Action.LOGOUT, session.user_id, client_address))


@dataclass(frozen=True)
class SignedIn:
    session: Session
    user: User


def signed_in(conn: Connection, token: str, now: datetime) -> SignedIn | None:
    """The live session for a console cookie and its user, or None (unknown, ended, disabled)."""
    session = sessions.lookup(conn, token, now)
    if session is None:
        return None
    user = users.get_user_by_id(conn, session.org_id, session.user_id)
    if user is None:
        return None
    return SignedIn(session, user)
