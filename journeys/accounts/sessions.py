"""Staff sessions (the console's logins): a random token given to the browser, stored only as its
SHA-256; an idle timeout (default 15 minutes, HIPAA's automatic logoff) and an absolute one
(default 12 hours). The token names its org (`<org_id>.<secret>`), so a look-up stays on the org's
rows (every key leads with org_id)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from journeys.ids import new_id
from journeys.store import users as repo

DEFAULT_IDLE = timedelta(minutes=15)
DEFAULT_ABSOLUTE = timedelta(hours=12)
TOUCH_RESOLUTION = timedelta(seconds=30)  # last_seen_at is written at most this often
MAX_TOKEN_CHARS = 200


@dataclass(frozen=True)
class Session:
    org_id: str
    id: str
    user_id: str
    created_at: datetime
    last_seen_at: datetime
    idle_timeout: timedelta
    expires_at: datetime  # the absolute timeout
    client_address: str | None

    def idle_expires_at(self) -> datetime:
        return self.last_seen_at + self.idle_timeout

    def ends_at(self) -> datetime:
        """When it ends if not used again."""
        return min(self.idle_expires_at(), self.expires_at)


@dataclass(frozen=True)
class NewSession:
    session: Session
    token: str  # for the cookie: shown once, never stored


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _session(r: repo.SessionRecord) -> Session:
    return Session(
        org_id=r.org_id,
        id=r.session_id,
        user_id=r.user_id,
        created_at=r.created_at,
        last_seen_at=r.last_seen_at,
        idle_timeout=timedelta(seconds=r.idle_seconds),
        expires_at=r.expires_at,
        client_address=r.client_address,
    )


def create_session(
    conn: Connection,
    org_id: str,
    user_id: str,
    now: datetime,
    *,
    idle: timedelta = DEFAULT_IDLE,
    absolute: timedelta = DEFAULT_ABSOLUTE,
    client_address: str | None = None,
) -> NewSession:
    if idle <= timedelta(0) or absolute <= timedelta(0):
        raise ValueError("session timeouts must be positive")
    secret = secrets.token_urlsafe(32)
    record = repo.SessionRecord(
        org_id=org_id,
        session_id=new_id(),
        user_id=user_id,
        created_at=now,
        last_seen_at=now,
        idle_seconds=int(idle.total_seconds()),
        expires_at=now + absolute,
        revoked_at=None,
        client_address=client_address[:64] if client_address else None,
    )
    repo.insert_session(conn, record, _hash(secret))
    return NewSession(_session(record), f"{org_id}.{secret}")


def lookup(conn: Connection, token: str, now: datetime) -> Session | None:
    """The live session for a token, or None when it is unknown, revoked, idle too long, past its
    absolute timeout, or its user is disabled. Does not write: call `touch` on use."""
    org_id, sep, secret = token.partition(".")
    if not sep or not org_id or not secret or len(token) > MAX_TOKEN_CHARS or "\x00" in token:
        return None
    record = repo.get_session_by_hash(conn, org_id, _hash(secret))
    if record is None or record.revoked_at is not None:
        return None
    session = _session(record)
    if now >= session.idle_expires_at() or now >= session.expires_at:
        return None
    user = repo.get_user(conn, org_id, session.user_id)
    if user is None or user.disabled_at is not None:
        return None
    return session


def touch(conn: Connection, session: Session, now: datetime) -> None:
    """Record use (restarts the idle timeout); written at most every TOUCH_RESOLUTION."""
    if now - session.last_seen_at >= TOUCH_RESOLUTION:
        repo.touch_session(conn, session.org_id, session.id, now)


def revoke(conn: Connection, session: Session, now: datetime) -> None:
    """Log out."""
    repo.revoke_session(conn, session.org_id, session.id, now)


def revoke_all(conn: Connection, org_id: str, user_id: str, now: datetime) -> int:
    """End every session of a user (e.g. on a password reset); how many were live."""
    return repo.revoke_user_sessions(conn, org_id, user_id, now)


def prune(conn: Connection, org_id: str, now: datetime) -> int:
    """Delete the org's ended sessions (past their absolute timeout, or logged out); how many.
    Called at each login, so the table holds live sessions and the day's logouts at most."""
    return repo.delete_ended_sessions(conn, org_id, now)
