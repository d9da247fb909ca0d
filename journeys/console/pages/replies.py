"""Replies inbox: the unmatched replies that need a human (no instance was waiting for them; the
consent keywords STOP, START, HELP were handled and are not here), and "mark handled" (operator
and above), which records who handled each and when. Reply text is PHI: each view is audited."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from journeys.accounts import audit
from journeys.accounts.audit import Action
from journeys.accounts.roles import Permission
from journeys.accounts.users import list_users
from journeys.console import web
from journeys.console.web import FormAction, Staff
from journeys.instances import replies as service
from journeys.messaging.message_list import make_cursor, parse_cursor
from journeys.store.db import read_only, transaction

router = APIRouter(prefix=web.PREFIX)
PAGE_SIZE = 50


@router.get("/replies", include_in_schema=False)
async def replies_page(request: Request, staff: Staff = Depends(web.allowed(Permission.READ))) -> Response:
    show_handled = request.query_params.get("handled") == "1"
    after = request.query_params.get("after", "")

    def load() -> tuple[list[service.InboundReply], dict[str, str]]:
        before = parse_cursor(after)
        with read_only(request.app.state.engine) as conn:
            phi = request.app.state.vault.org(staff.org_id)
            found = service.inbox(conn, phi, include_handled=show_handled, before=before, limit=PAGE_SIZE + 1)
            people = {u.id: u.email for u in list_users(conn, staff.org_id)} if show_handled else {}
        shown = found[:PAGE_SIZE]
        ids = tuple(r.message_id for r in shown)
        web.record(request, staff, Action.REPLIES_VIEW, target_kind="reply", target_ids=ids, count=len(shown))
        return found, people

    found, people = await run_in_threadpool(load)  # a bad cursor: a 400 page
    shown = found[:PAGE_SIZE]
    base = {"handled": "1"} if show_handled else {}
    more = len(found) > PAGE_SIZE
    last = shown[-1] if shown else None
    next_url = (
        f"{web.PREFIX}/replies?"
        + urlencode({**base, "after": make_cursor(last.received_at, last.message_id)})
        if more and last
        else None
    )
    return web.render(
        request,
        "replies.html",
        staff=staff,
        replies=shown,
        people=people,
        show_handled=show_handled,
        after=after,
        next_url=next_url,
        first_url=f"{web.PREFIX}/replies" + (f"?{urlencode(base)}" if base else ""),
        notice=request.query_params.get("done", ""),
    )


@router.post("/replies/{message_id}/handled", include_in_schema=False)
async def mark_handled(
    request: Request,
    message_id: str,
    action: FormAction = Depends(web.form_action(Permission.HANDLE_REPLIES)),
) -> Response:
    staff = action.staff

    def change() -> bool:
        with transaction(request.app.state.engine) as conn:
            changed = service.mark_handled(
                conn, staff.org_id, message_id, staff.user.id, request.app.state.clock.now()
            )
            if changed:  # in the same transaction as the change: both or neither
                entry = web.audit_entry(
                    request,
                    staff,
                    Action.REPLY_HANDLED,
                    target_kind="reply",
                    target_ids=(message_id,),
                    count=1,
                )
                audit.record(conn, entry)
        return changed

    changed = await run_in_threadpool(change)
    back = {"done": "handled" if changed else "already"}
    if action.text("handled") == "1":
        back["handled"] = "1"
    return RedirectResponse(f"{web.PREFIX}/replies?{urlencode(back)}", status_code=303)
