"""Staff users, org security settings and staff sessions (SQL only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeys.store.tables import org_settings, user_sessions, users


@dataclass(frozen=True)
class UserRecord:
    org_id: str
    user_id: str
    email: str
    role: str
    password_hash: str
    totp_secret_encrypted: str | None
    totp_last_step: int | None
    failed_logins: int
    first_failed_at: datetime | None
    locked_until: datetime | None
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None
    last_login_at: datetime | None


@dataclass(frozen=True)
class SessionRecord:
    org_id: str
    session_id: str
    user_id: str
    created_at: datetime
    last_seen_at: datetime
    idle_seconds: int
    expires_at: datetime
    revoked_at: datetime | None
    client_address: str | None


_USER_COLUMNS = [users.c[name] for name in UserRecord.__dataclass_fields__]
_SESSION_COLUMNS = [user_sessions.c[name] for name in SessionRecord.__dataclass_fields__]


def insert_user(conn: Connection, record: UserRecord, email_key: str) -> None:
    values: dict[str, Any] = {name: getattr(record, name) for name in UserRecord.__dataclass_fields__}
    conn.execute(users.insert().values(email_key=email_key, **values))


def email_taken(conn: Connection, org_id: str, email_key: str) -> bool:
    q = sa.select(users.c.user_id).where(users.c.org_id == org_id, users.c.email_key == email_key)
    return conn.execute(q).first() is not None


def get_user_by_email(
    conn: Connection, org_id: str, email_key: str, for_update: bool = False
) -> UserRecord | None:
    """The user; with `for_update`, their row stays locked until the transaction ends (PostgreSQL;
    SQLite's writer holds the whole database), so concurrent logins count failures one at a time."""
    q = sa.select(*_USER_COLUMNS).where(users.c.org_id == org_id, users.c.email_key == email_key)
    if for_update:
        q = q.with_for_update()
    row = conn.execute(q).mappings().first()
    return UserRecord(**row) if row else None


def get_user(conn: Connection, org_id: str, user_id: str) -> UserRecord | None:
    q = sa.select(*_USER_COLUMNS).where(users.c.org_id == org_id, users.c.user_id == user_id)
    row = conn.execute(q).mappings().first()
    return UserRecord(**row) if row else None


def list_users(conn: Connection, org_id: str) -> list[UserRecord]:
    q = sa.select(*_USER_COLUMNS).where(users.c.org_id == org_id).order_by(users.c.email_key)
    return [UserRecord(**row) for row in conn.execute(q).mappings()]


def update_user(conn: Connection, org_id: str, user_id: str, **values: Any) -> None:
    conn.execute(users.update().where(users.c.org_id == org_id, users.c.user_id == user_id).values(**values))


def claim_totp_step(conn: Connection, org_id: str, user_id: str, step: int) -> bool:
    """Record `step` as the user's last used TOTP step unless it (or a later one) was used: True
    when this call took it (a code is accepted once, even by two logins at the same moment)."""
    result = conn.execute(
        users.update()
        .where(
            users.c.org_id == org_id,
            users.c.user_id == user_id,
            sa.or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step),
        )
        .values(totp_last_step=step)
    )
    return result.rowcount == 1


def require_totp(conn: Connection, org_id: str) -> bool:
    q = sa.select(org_settings.c.require_totp).where(org_settings.c.org_id == org_id)
    return bool(conn.execute(q).scalar())


def set_require_totp(conn: Connection, org_id: str, required: bool, now: datetime) -> None:
    updated = conn.execute(
        org_settings.update()
        .where(org_settings.c.org_id == org_id)
        .values(require_totp=required, updated_at=now)
    )
    if updated.rowcount == 0:
        conn.execute(org_settings.insert().values(org_id=org_id, require_totp=required, updated_at=now))


# ---------------------------------------------------------------------------- sessions
def insert_session(conn: Connection, record: SessionRecord, token_hash: str) -> None:
    values: dict[str, Any] = {name: getattr(record, name) for name in SessionRecord.__dataclass_fields__}
    conn.execute(user_sessions.insert().values(token_hash=token_hash, **values))


def get_session_by_hash(conn: Connection, org_id: str, token_hash: str) -> SessionRecord | None:
    q = sa.select(*_SESSION_COLUMNS).where(
        user_sessions.c.org_id == org_id, user_sessions.c.token_hash == token_hash
    )
    row = conn.execute(q).mappings().first()
    return SessionRecord(**row) if row else None


def touch_session(conn: Connection, org_id: str, session_id: str, now: datetime) -> None:
    conn.execute(
        user_sessions.update()
        .where(
            user_sessions.c.org_id == org_id,
            user_sessions.c.session_id == session_id,
            user_sessions.c.last_seen_at < now,
        )
        .values(last_seen_at=now)
    )


def revoke_session(conn: Connection, org_id: str, session_id: str, now: datetime) -> None:
    conn.execute(
        user_sessions.update()
        .where(
            user_sessions.c.org_id == org_id,
            user_sessions.c.session_id == session_id,
            user_sessions.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )


def revoke_user_sessions(conn: Connection, org_id: str, user_id: str, now: datetime) -> int:
    result = conn.execute(
        user_sessions.update()
        .where(
            user_sessions.c.org_id == org_id,
            user_sessions.c.user_id == user_id,
            user_sessions.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return int(result.rowcount)


def delete_ended_sessions(conn: Connection, org_id: str, now: datetime) -> int:
    """Delete the org's sessions past their absolute timeout or logged out (idle ones end at
    their absolute timeout at the latest)."""
    result = conn.execute(
        user_sessions.delete().where(
            user_sessions.c.org_id == org_id,
            sa.or_(user_sessions.c.expires_at <= now, user_sessions.c.revoked_at.is_not(None)),
        )
    )
    return int(result.rowcount)
