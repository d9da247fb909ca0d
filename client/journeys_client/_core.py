"""What the sync and async clients share: each API call as a value (method, path, body, how to
read the answer), the error answers, and the retry policy. Only sending and sleeping differ."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from journeys_client.errors import JourneysError, NotAvailable, error_for
from journeys_client.filters import Filter
from journeys_client.models import (
    CancelResult,
    Delivery,
    Instance,
    InstanceDetail,
    Journey,
    NewInstance,
    OptOut,
    Reply,
    ReplyResult,
    Webhook,
)

T = TypeVar("T")
MAX_BULK = 10_000  # instances per bulk request (the API's limit)
RETRY_STATUSES = (429, 503)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a 429 or 503 (nothing was done) and of a connection that could not be made:
    after the server's Retry-After when it gives one (up to `max_wait`), else an exponential
    backoff from `base` seconds with ±20 % jitter."""

    retries: int = 3
    base: float = 0.5
    max_wait: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_wait)
        wait = min(self.base * (2**attempt), self.max_wait)
        return float(wait * random.uniform(0.8, 1.2))


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (a number of seconds, or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return (when - datetime.now(UTC)).total_seconds()


def error_of(response: httpx.Response) -> JourneysError:
    """The answer's error: its status and the server's array of messages."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, list) and all(isinstance(m, str) for m in body):
        messages = list(body)
    elif isinstance(body, dict) and isinstance(body.get("issue"), list):  # a FHIR OperationOutcome
        messages = [str(i.get("diagnostics", "")) for i in body["issue"] if isinstance(i, dict)]
    else:
        messages = [response.reason_phrase or f"HTTP {response.status_code}"]
    return error_for(response.status_code, messages, retry_after(response))


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    body: Any = None
    params: Mapping[str, Any] | None = None
    extension: bool = False  # a journeys extension (not on a MedChat base URL)


def _none(_: httpx.Response) -> None:
    return None


def _list(kind: Callable[[Mapping[str, Any]], T]) -> Callable[[httpx.Response], list[T]]:
    return lambda r: [kind(d) for d in r.json()]


def _q(value: str) -> str:
    return quote(value, safe="")


def as_instances(items: Iterable[NewInstance | Mapping[str, str]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item.to_json() if isinstance(item, NewInstance) else {"parameters": dict(item)}


def chunks(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class Api:
    """The calls of one org's API."""

    org_id: str
    extensions: bool = True
    _medchat: str = field(init=False)
    _ours: str = field(init=False)

    def __post_init__(self) -> None:
        self._medchat = f"/chatbotapi/external/orgs/{_q(self.org_id)}/journeys"
        self._ours = f"/api/orgs/{_q(self.org_id)}"

    def check(self, call: Call[Any]) -> None:
        if call.extension and not self.extensions:
            raise NotAvailable(
                0, [f"{call.method} {call.path}: a journeys extension, not on a MedChat base URL"]
            )

    # -- the MedChat routes
    def journeys(self) -> Call[list[Journey]]:
        return Call("GET", self._medchat, _list(Journey.from_json))

    def bulk(
        self, journey_id: str, instances: list[dict[str, Any]], time_zone: str | None, flow_id: str | None
    ) -> Call[None]:
        body = {"flowId": flow_id, "timeZone": time_zone, "instances": instances}
        return Call("POST", f"{self._medchat}/{_q(journey_id)}/instances/bulk", _none, body)

    def search(
        self, journey_id: str, flt: Filter | None, include_parameters: bool, skip: int, take: int
    ) -> Call[list[Instance]]:
        body = {
            "filterSpecification": flt,
            "includeParameters": include_parameters,
            "skip": skip,
            "take": take,
        }
        return Call(
            "POST", f"{self._medchat}/{_q(journey_id)}/instances/search", _list(Instance.from_json), body
        )

    def instance(self, journey_id: str, instance_id: str) -> Call[InstanceDetail]:
        path = f"{self._medchat}/{_q(journey_id)}/instances/{_q(instance_id)}"
        return Call("GET", path, lambda r: InstanceDetail.from_json(r.json()))

    def cancel(self, journey_id: str, instance_id: str) -> Call[None]:
        return Call(
            "DELETE", f"{self._medchat}/{_q(journey_id)}/instances/{_q(instance_id)}/execution", _none
        )

    # -- journeys extensions
    def cancel_matching(
        self, journey_id: str, flt: Filter | None, everything: bool, dry_run: bool
    ) -> Call[CancelResult]:
        body: dict[str, Any] = {"dryRun": dry_run}
        if flt is not None:
            body["filterSpecification"] = flt
        if everything:
            body["all"] = True

        def read(r: httpx.Response) -> CancelResult:
            d = r.json()
            return CancelResult(d.get("cancelled"), d.get("wouldCancel"))

        return Call(
            "POST", f"{self._ours}/journeys/{_q(journey_id)}/instances/cancel", read, body, extension=True
        )

    def reply(self, from_number: str, body: str) -> Call[ReplyResult]:
        def read(r: httpx.Response) -> ReplyResult:
            d = r.json()
            return ReplyResult(d["id"], d["matched"], d.get("instanceId"))

        return Call(
            "POST", f"{self._ours}/replies", read, {"from": from_number, "body": body}, extension=True
        )

    def replies(self, unmatched: bool, limit: int) -> Call[list[Reply]]:
        params = {"unmatched": str(unmatched).lower(), "limit": limit}
        return Call("GET", f"{self._ours}/replies", _list(Reply.from_json), params=params, extension=True)

    def create_webhook(self, url: str, secret: str, event_types: list[str]) -> Call[Webhook]:
        body = {"url": url, "secret": secret, "eventTypes": event_types}
        return Call(
            "POST", f"{self._ours}/webhooks", lambda r: Webhook.from_json(r.json()), body, extension=True
        )

    def webhooks(self) -> Call[list[Webhook]]:
        return Call("GET", f"{self._ours}/webhooks", _list(Webhook.from_json), extension=True)

    def verify_webhook(self, webhook_id: str) -> Call[Webhook]:
        path = f"{self._ours}/webhooks/{_q(webhook_id)}/verify"
        return Call("POST", path, lambda r: Webhook.from_json(r.json()), extension=True)

    def delete_webhook(self, webhook_id: str) -> Call[None]:
        return Call("DELETE", f"{self._ours}/webhooks/{_q(webhook_id)}", _none, extension=True)

    def deliveries(self, webhook_id: str, status: str | None, limit: int) -> Call[list[Delivery]]:
        params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
        path = f"{self._ours}/webhooks/{_q(webhook_id)}/deliveries"
        return Call("GET", path, _list(Delivery.from_json), params=params, extension=True)

    def opt_outs(self, phone: str | None, limit: int) -> Call[list[OptOut]]:
        params: dict[str, Any] = {"limit": limit, **({"phone": phone} if phone else {})}
        return Call("GET", f"{self._ours}/opt-outs", _list(OptOut.from_json), params=params, extension=True)

    def add_opt_out(self, phone: str, reason: str | None) -> Call[OptOut]:
        body = {"phone": phone, "reason": reason}
        return Call(
            "POST", f"{self._ours}/opt-outs", lambda r: OptOut.from_json(r.json()), body, extension=True
        )

    def remove_opt_out(self, phone: str) -> Call[None]:
        return Call("DELETE", f"{self._ours}/opt-outs/{_q(phone)}", _none, extension=True)
