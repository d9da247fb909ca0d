"""The console's admin pages as tests use them: the audit actions an org's log holds, and
posting a form with a session's CSRF token."""

from __future__ import annotations

from typing import Any

import httpx

from journeys.accounts import audit
from journeys.store.db import read_only
from support.console import page_csrf
from support.server import Server


def audit_actions(server: Server, org_id: str) -> list[str]:
    """The actions of the org's audit log, oldest first."""
    with read_only(server.engine) as conn:
        # not the API tokens' entries: their reads arrive through a buffer, any second
        return [r.entry.action.value for r in audit.export(conn, org_id) if r.entry.actor_kind != "token"]


def post_form(
    server: Server,
    client: httpx.Client,
    path: str,
    data: dict[str, Any],
    csrf_from: str = "/console/journeys",
) -> httpx.Response:
    """POST a console form with the session's CSRF token (read from `csrf_from`)."""
    token = page_csrf(client, csrf_from)
    return client.post(path, data={"csrf_token": token, **data}, headers={"Origin": server.base_url})
