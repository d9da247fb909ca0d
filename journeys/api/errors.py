"""Errors in the MedChat style: the body is a JSON array of human-readable messages."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("journeys.api")


class ApiError(Exception):
    def __init__(self, status: int, messages: list[str], headers: dict[str, str] | None = None) -> None:
        super().__init__(status, messages)
        self.status = status
        self.messages = messages
        self.headers = headers or {}


def error_response(status: int, messages: list[str], headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(messages), status_code=status, media_type="application/json", headers=headers
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.messages, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        messages = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "path", "query"))
            messages.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
        return error_response(400, messages or ["invalid request"])

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return error_response(exc.status_code, [detail], getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> Response:
        # Never log the statement or its parameters (they may hold PHI): only the error class.
        log.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else type(exc).__name__)
        return error_response(503, ["the database is unavailable; retry later"], {"Retry-After": "5"})

    @app.exception_handler(DBAPIError)
    async def _db_error(_: Request, exc: DBAPIError) -> Response:
        if exc.connection_invalidated:
            log.warning("database connection lost")
            return error_response(503, ["the database is unavailable; retry later"], {"Retry-After": "5"})
        log.error("database error: %s", type(exc.orig).__name__ if exc.orig else type(exc).__name__)
        return error_response(500, ["internal error"])
