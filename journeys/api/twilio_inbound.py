"""Twilio's inbound message webhook: patient replies and consent keywords (STOP / START / HELP).

POST /channels/twilio/{orgId}/inbound takes Twilio's form-encoded request, verifies its
X-Twilio-Signature against the auth token of the org's Twilio configuration (403, nothing
recorded, when it does not verify or the org has no Twilio configuration), and records the
message: a reply goes to the org's instance waiting for one from that number, else it is stored
unmatched; STOP-like keywords opt the number out. The answer is TwiML: empty, or the org's help
text for HELP. Twilio redelivers a webhook it did not see answered: a message whose MessageSid
was recorded before is answered the same way and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from journeys.api.errors import ApiError
from journeys.api.inputs import read_body
from journeys.config import Settings
from journeys.instances.replies import ReplyError, already_received, receive_reply
from journeys.messaging import consent
from journeys.secrets import SecretBox, SecretKeyMissing
from journeys.store import channels
from journeys.store.db import read_only, transaction

log = logging.getLogger("journeys.api")

router = APIRouter()

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
FORBIDDEN = "the request's Twilio signature does not verify"
MAX_SID_CHARS = 64


def verify_twilio_signature(auth_token: str, url: str, params: dict[str, list[str]], signature: str) -> bool:
    """Twilio's request signature: base64 HMAC-SHA1, keyed with the auth token, of the URL
    followed by each parameter's name and value, sorted by name (then value)."""
    text = url + "".join(name + value for name in sorted(params) for value in sorted(set(params[name])))
    digest = hmac.new(auth_token.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode("ascii"), signature or "")


def twiml(message: str | None = None) -> Response:
    body = (
        EMPTY_TWIML
        if message is None
        else EMPTY_TWIML.replace(
            "<Response></Response>", f"<Response><Message>{escape(message)}</Message></Response>"
        )
    )
    return Response(body, status_code=200, media_type="text/xml")


def _twilio_config(engine: Any, settings: Settings, org_id: str) -> dict[str, Any] | None:
    """The org's Twilio sms configuration, decrypted; None when it has none (or it is unreadable)."""
    with read_only(engine) as conn:
        rows = channels.list_channels(conn, org_id)
    row = next((r for r in rows if r["channel"] == "sms" and r["provider"] == "twilio"), None)
    if row is None:
        return None
    try:
        return SecretBox(settings.secret_key).open(row["config_encrypted"])
    except SecretKeyMissing as exc:
        log.warning("inbound webhook refused: the Twilio credentials cannot be read: %s", exc)
        return None


@router.post("/channels/twilio/{orgId}/inbound", include_in_schema=False)
async def twilio_inbound(orgId: str, request: Request) -> Response:  # noqa: N803
    state = request.app.state
    settings: Settings = state.settings
    data = await read_body(request, settings.max_twilio_body_bytes)  # 413 before reading further
    raw = data.decode("utf-8", errors="replace")
    params: dict[str, list[str]] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        params.setdefault(name, []).append(value)
    base = settings.public_base_url
    if not base:
        log.warning(
            "inbound webhook refused: JOURNEYS_PUBLIC_BASE_URL is not set, so signatures cannot be checked"
        )
        raise ApiError(403, [FORBIDDEN])
    url = base.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    signature = request.headers.get("x-twilio-signature", "")

    config = await run_in_threadpool(_twilio_config, state.engine, settings, orgId)
    token = config.get("auth_token") if config else None
    if not isinstance(token, str) or not token or not verify_twilio_signature(token, url, params, signature):
        raise ApiError(403, [FORBIDDEN])
    assert config is not None

    def first(name: str) -> str | None:
        values = params.get(name)
        # NUL cannot be stored (PostgreSQL): dropped from what was signed, never a 500 to Twilio.
        return values[0].replace("\x00", "") if values else None

    from_, body = first("From"), first("Body") or ""
    sid = (first("MessageSid") or first("SmsSid") or "").strip() or None
    if sid is not None and len(sid) > MAX_SID_CHARS:
        raise ApiError(400, [f"MessageSid: at most {MAX_SID_CHARS} characters"])

    def work() -> bool:
        """Records the message; False when Twilio had delivered it before (a retry)."""
        try:
            with transaction(state.engine) as conn:
                try:
                    done = receive_reply(conn, orgId, from_, body, state.clock.now(), "provider", sid)
                except ReplyError as exc:
                    raise ApiError(400, exc.errors) from None
            return not done.duplicate
        except IntegrityError:
            # The same MessageSid committed by a concurrent delivery in the meantime.
            if sid is None:
                raise
            with read_only(state.engine) as conn:
                if not already_received(conn, orgId, sid):
                    raise
            return False

    if await run_in_threadpool(work):
        state.wake_worker()
    else:
        log.info("inbound webhook for org %s: a redelivered message, acknowledged again", orgId)
    if consent.classify(body) == consent.HELP:
        return twiml(consent.help_text(config))
    return twiml()
