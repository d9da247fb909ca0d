"""The audit log as tests read it: the entries of an org, through the real export."""

from __future__ import annotations

from journeys.accounts import audit
from journeys.accounts.audit import AuditEntry
from journeys.store.db import read_only
from support.server import Server


def audit_actions(server: Server, org_id: str, action: str, actor_id: str | None = None) -> list[AuditEntry]:
    """The org's entries with this action (by this actor, when given), oldest first."""
    with read_only(server.engine) as conn:
        return [
            r.entry
            for r in audit.export(conn, org_id)
            if r.entry.action.value == action
            and r.entry.actor_kind != "token"  # API reads arrive through a buffer, any second
            and (actor_id is None or r.entry.actor_id == actor_id)
        ]
