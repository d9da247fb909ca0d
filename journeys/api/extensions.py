"""Routes beyond the MedChat API (same auth, same error style): injecting patient replies."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from journeys.accounts import SCOPE_CREATE, SCOPE_READ, Principal
from journeys.api.auth import require
from journeys.api.errors import ApiError
from journeys.api.inputs import read_json
from journeys.engine import replies as replies_service
from journeys.engine.replies import ReplyError, receive_reply
from journeys.store.db import read_only, transaction

router = APIRouter(prefix="/api/orgs/{orgId}")


class ReplyIn(BaseModel):
    from_: str = Field(alias="from", description="The patient's phone number")
    body: str = Field(description="The reply text")


@router.post(
    "/replies",
    summary="Inject an inbound SMS reply (for SMS providers without a webhook, and for testing)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ReplyIn.model_json_schema(by_alias=True)}},
        }
    },
)
async def post_reply(orgId: str, request: Request, _: Principal = Depends(require(SCOPE_CREATE))) -> Response:  # noqa: N803
    body = await read_json(request)
    state = request.app.state
    if not isinstance(body, dict):
        raise ApiError(400, ["request body: must be a JSON object with 'from' and 'body'"])

    def work() -> dict[str, Any]:
        with transaction(state.engine) as conn:
            try:
                r = receive_reply(conn, orgId, body.get("from"), body.get("body"), state.clock.now(), "api")
            except ReplyError as exc:
                raise ApiError(400, exc.errors) from None
        return {"id": r.message_id, "matched": r.matched, "instanceId": r.instance_id}

    out = await run_in_threadpool(work)
    state.wake_worker()
    return Response(orjson.dumps(out), status_code=200, media_type="application/json")


@router.get("/replies", summary="Inbound SMS replies, newest first (unmatched ones need a human)")
async def list_replies(
    orgId: str,  # noqa: N803
    request: Request,
    unmatched: bool = False,
    limit: int = Query(default=100, ge=1, le=1000),
    _: Principal = Depends(require(SCOPE_READ)),
) -> Response:
    def work() -> list[dict[str, object]]:
        with read_only(request.app.state.engine) as conn:
            return replies_service.list_replies(conn, orgId, unmatched, limit)

    return Response(orjson.dumps(await run_in_threadpool(work)), media_type="application/json")
