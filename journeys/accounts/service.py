"""Orgs and API tokens: creation, verification, revocation.

Tokens are 256-bit random secrets shown once; only their SHA-256 is stored (a fast hash is
right for high-entropy secrets: there is nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from journeys.errors import Invalid, NotFound
from journeys.ids import new_id
from journeys.store import accounts as repo

SCOPE_CREATE = "create.journey_instances"
SCOPE_READ = "read.journey_instances"
KNOWN_SCOPES = (SCOPE_CREATE, SCOPE_READ)
TOKEN_PREFIX = "jny_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_EXPIRY_DAYS = 36_500
MAX_NAME_CHARS = 200


class AccountError(Invalid):
    """A bad admin request (unknown org, unknown scope, ...)."""


@dataclass(frozen=True)
class Principal:
    org_id: str
    token_id: str
    scopes: frozenset[str]
    last_use_stale: bool = False  # last_used_at is older than LAST_USED_RESOLUTION


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_name(what: str, name: str) -> str:
    name = name.strip()
    if not name:
        raise AccountError(f"{what} must not be empty")
    if "\x00" in name:
        raise AccountError(f"{what} must not contain NUL characters")
    if len(name) > MAX_NAME_CHARS:
        raise AccountError(f"{what} must be at most {MAX_NAME_CHARS} characters long")
    return name


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class CreatedToken:
    """A new token: `token` is its secret, shown once (only its hash is stored)."""

    id: str
    org_id: str
    name: str
    token: str
    scopes: tuple[str, ...]
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed (never its secret)."""

    id: str
    org_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    state: str  # active, expired or revoked


def create_org(conn: Connection, name: str, now: datetime) -> Org:
    name = _check_name("org name", name)
    org_id = new_id()
    repo.insert_org(conn, org_id, name, now)
    return Org(org_id, name)


def parse_scopes(text: str) -> list[str]:
    scopes = [s.strip() for s in text.replace(" ", ",").split(",") if s.strip()]
    if not scopes:
        raise AccountError("at least one scope is required: " + ", ".join(KNOWN_SCOPES))
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if unknown:
        raise AccountError(f"unknown scope(s): {', '.join(unknown)} (known: {', '.join(KNOWN_SCOPES)})")
    return list(dict.fromkeys(scopes))


def create_token(
    conn: Connection,
    org_id: str,
    name: str,
    scopes: list[str],
    now: datetime,
    expires_in_days: int | None = None,
) -> CreatedToken:
    name = _check_name("token name", name)
    if "\x00" in org_id or repo.get_org(conn, org_id) is None:
        raise AccountError(f"unknown org {org_id}")
    if expires_in_days is not None and not 0 < expires_in_days <= MAX_EXPIRY_DAYS:
        raise AccountError(f"--expires-in-days must be a number of days from 1 to {MAX_EXPIRY_DAYS}")
    token_id = new_id()
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
    repo.insert_token(
        conn,
        org_id=org_id,
        token_id=token_id,
        name=name,
        token_hash=hash_token(secret),
        scopes=" ".join(scopes),
        created_at=now,
        expires_at=expires_at,
    )
    return CreatedToken(token_id, org_id, name, secret, tuple(scopes), expires_at)


def authenticate(conn: Connection, token: str, now: datetime) -> Principal | None:
    """The principal for a bearer token, or None when it is unknown, revoked or expired."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = repo.get_token_by_hash(conn, hash_token(token))
    if row is None or token_state(row["revoked_at"], row["expires_at"], now) != "active":
        return None
    last = row["last_used_at"]
    return Principal(
        org_id=row["org_id"],
        token_id=row["token_id"],
        scopes=frozenset(row["scopes"].split()),
        last_use_stale=last is None or last < now - LAST_USED_RESOLUTION,
    )


def record_use(conn: Connection, principal: Principal, now: datetime) -> None:
    """Record the token's last use (at most once per LAST_USED_RESOLUTION)."""
    repo.touch_token(conn, principal.org_id, principal.token_id, now, now - LAST_USED_RESOLUTION)


def revoke_token(conn: Connection, token_id: str, now: datetime, org_id: str | None = None) -> None:
    """Revoke a token (one of `org_id`'s, when given: another org's token is unknown)."""
    if "\x00" in token_id or len(token_id) > 64 or not repo.revoke_token(conn, token_id, now, org_id):
        raise NotFound(f"unknown token {token_id}")


def token_state(revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> str:
    """ "revoked", "expired" or "active" (the same rule `authenticate` applies)."""
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"


def list_tokens(conn: Connection, org_id: str | None, now: datetime) -> list[TokenInfo]:
    return [
        TokenInfo(
            id=r["token_id"],
            org_id=r["org_id"],
            name=r["name"],
            scopes=tuple(r["scopes"].split()),
            created_at=r["created_at"],
            expires_at=r["expires_at"],
            revoked_at=r["revoked_at"],
            last_used_at=r["last_used_at"],
            state=token_state(r["revoked_at"], r["expires_at"], now),
        )
        for r in repo.list_tokens(conn, org_id)
    ]
