"""Making an `http_request` step's call (the worker does this outside any transaction)."""

from __future__ import annotations

from typing import Any

import httpx

MAX_SAVED_BODY = 256 * 1024


def perform_http(call: dict[str, Any]) -> dict[str, Any]:
    """Make the call; return {"ok", "status", "json", "error"}. Never raises. The error text
    names the kind of failure only (no URL, no body: they may hold patient data)."""
    headers = httpx.Headers(call.get("headers", {}))
    headers.setdefault("Idempotency-Key", call["idempotencyKey"])  # a designer's own key wins
    try:
        with httpx.Client(timeout=call["timeout"], follow_redirects=False) as client:
            response = client.request(
                call["method"],
                call["url"],
                headers=headers,
                json=call.get("body") if call["method"] != "GET" and call.get("body") is not None else None,
            )
    except httpx.TimeoutException:
        return {"ok": False, "status": None, "json": None, "error": "timeout"}
    except httpx.HTTPError as exc:
        return {"ok": False, "status": None, "json": None, "error": type(exc).__name__}
    data = None
    if response.content and len(response.content) <= MAX_SAVED_BODY:
        try:
            data = response.json()
        except ValueError:
            data = None
    ok = 200 <= response.status_code < 300
    return {
        "ok": ok,
        "status": response.status_code,
        "json": data,
        "error": None if ok else f"HTTP {response.status_code}",
    }
