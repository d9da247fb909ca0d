"""Routes beyond the MedChat API (same auth, same error style): injecting patient replies."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from journeys.accounts import SCOPE_CREATE, Principal
from journeys.api.auth import require
from journeys.api.errors import ApiError
from journeys.api.routes import read_json
from journeys.engine.replies import ReplyError, receive_reply
from journeys.store.db import transaction

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
