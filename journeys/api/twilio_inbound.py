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

import logging
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from journeys.api.twilio_requests import MAX_SID_CHARS, verified_twilio_request
from journeys.errors import Invalid
from journeys.instances.replies import already_received, receive_reply
from journeys.messaging import consent
from journeys.store.db import read_only, transaction

log = logging.getLogger("journeys.api")

router = APIRouter()

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
FORBIDDEN = "the request's Twilio signature does not verify"


def twiml(message: str | None = None) -> Response:
    body = (
        EMPTY_TWIML
        if message is None
        else EMPTY_TWIML.replace(
            "<Response></Response>", f"<Response><Message>{escape(message)}</Message></Response>"
        )
    )
    return Response(body, status_code=200, media_type="text/xml")


@router.post("/channels/twilio/{orgId}/inbound", include_in_schema=False)
async def twilio_inbound(orgId: str, request: Request) -> Response:  # noqa: N803
    state = request.app.state
    form = await verified_twilio_request(request, orgId, FORBIDDEN)
    from_, body = form.first("From"), form.first("Body") or ""
    sid = (form.first("MessageSid") or form.first("SmsSid") or "").strip() or None
    if sid is not None and len(sid) > MAX_SID_CHARS:
        raise Invalid(f"MessageSid: at most {MAX_SID_CHARS} characters")

    def work() -> bool:
        """Records the message; False when Twilio had delivered it before (a retry)."""
        phi = state.vault.org(orgId)  # before the transaction (journeys.keys.phi)
        try:
            with transaction(state.engine) as conn:
                done = receive_reply(conn, orgId, from_, body, state.clock.now(), "provider", sid, phi=phi)
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
        return twiml(consent.help_text(form.config))
    return twiml()
