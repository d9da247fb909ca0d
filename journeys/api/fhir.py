"""FHIR R4 endpoints (HTTP only): an EHR creates or updates Appointments, or notifies journeys
with a subscription's Bundle (rest-hook), and the org's FHIR feeds (journeys.feeds.fhir) start,
move or cancel its journeys. Errors are OperationOutcomes (journeys.api.errors)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from journeys.accounts.service import SCOPE_CREATE, Principal
from journeys.api import auditing
from journeys.api.auth import require
from journeys.api.inputs import read_body
from journeys.errors import Conflict, Invalid, Unprocessable
from journeys.feeds import fhir as fhir_feed
from journeys.feeds.fhir import Applied
from journeys.feeds.fhir_fetch import with_patients
from journeys.feeds.registry import fhir_feeds
from journeys.instances.trigger import ConcurrentChange
from journeys.store.db import read_only, transaction

# Not in the OpenAPI document (the MedChat API and our extensions): a FHIR server describes itself
# with its CapabilityStatement (GET …/metadata), and docs/feeds.md documents these routes.
router = APIRouter(prefix="/fhir/orgs/{orgId}", tags=["FHIR"], include_in_schema=False)
FHIR_JSON = "application/fhir+json"
_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


def _fhir(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON, headers=headers)


async def _read(request: Request) -> Any:
    """The JSON body (None when empty), capped at JOURNEYS_MAX_BODY_BYTES (413)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and kind not in _TYPES:
        raise Invalid(f"Content-Type {kind!r}: send application/fhir+json")
    raw = await read_body(request, request.app.state.settings.max_body_bytes)
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"the body is not valid JSON: {exc.args[0] if exc.args else exc}") from None


def _answer(request: Request, resource: Any, applied: list[Applied], status: int, **headers: str) -> Response:
    """As FHIR's `Prefer` header asks: the resource (return=representation, the default), what
    was done (return=OperationOutcome), or nothing (return=minimal)."""
    prefer = request.headers.get("prefer", "").replace(" ", "").lower()
    if "return=operationoutcome" in prefer:
        return _fhir(_outcome(applied), status, headers)
    if "return=minimal" in prefer:
        return Response(status_code=status, headers=headers)
    return _fhir(resource, status, headers)


def _outcome(applied: list[Applied]) -> dict[str, Any]:
    """What was done, as an OperationOutcome of information issues (ids only)."""
    issues = [
        {
            "severity": "information",
            "code": "informational",
            "diagnostics": f"{a.where} (feed {a.feed}): {a.ack.text}",
        }
        for a in applied
    ]
    if not issues:
        issues = [
            {"severity": "information", "code": "informational", "diagnostics": "no Appointment to apply"}
        ]
    return {"resourceType": "OperationOutcome", "issue": issues}


async def _apply(request: Request, principal: Principal, payload: Any) -> list[Applied]:
    state = request.app.state
    if payload is None:
        raise Invalid("the body is empty; expected a FHIR Appointment")
    items = fhir_feed.received(payload)  # raises Invalid before any work

    def work() -> list[Applied]:
        phi = state.vault.org(principal.org_id)  # before the transaction (journeys.keys.phi)
        actor = auditing.actor(request, principal)
        with read_only(state.engine) as conn:
            feeds = fhir_feeds(conn, principal.org_id)
        if not feeds:
            raise Unprocessable("this org has no FHIR feed: store one with `journeys fhir set FILE`")
        policy = state.settings.outbound_policy()
        fetched = with_patients(items, feeds, principal.org_id, state.registered_apis, policy)
        for attempt in range(3):
            try:
                with transaction(state.engine) as conn:
                    return fhir_feed.receive(conn, feeds, fetched, actor, state.clock.now(), phi)
            except (IntegrityError, ConcurrentChange):
                if attempt == 2:
                    raise Conflict("the appointment changed while the request ran; retry it") from None
        raise AssertionError("unreachable")

    applied = await run_in_threadpool(work)
    state.wake_worker()
    return applied


CAPABILITIES: dict[str, Any] = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "date": "2026-12-01",
    "kind": "instance",
    "software": {"name": "journeys"},
    "fhirVersion": "4.0.1",
    "format": ["application/fhir+json"],
    "rest": [
        {
            "mode": "server",
            "documentation": "POST …/notify takes a Subscription's rest-hook notification (a Bundle)",
            "security": {"description": "Authorization: Bearer <an org's API token with the create scope>"},
            "resource": [
                {
                    "type": "Appointment",
                    "interaction": [{"code": "create"}, {"code": "update"}],
                    "documentation": "Starts, moves or cancels the journeys of the org's FHIR feeds; "
                    "a contained Patient gives the patient's name and telecom",
                }
            ],
        }
    ],
}


@router.get("/metadata", summary="The CapabilityStatement: what these endpoints accept")
async def metadata(orgId: str) -> Response:  # noqa: N803
    return _fhir(CAPABILITIES)


@router.post("/Appointment", summary="Create an Appointment: start (or update) its journey")
async def create_appointment(
    orgId: str,  # noqa: N803
    request: Request,
    principal: Principal = Depends(require(SCOPE_CREATE)),
) -> Response:
    payload = await _read(request)
    applied = await _apply(request, principal, payload)
    appt_id = payload.get("id") if isinstance(payload, dict) else None
    if appt_id:
        return _answer(request, payload, applied, 201, Location=f"/fhir/orgs/{orgId}/Appointment/{appt_id}")
    return _answer(request, payload, applied, 201)


@router.put("/Appointment/{appointmentId}", summary="Update an Appointment: reschedule, cancel, no-show")
async def update_appointment(
    orgId: str,  # noqa: N803
    appointmentId: str,  # noqa: N803
    request: Request,
    principal: Principal = Depends(require(SCOPE_CREATE)),
) -> Response:
    payload = await _read(request)
    if isinstance(payload, dict) and payload.get("id") != appointmentId:
        raise Invalid(f"Appointment.id must be the id in the URL ({appointmentId})")
    applied = await _apply(request, principal, payload)
    return _answer(request, payload, applied, 200)


@router.post("/notify", summary="A FHIR Subscription's rest-hook: a notification Bundle")
async def notify(
    orgId: str,  # noqa: N803
    request: Request,
    principal: Principal = Depends(require(SCOPE_CREATE)),
) -> Response:
    """Every Appointment of the Bundle (with the Patients it holds), in order, in one
    transaction: all applied, or none. A Bundle with no Appointment (a handshake or a
    heartbeat) is answered 200 with nothing done."""
    payload = await _read(request)
    if payload is None:  # an R4 rest-hook ping carries no payload
        return _fhir(_outcome([]))
    return _fhir(_outcome(await _apply(request, principal, payload)))
