"""Headers and time limits for every response and request (the console adds its own CSP).

- Security headers on every response: `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
  and `Strict-Transport-Security` when the server is reached over TLS (uvicorn's own TLS, a
  trusted proxy's `X-Forwarded-Proto`, or an https JOURNEYS_PUBLIC_BASE_URL). API answers carry
  patient data: `Cache-Control: no-store` unless a route set its own.
- A deadline for the request body: a client that has not sent its whole body within
  JOURNEYS_REQUEST_BODY_TIMEOUT_SECONDS of its headers gets 408 and the connection's worker is
  freed (a slow-body client cannot hold the server)."""

from __future__ import annotations

import asyncio

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
ALWAYS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY")]
NO_STORE = (b"cache-control", b"no-store")


def _cacheable(path: str) -> bool:
    """Static files may be cached (the console's assets, the API docs' page and schema)."""
    return path.startswith(("/console/static/", "/docs", "/openapi.json"))


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, public_https: bool) -> None:
        self.app = app
        self.public_https = public_https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = self.public_https or scope.get("scheme") == "https"
        cacheable = _cacheable(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.extend(h for h in ALWAYS if h[0] not in names)
                if tls:
                    headers.append(HSTS)
                if not cacheable and b"cache-control" not in names:
                    headers.append(NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyDeadline:
    """408 for a request whose body has not arrived within `seconds` of its start."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        state = {"late": False, "started": False, "body_done": False}

        async def receive_in_time() -> Message:
            if state["body_done"]:  # after the body, the app may wait for a disconnect: no limit
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                state["late"] = True
                return {"type": "http.disconnect"}  # the app stops reading (Starlette: ClientDisconnect)
            if message["type"] == "http.request" and not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def send_unless_late(message: Message) -> None:
            if state["late"]:
                return  # the app's answer to the "disconnect" is replaced by the 408 below
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, receive_in_time, send_unless_late)
        except Exception:
            if not state["late"]:
                raise
        if state["late"] and not state["started"]:
            await _timeout(send, self.seconds)


async def _timeout(send: Send, seconds: float) -> None:
    body = orjson.dumps([f"the request body did not arrive within {seconds:g} seconds"])
    await send(
        {
            "type": "http.response.start",
            "status": 408,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
