"""What both Twilio webhooks (inbound messages, delivery statuses) do first: read the form-encoded
body and verify its X-Twilio-Signature against the auth token of the org's Twilio configuration.

The signed URL is rebuilt as JOURNEYS_PUBLIC_BASE_URL + the request's path and query, so that
setting must be exactly the base URL Twilio calls (as Twilio sees it through proxies). Without
it, without a signature, for an org without a Twilio configuration, or when the signature does
not verify: 403, and nothing is recorded."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from journeys.api.inputs import read_body
from journeys.errors import Forbidden
from journeys.messaging.org_channels import twilio_config
from journeys.messaging.providers.twilio import signature_verifies

log = logging.getLogger("journeys.api.twilio")

MAX_SID_CHARS = 64


@dataclass(frozen=True)
class TwilioRequest:
    params: dict[str, list[str]]  # the form's values by name, in order
    config: dict[str, Any]  # the org's Twilio configuration, decrypted

    def first(self, name: str) -> str | None:
        """The first value of `name`. NUL cannot be stored (PostgreSQL): dropped from what was
        signed, never a 500 to Twilio."""
        values = self.params.get(name)
        return values[0].replace("\x00", "") if values else None

    def last(self, name: str) -> str | None:
        """The last value of `name` (NUL dropped, as in `first`)."""
        values = self.params.get(name)
        return values[-1].replace("\x00", "") if values else None


async def verified_twilio_request(request: Request, org_id: str, forbidden: str) -> TwilioRequest:
    """The request's form and the org's Twilio configuration, or Forbidden(`forbidden`)."""
    state = request.app.state
    settings = state.settings
    raw = await read_body(request, settings.max_twilio_body_bytes)  # 413 before reading further
    base = settings.public_base_url
    signature = request.headers.get("x-twilio-signature", "")
    if not base:
        log.warning(
            "twilio request refused: JOURNEYS_PUBLIC_BASE_URL is not set, so signatures cannot be checked"
        )
        raise Forbidden(forbidden)
    if not signature:
        raise Forbidden(forbidden)
    params: dict[str, list[str]] = {}
    for name, value in parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True):
        params.setdefault(name, []).append(value)
    url = str(base).rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    config = await run_in_threadpool(twilio_config, state.engine, settings.secret_box(), org_id)
    token = config.get("auth_token") if config else None
    if config is None or not isinstance(token, str) or not token:
        raise Forbidden(forbidden)
    if not signature_verifies(token, url, params, signature):
        raise Forbidden(forbidden)
    return TwilioRequest(params, config)
