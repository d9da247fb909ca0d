"""Errors in the MedChat style: the body is a JSON array of human-readable messages."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from journeys.errors import JourneysError, Kind, Unauthorized
from journeys.store.errors import ErrorKind, error_kind

log = logging.getLogger("journeys.api")


# The one translation of the error model to HTTP.
STATUS = {
    Kind.INVALID: 400,
    Kind.UNPROCESSABLE: 422,
    Kind.UNAUTHORIZED: 401,
    Kind.FORBIDDEN: 403,
    Kind.NOT_FOUND: 404,
    Kind.CONFLICT: 409,
    Kind.TOO_LARGE: 413,
    Kind.TOO_MANY: 429,
    Kind.FAILED: 500,
    Kind.UNAVAILABLE: 503,
}


def error_response(status: int, messages: list[str], headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(messages), status_code=status, media_type="application/json", headers=headers
    )


CONSOLE_PREFIX = "/console"
FHIR_PREFIX = "/fhir/"
# An OperationOutcome issue's code for each status (FHIR's IssueType).
FHIR_ISSUE = {
    400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
    409: "conflict", 413: "too-costly", 415: "not-supported", 422: "processing", 429: "throttled",
}  # fmt: skip


def operation_outcome(status: int, messages: list[str], headers: dict[str, str] | None = None) -> Response:
    """The error as FHIR answers it: an OperationOutcome with an issue for each message."""
    code = FHIR_ISSUE.get(status, "exception")
    issues = [{"severity": "error", "code": code, "diagnostics": m} for m in messages]
    body = {"resourceType": "OperationOutcome", "issue": issues}
    media = "application/fhir+json"
    return Response(orjson.dumps(body), status_code=status, media_type=media, headers=headers)


def _respond(
    request: Request, status: int, messages: list[str], headers: dict[str, str] | None = None
) -> Response:
    """The error as JSON (the API), an OperationOutcome on the FHIR paths, or a page for the
    console's paths (its `html_error`)."""
    html_error = getattr(request.app.state, "html_error", None)
    path = request.url.path
    if path.startswith(FHIR_PREFIX):
        return operation_outcome(status, messages, headers)
    if html_error is not None and (path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")):
        response: Response = html_error(request, status, messages, headers)
        return response
    return error_response(status, messages, headers)


def _error_headers(exc: JourneysError) -> dict[str, str] | None:
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        error = f', error="{exc.error}"' if exc.error else ""
        headers["WWW-Authenticate"] = f'Bearer realm="{exc.realm}"{error}'
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return headers or None


def journeys_error_response(exc: JourneysError) -> Response:
    """A JourneysError as the API answers it: its status, and its messages as a JSON array."""
    return error_response(STATUS[exc.kind], exc.messages, _error_headers(exc))


def install(app: FastAPI) -> None:
    @app.exception_handler(JourneysError)
    async def _journeys_error(request: Request, exc: JourneysError) -> Response:
        return _respond(request, STATUS[exc.kind], exc.messages, _error_headers(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        messages = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "path", "query"))
            messages.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
        return _respond(request, 400, messages or ["invalid request"])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names only the methods of the first route whose path matched.
            headers["Allow"] = ", ".join(allowed_methods(request))
        return _respond(request, exc.status_code, [detail], headers)

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError) -> Response:
        # Never log the statement or its parameters (they may hold PHI): only the error class.
        kind = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
        if is_unavailable(exc):
            log.warning("database unavailable: %s", kind)
            return _respond(request, 503, ["the database is unavailable; retry later"], {"Retry-After": "5"})
        log.error("database error: %s", kind)
        return _respond(request, 500, ["internal error"])


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on the request's path (for a 405's Allow header)."""
    app = request.app
    routers = getattr(app.state, "routers", ())
    candidates = [*app.router.routes, *(r for router in routers for r in router.routes)]
    methods: set[str] = set()
    for route in candidates:
        route_methods = getattr(route, "methods", None)
        if isinstance(route_methods, set) and route.matches(request.scope)[0] is not Match.NONE:
            methods.update(route_methods)
    return sorted(methods)


def is_unavailable(exc: DBAPIError) -> bool:
    """True for errors that mean "try again later" (server down, connection lost, SQLite busy),
    as opposed to errors in what we asked the database to do."""
    return error_kind(exc) is ErrorKind.UNAVAILABLE
