"""Rate limits on every route (journeys.limits holds the buckets): 429 with `Retry-After`.

In order, for each request:
1. An address with too many failed authentications in the window (401 answers, and Twilio
   webhooks refused for their signature) is refused until the oldest failure leaves the window.
2. Each client address has a token bucket of requests.
3. Each bearer token (told apart by a hash of it, never stored or logged) has its own.

The console's sign-in has its own throttle and per-account lockout (journeys.accounts.throttle).
Health, readiness and metrics are never limited (probes and scrapers), nor the console's assets.
Behind a proxy, the client address is the one uvicorn is told of (`--forwarded-allow-ips`)."""

from __future__ import annotations

import hashlib
import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from journeys.clock import Clock
from journeys.limits import Buckets, Failures, LimitSettings

log = logging.getLogger("journeys.api")

EXEMPT = ("/healthz", "/readyz", "/metrics")
TWILIO = "/channels/twilio/"
CONSOLE = "/console"


def _exempt(path: str) -> bool:
    return path in EXEMPT or path.startswith(CONSOLE + "/static/")


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            kind, _, token = value.partition(b" ")
            return hashlib.sha256(token.strip()).hexdigest()[:32] if kind.lower() == b"bearer" else None
    return None


class RateLimits:
    def __init__(self, app: ASGIApp, *, limits: LimitSettings, clock: Clock) -> None:
        self.app = app
        self.enabled = limits.enabled
        self.clock = clock
        self.by_address = Buckets(limits.per_address)
        self.by_token = Buckets(limits.per_token)
        self.failures = Failures(limits.auth_failures, limits.auth_window_seconds)

    def _refusal(self, scope: Scope, address: str) -> tuple[str, int] | None:
        now = self.clock.now()
        wait = self.failures.blocked(address, now)
        if wait is not None:
            return "too many failed authentications from this address; retry later", wait
        wait = self.by_address.take(address, now)
        if wait is not None:
            return "too many requests from this address; retry later", wait
        token = _bearer(scope)
        if token is not None:
            wait = self.by_token.take(token, now)
            if wait is not None:
                return "too many requests with this token; retry later", wait
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not self.enabled or scope["type"] != "http" or _exempt(path):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else "-"
        refusal = self._refusal(scope, address)
        if refusal is not None:
            message, wait = refusal
            log.warning("request refused by a rate limit (retry after %d s)", wait)
            await _too_many(scope, receive, send, message, wait)
            return
        status = 0

        async def send_watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, send_watching)
        if status == 401 or (status == 403 and path.startswith(TWILIO)):
            self.failures.failed(address, self.clock.now())


async def _too_many(scope: Scope, receive: Receive, send: Send, message: str, wait: int) -> None:
    headers = {"Retry-After": str(wait)}
    path = scope.get("path", "")
    app = scope.get("app")
    html_error = getattr(getattr(app, "state", None), "html_error", None)
    if html_error is not None and (path == CONSOLE or path.startswith(CONSOLE + "/")):
        response = html_error(Request(scope, receive), 429, [message], headers)
    else:
        response = Response(orjson.dumps([message]), 429, headers, "application/json")
    await response(scope, receive, send)
