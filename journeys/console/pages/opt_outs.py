"""Opt-outs: the org's opted-out numbers (paged), and adding or removing one by hand (operator and
above) through the same consent service as the API's opt-out routes. A removal needs a reason,
kept on the number's consent record. Each change is audited in its own transaction (the entry
counts the change; the number is PHI and is not in it), and each view of the list is audited."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from journeys.accounts import audit
from journeys.accounts.audit import Action
from journeys.accounts.roles import Permission
from journeys.console import web
from journeys.console.web import FormAction, Staff
from journeys.errors import NotFound
from journeys.messaging import consent
from journeys.messaging.consent import OptOut, OptOutError
from journeys.messaging.message_list import make_cursor, parse_cursor
from journeys.store.db import read_only, transaction

router = APIRouter(prefix=web.PREFIX)
PAGE_SIZE = 50
SOURCE = "console"
NOTICES = {
    "added": "Opted out: no SMS goes to that number any more.",
    "already": "That number was already opted out (unchanged).",
    "removed": "Opted back in: SMS to that number go out again.",
}


def _load(request: Request, staff: Staff, after: str) -> list[OptOut]:
    before = parse_cursor(after)
    phi = request.app.state.vault.org(staff.org_id)
    with read_only(request.app.state.engine) as conn:
        found = consent.page_opt_outs(conn, phi, before, PAGE_SIZE + 1)
    shown = len(found[:PAGE_SIZE])
    web.record(request, staff, Action.OPT_OUTS_VIEW, target_kind="sms_consent", count=shown)
    return found


def _page(
    request: Request, staff: Staff, found: list[OptOut], after: str, *, status: int = 200, **context: Any
) -> Response:
    shown = found[:PAGE_SIZE]
    next_url = None
    if len(found) > PAGE_SIZE:
        next_url = f"{web.PREFIX}/opt-outs?" + urlencode(
            {"after": make_cursor(shown[-1].updated_at, shown[-1].key)}
        )
    context.setdefault("problems", [])
    context.setdefault("form", {"phone": "", "reason": "", "channel": "sms"})
    context.setdefault("remove_problems", {})
    return web.render(
        request,
        "opt_outs.html",
        staff=staff,
        status=status,
        opt_outs=shown,
        after=after,
        next_url=next_url,
        channels=consent.CHANNELS,
        notice=NOTICES.get(request.query_params.get("done", ""), ""),
        **context,
    )


@router.get("/opt-outs", include_in_schema=False)
async def opt_outs_page(request: Request, staff: Staff = Depends(web.allowed(Permission.READ))) -> Response:
    after = request.query_params.get("after", "")
    found = await run_in_threadpool(_load, request, staff, after)
    return _page(request, staff, found, after)


@router.post("/opt-outs", include_in_schema=False)
async def add_opt_out(
    request: Request, action: FormAction = Depends(web.form_action(Permission.MANAGE_OPT_OUTS))
) -> Response:
    staff = action.staff
    form = {name: action.text(name) for name in ("phone", "channel", "reason")}

    def change() -> bool:
        phi = request.app.state.vault.org(staff.org_id)  # before the transaction (journeys.keys.phi)
        with transaction(request.app.state.engine) as conn:
            consent.parse_channel(form["channel"])
            created, _ = consent.add_opt_out(
                conn,
                phi,
                form["phone"],
                form["reason"].strip(),
                SOURCE,
                request.app.state.clock.now(),
            )
            if created:  # the number is PHI: the entry counts the change, it does not name it
                entry = web.audit_entry(
                    request, staff, Action.OPT_OUT_ADD, target_kind="sms_consent", count=1
                )
                audit.record(conn, entry)
        return created

    try:
        created = await run_in_threadpool(change)
    except OptOutError as exc:
        found = await run_in_threadpool(_load, request, staff, "")
        return _page(request, staff, found, "", status=400, problems=exc.errors, form=form)
    return RedirectResponse(
        f"{web.PREFIX}/opt-outs?done={'added' if created else 'already'}", status_code=303
    )


@router.post("/opt-outs/remove", include_in_schema=False)
async def remove_opt_out(
    request: Request, action: FormAction = Depends(web.form_action(Permission.MANAGE_OPT_OUTS))
) -> Response:
    staff = action.staff
    phone, reason = action.text("phone"), action.text("reason")

    def change() -> bool:
        phi = request.app.state.vault.org(staff.org_id)  # before the transaction (journeys.keys.phi)
        with transaction(request.app.state.engine) as conn:
            removed = consent.remove_opt_out_with_reason(
                conn, phi, phone, reason, SOURCE, request.app.state.clock.now()
            )
            if removed:
                entry = web.audit_entry(
                    request, staff, Action.OPT_OUT_REMOVE, target_kind="sms_consent", count=1
                )
                audit.record(conn, entry)
        return removed

    try:
        removed = await run_in_threadpool(change)
    except OptOutError as exc:
        found = await run_in_threadpool(_load, request, staff, "")
        if phone in {o.phone for o in found[:PAGE_SIZE]}:  # shown by its row
            return _page(request, staff, found, "", status=400, remove_problems={phone: exc.errors})
        return _page(request, staff, found, "", status=400, problems=exc.errors)
    if not removed:
        raise NotFound("that phone number is not opted out")
    return RedirectResponse(f"{web.PREFIX}/opt-outs?done=removed", status_code=303)
