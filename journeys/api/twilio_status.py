"""Twilio delivery-status callbacks: POST /channels/twilio/{orgId}/status.

Twilio signs each callback (X-Twilio-Signature: base64 HMAC-SHA1, keyed by the account's auth
token, over the full URL it called followed by the sorted form parameters as key+value). The URL
is rebuilt as JOURNEYS_PUBLIC_BASE_URL + the request path, so JOURNEYS_PUBLIC_BASE_URL must be
exactly the base URL Twilio calls (scheme, host, port and any path prefix, as Twilio sees them
through proxies). Unsigned, badly signed, and callbacks for orgs without a Twilio configuration
get 403 and change nothing.

Only final statuses change the outbox row (delivered, undelivered, failed): intermediate ones
(queued, sending, sent, …) are acknowledged and ignored, so that a late or out-of-order callback
never re-queues a message or undoes a delivery. A final status for a sid no message has yet is
held and applied when the send records it (journeys.messaging.status).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from journeys.api.twilio_requests import MAX_SID_CHARS, verified_twilio_request
from journeys.errors import Invalid
from journeys.messaging.status import (
    FINAL_STATUSES,
    apply_early_status,
    hold_early_status,
    record_delivery_status,
)
from journeys.store.db import transaction

log = logging.getLogger("journeys.api.twilio")

router = APIRouter()

FORBIDDEN = "the request is not signed by this org's Twilio account"


@router.post(
    "/channels/twilio/{orgId}/status",
    summary="Twilio message status callback (verified with X-Twilio-Signature)",
    status_code=204,
    include_in_schema=False,
)
async def twilio_status(orgId: str, request: Request) -> Response:  # noqa: N803
    state = request.app.state
    form = await verified_twilio_request(request, orgId, FORBIDDEN)
    sid, status = form.last("MessageSid") or "", (form.last("MessageStatus") or "").lower()
    if not sid or status not in FINAL_STATUSES:
        return Response(status_code=204)
    error_code = (form.last("ErrorCode") or "").strip()[:32] or None
    if len(sid) > MAX_SID_CHARS:
        raise Invalid(f"MessageSid: at most {MAX_SID_CHARS} characters")

    def work() -> None:
        now = state.clock.now()
        with transaction(state.engine) as conn:
            if record_delivery_status(conn, orgId, sid, status, error_code, now):
                return
            # Before the send recorded the sid (or not one of ours): held, applied once it is.
            hold_early_status(conn, orgId, sid, status, error_code, now)
        with transaction(state.engine) as conn:
            if apply_early_status(conn, orgId, sid, now):
                log.info("twilio callback for org %s: applied after the send recorded its sid", orgId)

    await run_in_threadpool(work)
    return Response(status_code=204)
