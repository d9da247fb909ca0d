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

import base64
import hashlib
import hmac
import logging
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from journeys.api.errors import ApiError
from journeys.api.inputs import read_body
from journeys.messaging.status import (
    FINAL_STATUSES,
    apply_early_status,
    hold_early_status,
    record_delivery_status,
)
from journeys.secrets import SecretBox, SecretKeyMissing
from journeys.store import channels as channels_repo
from journeys.store.db import read_only, transaction

log = logging.getLogger("journeys.api.twilio")

router = APIRouter()

MAX_SID_CHARS = 64
_FORBIDDEN = ["the request is not signed by this org's Twilio account"]


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's X-Twilio-Signature for a form-encoded request (repeated keys: values sorted)."""
    by_key: dict[str, set[str]] = {}
    for key, value in params:
        by_key.setdefault(key, set()).add(value)
    payload = url + "".join(k + v for k in sorted(by_key) for v in sorted(by_key[k]))
    digest = hmac.new(auth_token.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _auth_token(request: Request, org_id: str) -> str | None:
    state = request.app.state
    with read_only(state.engine) as conn:
        rows = channels_repo.list_channels(conn, org_id)
    row = next((r for r in rows if r["channel"] == "sms" and r["provider"] == "twilio"), None)
    if row is None:
        return None
    try:
        token = SecretBox(state.settings.secret_key).open(row["config_encrypted"])
    except SecretKeyMissing:
        log.warning("twilio callback for org %s: its credentials cannot be opened", org_id)
        return None
    value = token.get("auth_token")
    return str(value) if value else None


@router.post(
    "/channels/twilio/{orgId}/status",
    summary="Twilio message status callback (verified with X-Twilio-Signature)",
    status_code=204,
    include_in_schema=False,
)
async def twilio_status(orgId: str, request: Request) -> Response:  # noqa: N803
    state = request.app.state
    public = state.settings.public_base_url
    raw = await read_body(request, state.settings.max_twilio_body_bytes)  # 413 before reading further
    signature = request.headers.get("X-Twilio-Signature", "")
    if not public or not signature:
        if not public:
            log.warning("twilio callback refused: JOURNEYS_PUBLIC_BASE_URL is not set")
        raise ApiError(403, _FORBIDDEN)
    params = parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
    url = str(public).rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query

    def work() -> None:
        token = _auth_token(request, orgId)
        expected = twilio_signature(token, url, params) if token else ""
        if not token or not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8")):
            raise ApiError(403, _FORBIDDEN)
        # NUL cannot be stored (PostgreSQL): dropped from what was signed, never a 500 to Twilio.
        form = {k: v.replace("\x00", "") for k, v in params}
        sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "").lower()
        if not sid or status not in FINAL_STATUSES:
            return
        error_code = (form.get("ErrorCode") or "").strip()[:32] or None
        now = state.clock.now()
        if len(sid) > MAX_SID_CHARS:
            raise ApiError(400, [f"MessageSid: at most {MAX_SID_CHARS} characters"])
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
