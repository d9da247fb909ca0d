"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

import httpx

from journeys_client._core import (
    MAX_BULK,
    RETRY_STATUSES,
    Api,
    Call,
    RetryPolicy,
    as_instances,
    chunks,
    error_of,
)
from journeys_client.errors import BulkInterrupted, JourneysError
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
    TriggerResult,
    Webhook,
)

T = TypeVar("T")


class Client:
    """One org's API at `base_url` (a journeys server, or MedChat's with `extensions=False`).

    Use it as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        org_id: str,
        *,
        extensions: bool = True,
        timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api = Api(org_id, extensions)
        self.retry = retry
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": "journeys-client/0.1"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _call(self, call: Call[T]) -> T:
        self.api.check(call)
        for attempt in range(self.retry.retries + 1):
            try:
                response = self.http.request(call.method, call.path, json=call.body, params=call.params)
            except httpx.ConnectError as exc:  # nothing was sent
                if attempt == self.retry.retries:
                    raise JourneysError(0, [f"cannot connect: {exc}"]) from exc
                time.sleep(self.retry.delay(attempt, None))
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retry.retries:
                time.sleep(self.retry.delay(attempt, error_of(response).retry_after))
                continue
            if response.status_code >= 400:
                raise error_of(response)
            return call.read(response)
        raise AssertionError("unreachable")

    # -- the MedChat routes
    def journeys(self) -> list[Journey]:
        return self._call(self.api.journeys())

    def trigger(
        self,
        journey_id: str,
        instances: Iterable[NewInstance | Mapping[str, str]],
        *,
        time_zone: str | None = None,
        flow_id: str | None = None,
        chunk_size: int = MAX_BULK,
    ) -> TriggerResult:
        """Start the journey (or `flow_id`, a subflow) for any number of instances, in requests of
        at most `chunk_size` (≤ 10,000). Each request is all or nothing; when one fails after
        others were accepted, BulkInterrupted says how many were started."""
        if not 1 <= chunk_size <= MAX_BULK:
            raise ValueError(f"chunk_size must be between 1 and {MAX_BULK}")
        sizes: list[int] = []
        for chunk in chunks(as_instances(instances), chunk_size):
            try:
                self._call(self.api.bulk(journey_id, chunk, time_zone, flow_id))
            except JourneysError as exc:
                if sizes:
                    raise BulkInterrupted(sum(sizes), exc) from exc
                raise
            sizes.append(len(chunk))
        return TriggerResult(sum(sizes), len(sizes), tuple(sizes))

    def search(
        self,
        journey_id: str,
        filter: Filter | None = None,  # noqa: A002 (the API's word)
        *,
        include_parameters: bool = True,
        page_size: int = 100,
        limit: int | None = None,
    ) -> Iterator[Instance]:
        """Every matching instance, newest first, fetched a page at a time as you iterate."""
        skip, seen = 0, 0
        while limit is None or seen < limit:
            take = page_size if limit is None else min(page_size, limit - seen)
            page = self._call(self.api.search(journey_id, filter, include_parameters, skip, take))
            yield from page
            seen += len(page)
            skip += len(page)
            if len(page) < take:
                return

    def instance(self, journey_id: str, instance_id: str) -> InstanceDetail:
        return self._call(self.api.instance(journey_id, instance_id))

    def cancel(self, journey_id: str, instance_id: str) -> None:
        self._call(self.api.cancel(journey_id, instance_id))

    # -- journeys extensions
    def cancel_matching(
        self,
        journey_id: str,
        filter: Filter | None = None,
        *,
        all: bool = False,
        dry_run: bool = False,  # noqa: A002
    ) -> CancelResult:
        """Cancel every InProgress instance matching `filter` (or `all` of them)."""
        return self._call(self.api.cancel_matching(journey_id, filter, all, dry_run))

    def reply(self, from_number: str, body: str) -> ReplyResult:
        return self._call(self.api.reply(from_number, body))

    def replies(self, *, unmatched: bool = False, limit: int = 100) -> list[Reply]:
        return self._call(self.api.replies(unmatched, limit))

    def create_webhook(self, url: str, secret: str, event_types: list[str]) -> Webhook:
        return self._call(self.api.create_webhook(url, secret, event_types))

    def webhooks(self) -> list[Webhook]:
        return self._call(self.api.webhooks())

    def verify_webhook(self, webhook_id: str) -> Webhook:
        return self._call(self.api.verify_webhook(webhook_id))

    def delete_webhook(self, webhook_id: str) -> None:
        self._call(self.api.delete_webhook(webhook_id))

    def deliveries(self, webhook_id: str, *, status: str | None = None, limit: int = 100) -> list[Delivery]:
        return self._call(self.api.deliveries(webhook_id, status, limit))

    def opt_outs(self, *, phone: str | None = None, limit: int = 100) -> list[OptOut]:
        return self._call(self.api.opt_outs(phone, limit))

    def add_opt_out(self, phone: str, reason: str | None = None) -> OptOut:
        return self._call(self.api.add_opt_out(phone, reason))

    def remove_opt_out(self, phone: str) -> None:
        self._call(self.api.remove_opt_out(phone))

    def request(self, call: Call[Any]) -> Any:
        """Send a call built with `self.api` (for what has no method here)."""
        return self._call(call)
