"""Reading what a request carries: its body (size-capped while it streams in) and its path and
query values (no NUL characters, which PostgreSQL cannot store or compare)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from journeys.definitions.values import NUL_PROBLEM, has_nul
from journeys.errors import Invalid, TooLarge


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"request body is larger than the {limit} byte limit")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, or 413 as soon as it is known to exceed `limit` bytes: at once when the
    declared Content-Length says so, else once that many bytes have streamed in (the rest is
    never read into memory)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> Any:
    """The JSON body, capped at JOURNEYS_MAX_BODY_BYTES (413); 400 when empty or not JSON."""
    raw = await read_body(request, request.app.state.settings.max_body_bytes)
    if not raw.strip():
        raise Invalid("request body is empty; expected a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"request body is not valid JSON: {exc.args[0] if exc.args else exc}") from None


async def no_nul_in_path_or_query(request: Request) -> None:
    """An app-wide dependency: a path or query value holding NUL is a 400 naming it."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and has_nul(value):
            raise Invalid(f"{name}: {NUL_PROBLEM}")
    for name, value in request.query_params.multi_items():
        if has_nul(value) or has_nul(name):
            raise Invalid(f"query parameter {name!r}: {NUL_PROBLEM}")
