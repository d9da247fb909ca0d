"""Admin › Webhooks: the org's subscriptions (create, delete) and its recent failed deliveries,
each with a Retry button. Through journeys.webhooks.service (as the API) and .admin (audit)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from journeys.accounts.audit import Action
from journeys.accounts.roles import Permission
from journeys.console import web
from journeys.console.web import FormAction, Staff
from journeys.store.db import transaction
from journeys.webhooks import admin, service
from journeys.webhooks.events import EVENT_TYPES

router = APIRouter(prefix=web.PREFIX + "/admin")
WEBHOOKS = web.PREFIX + "/admin/webhooks"
RECENT_FAILURES = 20
NOTICES = {
    "created": "The webhook was created and its endpoint verified.",
    "deleted": "The webhook was deleted.",
    "retried": "The delivery is due again: it is sent on the worker's next round.",
}


@router.get("/webhooks", include_in_schema=False)
async def webhooks_page(
    request: Request, staff: Staff = Depends(web.allowed(Permission.MANAGE_WEBHOOKS))
) -> Response:
    engine = request.app.state.engine

    def load() -> tuple[list[service.Subscription], list[service.Delivery]]:
        found = service.list_all(engine, staff.org_id)
        return found, service.deliveries(engine, staff.org_id, None, "failed", RECENT_FAILURES)

    subscriptions, failed = await run_in_threadpool(load)
    return web.render(
        request, "admin/webhooks.html", staff=staff, subscriptions=subscriptions, failed=failed,
        event_types=EVENT_TYPES, notice=NOTICES.get(request.query_params.get("done", "")),
    )  # fmt: skip


@router.post("/webhooks", include_in_schema=False)
async def create_webhook(
    request: Request, action: FormAction = Depends(web.form_action(Permission.MANAGE_WEBHOOKS))
) -> Response:
    state, org_id = request.app.state, action.staff.org_id
    types = [t for t in action.form.getlist("event_types") if isinstance(t, str)]
    actor = web.actor(request, action.staff)

    def create() -> None:
        settings = state.settings
        made = service.create(
            state.engine, settings.secret_box(), org_id, action.text("url"), action.text("secret"),
            types, actor.at, settings.outbound_policy(),
        )  # fmt: skip
        with transaction(state.engine) as conn:
            admin.record(conn, org_id, actor, Action.WEBHOOK_CREATE, made.id)

    await run_in_threadpool(create)
    return RedirectResponse(f"{WEBHOOKS}?done=created", status_code=303)


@router.post("/webhooks/{webhook_id}/delete", include_in_schema=False)
async def delete_webhook(
    request: Request,
    webhook_id: str,
    action: FormAction = Depends(web.form_action(Permission.MANAGE_WEBHOOKS)),
) -> Response:
    state, org_id = request.app.state, action.staff.org_id
    actor = web.actor(request, action.staff)

    def delete() -> None:
        service.delete(state.engine, org_id, webhook_id, actor.at)
        with transaction(state.engine) as conn:
            admin.record(conn, org_id, actor, Action.WEBHOOK_DELETE, webhook_id)

    await run_in_threadpool(delete)
    return RedirectResponse(f"{WEBHOOKS}?done=deleted", status_code=303)


@router.post("/webhooks/deliveries/{delivery_id}/retry", include_in_schema=False)
async def retry_delivery(
    request: Request,
    delivery_id: str,
    action: FormAction = Depends(web.form_action(Permission.MANAGE_WEBHOOKS)),
) -> Response:
    actor = web.actor(request, action.staff)

    def retry() -> None:
        with transaction(request.app.state.engine) as conn:
            admin.retry(conn, action.staff.org_id, actor, delivery_id)

    await run_in_threadpool(retry)
    return RedirectResponse(f"{WEBHOOKS}?done=retried", status_code=303)
