"""API tokens made and revoked by an admin, each audited (TOKEN_CREATE / TOKEN_REVOKE) in the
caller's transaction."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from journeys.accounts import audit, service
from journeys.accounts.audit import Action, Actor
from journeys.errors import Invalid


def parse_expiry_days(text: str) -> int | None:
    """An optional number of days (empty: never expires)."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) <= service.MAX_EXPIRY_DAYS:
        raise Invalid(
            f"expiry must be a number of days from 1 to {service.MAX_EXPIRY_DAYS} (or empty: never)"
        )
    return int(text)


def create(
    conn: Connection, org_id: str, actor: Actor, name: str, scopes: list[str], expires_in_days: int | None
) -> service.CreatedToken:
    checked = service.parse_scopes(",".join(scopes))
    created = service.create_token(conn, org_id, name, checked, actor.at, expires_in_days)
    audit.record(conn, actor.entry(org_id, Action.TOKEN_CREATE, "token", (created.id,)))
    return created


def revoke(conn: Connection, org_id: str, actor: Actor, token_id: str) -> None:
    """Revoke one of the org's tokens (another org's token is not found)."""
    service.revoke_token(conn, token_id, actor.at, org_id)
    audit.record(conn, actor.entry(org_id, Action.TOKEN_REVOKE, "token", (token_id,)))
