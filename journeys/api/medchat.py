"""The MedChat-compatible routes. HTTP only: parse, call a service in a transaction, shape."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

import journeys.catalog.service as catalog
from journeys.accounts.audit import Action
from journeys.accounts.service import SCOPE_CREATE, SCOPE_READ, Principal
from journeys.api import auditing
from journeys.api.auditing import ids
from journeys.api.auth import require
from journeys.api.inputs import read_json
from journeys.api.openapi import InstanceDetail, Instances, Journeys, responses
from journeys.api.schemas import (
    BulkRequest,
    SearchRequest,
    event_json,
    instance_json,
    journey_json,
    openapi_body,
)
from journeys.catalog.service import JourneyVersion
from journeys.errors import Conflict, NotFound
from journeys.instances import service as instance_service
from journeys.instances.search import parse_search
from journeys.instances.trigger import ConcurrentChange, refresh_statistics, trigger
from journeys.store.db import read_only, transaction

router = APIRouter(
    prefix="/chatbotapi/external/orgs/{orgId}/journeys", tags=["journeys (MedChat-compatible)"]
)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def journey_or_404(conn: Connection, org_id: str, chat_bot_id: str) -> JourneyVersion:
    """The journey's latest version, read in the request's own transaction (one connection and
    round trip fewer per request than a separate read)."""
    jv = catalog.get_latest(conn, org_id, chat_bot_id)
    if jv is None:
        raise NotFound(f"journey {chat_bot_id} not found")
    return jv


@router.get(
    "",
    summary="List the org's journeys, their flows and parameters",
    responses=responses(200, Journeys, description="The org's journeys (latest versions)"),
)
async def list_journeys(
    orgId: str, request: Request, _: Principal = Depends(require(SCOPE_READ))
) -> Response:  # noqa: N803
    def work() -> list[dict[str, object]]:
        with read_only(request.app.state.engine) as conn:
            return [journey_json(jv) for jv in catalog.list_latest(conn, orgId)]

    return _json(await run_in_threadpool(work))


@router.post(
    "/{chatBotId}/instances/bulk",
    status_code=204,
    summary="Trigger a journey flow or subflow for many instances",
    openapi_extra=openapi_body(BulkRequest),
    responses=responses(
        204,
        errors=(400, 409, 413),
        description="Triggered (nothing is written when the answer is not 204)",
        described={409: "Instances changed under a subflow request three times in a row: retry it"},
    ),
)
async def bulk(
    orgId: str,  # noqa: N803
    chatBotId: str,  # noqa: N803
    request: Request,
    principal: Principal = Depends(require(SCOPE_CREATE)),
) -> Response:
    body = await read_json(request)
    state = request.app.state
    subflow = isinstance(body, dict) and bool(body.get("flowId"))
    action = Action.INSTANCES_SUBFLOW if subflow else Action.INSTANCES_TRIGGER

    def work() -> None:
        phi = state.vault.org(orgId)  # before the transaction: its key may be made (journeys.keys.phi)
        for attempt in range(3):
            try:
                with transaction(state.engine) as conn:
                    jv = journey_or_404(conn, orgId, chatBotId)
                    result = trigger(
                        conn,
                        jv,
                        body,
                        state.clock.now(),
                        phi=phi,
                        max_instances=state.settings.max_bulk_instances,
                        # First try: the unique index is the only duplicate check; after a
                        # conflict, look the identifiers up to name every one of them.
                        optimistic=attempt == 0,
                    )
                    count = len(result.instance_ids)
                    auditing.record(conn, request, principal, action, "journey", ids(jv.journey_id), count)
                if result.statistics_stale and state.settings.analyze_after_bulk:
                    refresh_statistics(state.engine)
                return
            except ConcurrentChange:
                if attempt == 2:
                    raise Conflict("instances changed while the request ran; retry it") from None
            except Exception as exc:
                if _is_unique_violation(exc) and attempt < 2:
                    continue  # an identifier is taken: look them up to name every conflict
                raise

    await run_in_threadpool(work)
    state.wake_worker()
    return Response(status_code=204)


def _is_unique_violation(exc: Exception) -> bool:
    return isinstance(exc, IntegrityError)


@router.post(
    "/{chatBotId}/instances/search",
    summary="Search a journey's instances",
    openapi_extra=openapi_body(SearchRequest),
    responses=responses(200, Instances, errors=(400, 413), description="Matching instances, newest first"),
)
async def search(
    orgId: str,  # noqa: N803
    chatBotId: str,  # noqa: N803
    request: Request,
    principal: Principal = Depends(require(SCOPE_READ)),
) -> Response:
    body = await read_json(request)
    settings = request.app.state.settings

    def work() -> list[dict[str, Any]]:
        with read_only(request.app.state.engine) as conn:
            jv = journey_or_404(conn, orgId, chatBotId)
            query = parse_search(
                body,
                {p.name for p in jv.definition.parameters},
                settings.search_default_take,
                settings.search_max_take,
            )
            rows = instance_service.search(conn, jv, query, request.app.state.vault.org(orgId))
        auditing.record_read(
            request, principal, Action.INSTANCES_SEARCH, "journey", ids(jv.journey_id), len(rows)
        )
        return [instance_json(r, jv.name, query.include_parameters) for r in rows]

    return _json(await run_in_threadpool(work))


@router.get(
    "/{chatBotId}/instances/{journeyInstanceId}",
    summary="Get one instance with its timeline",
    responses=responses(200, InstanceDetail, description="The instance, its parameters and its events"),
)
async def get_instance(
    orgId: str,  # noqa: N803
    chatBotId: str,  # noqa: N803
    journeyInstanceId: str,  # noqa: N803
    request: Request,
    principal: Principal = Depends(require(SCOPE_READ)),
) -> Response:
    def work() -> dict[str, Any]:
        with read_only(request.app.state.engine) as conn:
            jv = journey_or_404(conn, orgId, chatBotId)
            phi = request.app.state.vault.org(orgId)
            row, events = instance_service.get(conn, jv, journeyInstanceId, phi)
        auditing.record_read(request, principal, Action.INSTANCE_VIEW, "instance", ids(journeyInstanceId), 1)
        out = instance_json(row, jv.name, True)
        out["events"] = [event_json(e) for e in events]
        return out

    return _json(await run_in_threadpool(work))


@router.delete(
    "/{chatBotId}/instances/{journeyInstanceId}/execution",
    status_code=204,
    summary="Cancel an instance",
    responses=responses(
        204,
        errors=(409,),
        description="Cancelled (or it already was)",
        described={409: "The instance already completed or failed"},
    ),
)
async def cancel(
    orgId: str,  # noqa: N803
    chatBotId: str,  # noqa: N803
    journeyInstanceId: str,  # noqa: N803
    request: Request,
    principal: Principal = Depends(require(SCOPE_CREATE)),
) -> Response:
    state = request.app.state

    def work() -> None:
        with transaction(state.engine) as conn:
            jv = journey_or_404(conn, orgId, chatBotId)
            instance_service.cancel(conn, jv, journeyInstanceId, state.clock.now)
            auditing.record(
                conn, request, principal, Action.INSTANCES_CANCEL, "instance", ids(journeyInstanceId), 1
            )

    await run_in_threadpool(work)
    return Response(status_code=204)
