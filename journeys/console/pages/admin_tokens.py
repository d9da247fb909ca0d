"""Admin › API tokens: list, create (its secret shown once, on the page that answers the form)
and revoke. Audited through journeys.accounts.token_admin."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from journeys.accounts import service, token_admin
from journeys.accounts.roles import Permission
from journeys.console import web
from journeys.console.web import FormAction, Staff
from journeys.store.db import read_only, transaction

router = APIRouter(prefix=web.PREFIX + "/admin")
TOKENS = web.PREFIX + "/admin/tokens"
NOTICES = {"revoked": "The token was revoked: it no longer works."}


def _page(request: Request, staff: Staff, created: service.CreatedToken | None = None) -> Response:
    with read_only(request.app.state.engine) as conn:
        tokens = service.list_tokens(conn, staff.org_id, request.app.state.clock.now())
    return web.render(
        request, "admin/tokens.html", staff=staff, tokens=tokens, scopes=service.KNOWN_SCOPES,
        created=created, notice=NOTICES.get(request.query_params.get("done", "")),
    )  # fmt: skip


@router.get("/tokens", include_in_schema=False)
async def tokens_page(
    request: Request, staff: Staff = Depends(web.allowed(Permission.MANAGE_TOKENS))
) -> Response:
    return await run_in_threadpool(_page, request, staff)


@router.post("/tokens", include_in_schema=False)
async def create_token(
    request: Request, action: FormAction = Depends(web.form_action(Permission.MANAGE_TOKENS))
) -> Response:
    days = token_admin.parse_expiry_days(action.text("expires_in_days"))
    scopes = [s for s in action.form.getlist("scopes") if isinstance(s, str)]
    actor = web.actor(request, action.staff)

    def create() -> Response:
        with transaction(request.app.state.engine) as conn:
            created = token_admin.create(conn, action.staff.org_id, actor, action.text("name"), scopes, days)
        return _page(request, action.staff, created)  # the only time its secret is shown

    return await run_in_threadpool(create)


@router.post("/tokens/{token_id}/revoke", include_in_schema=False)
async def revoke_token(
    request: Request, token_id: str, action: FormAction = Depends(web.form_action(Permission.MANAGE_TOKENS))
) -> Response:
    actor = web.actor(request, action.staff)

    def revoke() -> None:
        with transaction(request.app.state.engine) as conn:
            token_admin.revoke(conn, action.staff.org_id, actor, token_id)

    await run_in_threadpool(revoke)
    return RedirectResponse(f"{TOKENS}?done=revoked", status_code=303)
