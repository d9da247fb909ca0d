"""Auditing an API token's actions like a staff member's (actor kind `token`, its id, the client
address; ids and counts only — never parameter values, phone numbers or message text).

Changes are recorded with `record` in the transaction that makes them (as late as possible in it:
the org's chain lock is held from there to the commit). Reads go through `record_read` into the
in-process buffer (journeys.accounts.audit_buffer), so concurrent searches never wait on it."""

from __future__ import annotations

import ipaddress

from fastapi import Request
from sqlalchemy.engine import Connection

from journeys.accounts import audit
from journeys.accounts.audit import Action, Actor, ActorKind, is_id
from journeys.accounts.service import Principal


def _address(request: Request) -> str | None:
    host = request.client.host if request.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


def actor(request: Request, principal: Principal) -> Actor:
    return Actor(ActorKind.TOKEN, principal.token_id, request.app.state.clock.now(), _address(request))


def ids(*values: str | None) -> tuple[str, ...]:
    """The values that are ids (anything else is left out rather than refused)."""
    return tuple(v for v in values if v and is_id(v))


def record(
    conn: Connection,
    request: Request,
    principal: Principal,
    action: Action,
    target_kind: str | None = None,
    target_ids: tuple[str, ...] = (),
    count: int | None = None,
) -> None:
    entry = actor(request, principal).entry(principal.org_id, action, target_kind, target_ids, count)
    audit.record(conn, entry)


def record_read(
    request: Request,
    principal: Principal,
    action: Action,
    target_kind: str | None = None,
    target_ids: tuple[str, ...] = (),
    count: int | None = None,
) -> None:
    entry = actor(request, principal).entry(principal.org_id, action, target_kind, target_ids, count)
    request.app.state.audit_buffer.add(entry)
