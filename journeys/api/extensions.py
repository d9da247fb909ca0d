"""Routes beyond the MedChat API (same auth, same error style): injecting and listing patient
replies, bulk cancel by filter, and opt-outs managed by staff."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from journeys.accounts.audit import Action
from journeys.accounts.service import SCOPE_CREATE, SCOPE_READ, Principal
from journeys.api import auditing
from journeys.api.auditing import ids
from journeys.api.auth import require
from journeys.api.errors import is_unavailable
from journeys.api.inputs import read_json
from journeys.api.medchat import journey_or_404
from journeys.api.openapi import CancelResult, OptOut, OptOuts, Replies, ReplyResult, responses
from journeys.api.schemas import CancelRequest, openapi_body, opt_out_json, reply_json
from journeys.errors import Invalid, JourneysError, Kind, NotFound
from journeys.instances import replies as replies_service
from journeys.instances import service as instance_service
from journeys.instances.replies import receive_reply
from journeys.instances.search import parse_cancel
from journeys.messaging import consent
from journeys.store.db import read_only, transaction

log = logging.getLogger("journeys.api")

router = APIRouter(prefix="/api/orgs/{orgId}")


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


class ReplyIn(BaseModel):
    from_: str = Field(alias="from", description="The patient's phone number")
    body: str = Field(description="The reply text")


@router.post(
    "/replies",
    tags=["replies"],
    summary="Inject an inbound SMS reply (for SMS providers without a webhook, and for testing)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ReplyIn.model_json_schema(by_alias=True)}},
        }
    },
    responses=responses(
        200, ReplyResult, errors=(400, 413), description="Recorded; matched to a waiting instance or not"
    ),
)
async def post_reply(
    orgId: str, request: Request, principal: Principal = Depends(require(SCOPE_CREATE))
) -> Response:  # noqa: N803
    body = await read_json(request)
    state = request.app.state
    if not isinstance(body, dict):
        raise Invalid("request body: must be a JSON object with 'from' and 'body'")

    def work() -> dict[str, Any]:
        phi = state.vault.org(orgId)  # before the transaction (journeys.keys.phi)
        with transaction(state.engine) as conn:
            r = receive_reply(
                conn, orgId, body.get("from"), body.get("body"), state.clock.now(), "api", phi=phi
            )
            targets = ids(r.message_id, r.instance_id)
            auditing.record(conn, request, principal, Action.REPLY_RECEIVE, "message", targets, 1)
        return {"id": r.message_id, "matched": r.matched, "instanceId": r.instance_id}

    out = await run_in_threadpool(work)
    state.wake_worker()
    return Response(orjson.dumps(out), status_code=200, media_type="application/json")


@router.get(
    "/replies",
    tags=["replies"],
    summary="Inbound SMS replies, newest first (unmatched ones need a human)",
    responses=responses(200, Replies, errors=(400,), described={400: "A bad unmatched or limit"}),
)
async def list_replies(
    orgId: str,  # noqa: N803
    request: Request,
    unmatched: bool = False,
    limit: int = Query(default=100, ge=1, le=1000),
    principal: Principal = Depends(require(SCOPE_READ)),
) -> Response:
    def work() -> list[dict[str, Any]]:
        with read_only(request.app.state.engine) as conn:
            phi = request.app.state.vault.org(orgId)
            found = [reply_json(r) for r in replies_service.list_replies(conn, phi, unmatched, limit)]
        auditing.record_read(request, principal, Action.REPLIES_VIEW, count=len(found))
        return found

    return Response(orjson.dumps(await run_in_threadpool(work)), media_type="application/json")


# ---------------------------------------------------------------- bulk cancel
@router.post(
    "/journeys/{chatBotId}/instances/cancel",
    summary="Cancel every InProgress instance of a journey that matches a search filter",
    tags=["instances"],
    openapi_extra=openapi_body(CancelRequest),
    responses=responses(
        200, CancelResult, errors=(400, 413), description="How many were cancelled (or would be, with dryRun)"
    ),
)
async def bulk_cancel(
    orgId: str,  # noqa: N803
    chatBotId: str,  # noqa: N803
    request: Request,
    principal: Principal = Depends(require(SCOPE_CREATE)),
) -> Response:
    body = await read_json(request)
    state = request.app.state

    def work() -> dict[str, int]:
        with read_only(state.engine) as conn:
            jv = journey_or_404(conn, orgId, chatBotId)
            query = parse_cancel(body, {p.name for p in jv.definition.parameters})
            flt = instance_service.stored_filter(jv, query.filter, state.vault.org(orgId))
            if query.dry_run:
                would = instance_service.count_matching(conn, jv, flt)
                auditing.record_read(
                    request, principal, Action.INSTANCES_SEARCH, "journey", ids(jv.journey_id), would
                )
                return {"wouldCancel": would}
        try:
            done = instance_service.cancel_all_matching(
                state.engine, jv, flt, state.clock.now, "api", state.settings.cancel_chunk_size
            )
        except instance_service.BulkCancelInterrupted as exc:
            _record_cancelled(request, principal, jv.journey_id, exc.cancelled)
            cause = type(exc.cause.orig or exc.cause).__name__
            log.warning("bulk cancel interrupted after %d instances: %s", exc.cancelled, cause)
            unavailable = is_unavailable(exc.cause)
            raise JourneysError(
                f"the database failed after {exc.cancelled} instances were cancelled (they stay "
                "cancelled); send the same request again to cancel the rest",
                kind=Kind.UNAVAILABLE if unavailable else Kind.FAILED,
                retry_after=5 if unavailable else None,
            ) from None
        _record_cancelled(request, principal, jv.journey_id, done)
        return {"cancelled": done}

    return _json(await run_in_threadpool(work))


def _record_cancelled(request: Request, principal: Principal, journey_id: str, count: int) -> None:
    """A bulk cancel commits chunk by chunk (journeys.instances.service.cancel_all_matching): its
    entry, with the count cancelled, follows in a transaction of its own."""
    try:
        with transaction(request.app.state.engine) as conn:
            auditing.record(
                conn, request, principal, Action.INSTANCES_CANCEL, "journey", ids(journey_id), count
            )
    except Exception:  # the database failed: kept for the next read flush rather than lost
        auditing.record_read(request, principal, Action.INSTANCES_CANCEL, "journey", ids(journey_id), count)


# ---------------------------------------------------------------- opt-outs
class OptOutIn(BaseModel):
    phone: str = Field(description="The patient's phone number (normalised: + and digits)")
    reason: str | None = Field(default=None, description="Why (staff's note, at most 500 characters)")


@router.get(
    "/opt-outs",
    summary="The org's opted-out phone numbers, most recently changed first",
    tags=["opt-outs"],
    responses=responses(200, OptOuts, errors=(400,), described={400: "A bad phone or limit"}),
)
async def list_opt_outs(
    orgId: str,  # noqa: N803
    request: Request,
    phone: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    principal: Principal = Depends(require(SCOPE_READ)),
) -> Response:
    def work() -> list[dict[str, Any]]:
        phi = request.app.state.vault.org(orgId)
        with read_only(request.app.state.engine) as conn:
            found = [opt_out_json(o) for o in consent.list_opt_outs(conn, phi, phone, limit)]
        auditing.record_read(request, principal, Action.OPT_OUTS_VIEW, count=len(found))
        return found

    return _json(await run_in_threadpool(work))


@router.post(
    "/opt-outs",
    summary="Opt a phone number out of the org's SMS (as if the patient had texted STOP)",
    tags=["opt-outs"],
    status_code=201,
    responses={
        **responses(201, OptOut, errors=(400, 413), description="Opted out now"),
        200: {"description": "Already opted out: the record, unchanged", "model": OptOut},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": OptOutIn.model_json_schema()}},
        }
    },
)
async def add_opt_out(
    orgId: str,  # noqa: N803
    request: Request,
    principal: Principal = Depends(require(SCOPE_CREATE)),
) -> Response:
    body = await read_json(request)
    state = request.app.state
    if not isinstance(body, dict):
        raise Invalid("request body: must be a JSON object with 'phone' (and optionally 'reason')")
    unknown = [f"{k}: unknown field (expected: phone, reason)" for k in body if k not in ("phone", "reason")]
    if unknown:
        raise Invalid(unknown)

    def work() -> tuple[bool, consent.OptOut]:
        phi = state.vault.org(orgId)  # before the transaction (journeys.keys.phi)
        with transaction(state.engine) as conn:
            out = consent.add_opt_out(
                conn, phi, body.get("phone"), body.get("reason"), "api", state.clock.now()
            )
            if out[0]:  # the number is never recorded: PHI
                auditing.record(conn, request, principal, Action.OPT_OUT_ADD, "sms_consent", count=1)
            return out

    created, record = await run_in_threadpool(work)
    return _json(opt_out_json(record), 201 if created else 200)


@router.delete(
    "/opt-outs/{phone}",
    status_code=204,
    summary="Opt a phone number back in (as if the patient had texted START)",
    tags=["opt-outs"],
    responses=responses(
        204, errors=(400,), description="Opted in", described={404: "Not found, or not opted out"}
    ),
)
async def remove_opt_out(
    orgId: str,  # noqa: N803
    phone: str,
    request: Request,
    principal: Principal = Depends(require(SCOPE_CREATE)),
) -> Response:
    state = request.app.state

    def work() -> bool:
        phi = state.vault.org(orgId)  # before the transaction (journeys.keys.phi)
        with transaction(state.engine) as conn:
            removed = consent.remove_opt_out(conn, phi, phone, "api", state.clock.now())
            if removed:
                auditing.record(conn, request, principal, Action.OPT_OUT_REMOVE, "sms_consent", count=1)
            return removed

    if not await run_in_threadpool(work):
        raise NotFound("that phone number is not opted out")
    return Response(status_code=204)
