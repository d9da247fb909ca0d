"""Admin › Audit log: the org's entries, newest first, filtered by action and/or actor, with the
hash chain's verification (journeys.accounts.audit.verify) at the top."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from journeys.accounts import audit
from journeys.accounts.audit import Action
from journeys.accounts.roles import Permission
from journeys.console import web
from journeys.console.web import Staff
from journeys.errors import Invalid
from journeys.store.db import read_only

router = APIRouter(prefix=web.PREFIX + "/admin")
PAGE_SIZE = 50


def _filters(action: str, actor: str, before: str) -> tuple[Action | None, str | None, int | None]:
    """The page's query, checked: a known action, an id, a sequence number."""
    try:
        chosen = Action(action) if action else None
    except ValueError:
        raise Invalid(f"unknown action {action!r}: choose one from the list") from None
    actor = actor.strip()
    if len(actor) > 64 or "\x00" in actor:
        raise Invalid("the actor id is at most 64 characters long")
    if before and (not before.isdigit() or len(before) > 18):
        raise Invalid("before must be an entry's sequence number")
    return chosen, actor or None, int(before) if before else None


@router.get("/audit", include_in_schema=False)
async def audit_page(
    request: Request,
    action: str = "",
    actor: str = "",
    before: str = "",
    staff: Staff = Depends(web.allowed(Permission.READ_AUDIT)),
) -> Response:
    chosen, actor_id, before_seq = _filters(action, actor, before)

    def load() -> tuple[audit.AuditPage, audit.Verification]:
        with read_only(request.app.state.engine) as conn:
            found = audit.newest_first(conn, staff.org_id, PAGE_SIZE, before_seq, chosen, actor_id)
            return found, audit.verify(conn, staff.org_id)

    found, verification = await run_in_threadpool(load)
    return web.render(
        request, "admin/audit.html", staff=staff, page=found, verification=verification,
        actions=list(Action), action=action, actor=actor_id or "", before=before_seq, notice=None,
    )  # fmt: skip
