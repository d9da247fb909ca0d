"""Event webhook subscriptions (beyond the MedChat API; same auth, same error style)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from journeys.accounts.audit import Action
from journeys.accounts.service import SCOPE_CREATE, SCOPE_READ, Principal
from journeys.api import auditing
from journeys.api.auth import require
from journeys.api.inputs import read_json
from journeys.api.openapi import Deliveries, Webhook, Webhooks, responses
from journeys.api.schemas import delivery_json, subscription_json
from journeys.errors import Invalid
from journeys.store.db import transaction
from journeys.webhooks import service
from journeys.webhooks.events import EVENT_TYPES

router = APIRouter(prefix="/api/orgs/{orgId}/webhooks", tags=["webhooks"])


class WebhookIn(BaseModel):
    url: str = Field(description="http(s) URL that receives the events (and the challenge GET)")
    secret: str = Field(description="Shared secret (16+ characters) for the challenge and signatures")
    eventTypes: list[str] = Field(description=f"Any of {', '.join(EVENT_TYPES)}, or * for all")  # noqa: N815


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


@router.post(
    "",
    status_code=201,
    summary="Subscribe an endpoint to events (the endpoint is challenged first)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": WebhookIn.model_json_schema()}},
        }
    },
    responses=responses(
        201,
        Webhook,
        errors=(400, 413),
        description="Subscribed, and the endpoint answered the challenge",
        described={
            400: "A bad subscription, or the endpoint failed the challenge (the subscription is kept, "
            "unverified: its id is in the message)",
            503: "The database is unavailable, or JOURNEYS_SECRET_KEY is not set",
        },
    ),
)
async def create_webhook(
    orgId: str, request: Request, principal: Principal = Depends(require(SCOPE_CREATE))
) -> Response:  # noqa: N803
    body = await read_json(request)
    if not isinstance(body, dict):
        raise Invalid("request body: must be a JSON object with url, secret and eventTypes")
    state = request.app.state
    out = await run_in_threadpool(
        lambda: service.create(
            state.engine,
            state.settings.secret_box(),
            orgId,
            body.get("url"),
            body.get("secret"),
            body.get("eventTypes"),
            state.clock.now(),
            state.settings.outbound_policy(),
        )
    )
    await run_in_threadpool(_record, request, principal, Action.WEBHOOK_CREATE, out.id)
    return _json(subscription_json(out), 201)


def _record(request: Request, principal: Principal, action: Action, webhook_id: str) -> None:
    """The subscription is stored (and challenged) first: its entry follows in a transaction."""
    with transaction(request.app.state.engine) as conn:
        auditing.record(conn, request, principal, action, "webhook", auditing.ids(webhook_id))


@router.get(
    "", summary="List the org's webhook subscriptions", responses=responses(200, Webhooks)
)
async def list_webhooks(
    orgId: str, request: Request, _: Principal = Depends(require(SCOPE_READ))
) -> Response:  # noqa: N803
    found = await run_in_threadpool(lambda: service.list_all(request.app.state.engine, orgId))
    return _json([subscription_json(s) for s in found])


@router.delete(
    "/{webhookId}",
    status_code=204,
    summary="Delete (disable) a webhook subscription",
    responses=responses(204, description="Deleted"),
)
async def delete_webhook(
    orgId: str,  # noqa: N803
    webhookId: str,  # noqa: N803
    request: Request,
    principal: Principal = Depends(require(SCOPE_CREATE)),
) -> Response:
    state = request.app.state

    def work() -> None:
        service.delete(state.engine, orgId, webhookId, state.clock.now())
        with transaction(state.engine) as conn:  # recorded once done, as the console and CLI do
            target = auditing.ids(webhookId)
            auditing.record(conn, request, principal, Action.WEBHOOK_DELETE, "webhook", target)

    await run_in_threadpool(work)
    return Response(status_code=204)


@router.post(
    "/{webhookId}/verify",
    summary="Challenge the endpoint again",
    responses=responses(
        200,
        Webhook,
        errors=(400,),
        description="The endpoint answered the challenge",
        described={
            400: "The endpoint failed the challenge (the subscription is kept, unverified)",
            503: "The database is unavailable, or JOURNEYS_SECRET_KEY is not set",
        },
    ),
)
async def verify_webhook(
    orgId: str,  # noqa: N803
    webhookId: str,  # noqa: N803
    request: Request,
    _: Principal = Depends(require(SCOPE_CREATE)),
) -> Response:
    state = request.app.state
    out = await run_in_threadpool(
        lambda: service.verify(
            state.engine,
            state.settings.secret_box(),
            orgId,
            webhookId,
            state.clock.now(),
            state.settings.outbound_policy(),
        )
    )
    return _json(subscription_json(out))


@router.get(
    "/{webhookId}/deliveries",
    summary="Recent deliveries, newest first (attempts, status codes)",
    responses=responses(200, Deliveries, errors=(400,), described={400: "A bad status or limit"}),
)
async def list_deliveries(
    orgId: str,  # noqa: N803
    webhookId: str,  # noqa: N803
    request: Request,
    status: str | None = None,
    limit: int = 100,
    _: Principal = Depends(require(SCOPE_READ)),
) -> Response:
    engine = request.app.state.engine
    found = await run_in_threadpool(lambda: service.deliveries(engine, orgId, webhookId, status, limit))
    return _json([delivery_json(d) for d in found])
