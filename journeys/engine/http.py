"""Making an `http_request` step's call (the worker does this outside any transaction)."""

from __future__ import annotations

from typing import Protocol

import httpx

from journeys import outbound
from journeys.engine.effects import HttpCall
from journeys.engine.state import HttpResult

MAX_SAVED_BODY = 256 * 1024


class ApiResolver(Protocol):
    """Calls to an org's registered APIs (journeys.registered_apis): their base URL and
    credentials added, or why the call cannot be made."""

    def prepare(self, org_id: str, call: HttpCall) -> HttpCall | str: ...

    def answered(self, org_id: str, call: HttpCall, status: int | None) -> None: ...


def perform_step_call(
    org_id: str, call: HttpCall, policy: outbound.OutboundPolicy, apis: ApiResolver | None
) -> HttpResult:
    """An http_request step's call: to its URL, or through the registered API it names."""
    if call.api is None:
        return perform_http(call, policy)
    prepared = apis.prepare(org_id, call) if apis is not None else "registered APIs are not available here"
    if isinstance(prepared, str):
        return HttpResult(ok=False, status=None, data=None, error=prepared)
    result = perform_http(prepared, policy)
    if apis is not None:
        apis.answered(org_id, call, result.status)
    return result


def perform_http(call: HttpCall, policy: outbound.OutboundPolicy) -> HttpResult:
    """Make the call under the outbound policy; return its result. Never
    raises. The error text says whether the address was refused, or only that the request failed
    (no URL, no body — they may hold patient data — and nothing that tells a closed port from a
    timeout); an answer is described by its status."""
    headers = httpx.Headers(call.headers)
    headers.setdefault("Idempotency-Key", call.idempotency_key)  # a designer's own key wins
    try:
        with outbound.client(policy, call.timeout) as client:
            response = client.request(
                call.method,
                call.url,
                headers=headers,
                json=call.body if call.method != "GET" and call.body is not None else None,
            )
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        return HttpResult(ok=False, status=None, data=None, error=outbound.failure_text(exc))
    data = None
    if response.content and len(response.content) <= MAX_SAVED_BODY:
        try:
            data = response.json()
        except ValueError:
            data = None
    ok = 200 <= response.status_code < 300
    return HttpResult(ok, response.status_code, data, None if ok else f"HTTP {response.status_code}")
