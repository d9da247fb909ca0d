"""The asynchronous client: the same calls as `Client`, awaited (`async with AsyncClient(...)`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
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


class AsyncClient:
    """One org's API at `base_url` (a journeys server, or MedChat's with `extensions=False`).

    Use it as an async context manager, or await `close()`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        org_id: str,
        *,
        extensions: bool = True,
        timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api = Api(org_id, extensions)
        self.retry = retry
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": "journeys-client/0.1"},
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def _call(self, call: Call[T]) -> T:
        self.api.check(call)
        for attempt in range(self.retry.retries + 1):
            try:
                response = await self.http.request(call.method, call.path, json=call.body, params=call.params)
            except httpx.ConnectError as exc:  # nothing was sent
                if attempt == self.retry.retries:
                    raise JourneysError(0, [f"cannot connect: {exc}"]) from exc
                await asyncio.sleep(self.retry.delay(attempt, None))
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retry.retries:
                await asyncio.sleep(self.retry.delay(attempt, error_of(response).retry_after))
                continue
            if response.status_code >= 400:
                raise error_of(response)
            return call.read(response)
        raise AssertionError("unreachable")

    # -- the MedChat routes
    async def journeys(self) -> list[Journey]:
        return await self._call(self.api.journeys())

    async def trigger(
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
                await self._call(self.api.bulk(journey_id, chunk, time_zone, flow_id))
            except JourneysError as exc:
                if sizes:
                    raise BulkInterrupted(sum(sizes), exc) from exc
                raise
            sizes.append(len(chunk))
        return TriggerResult(sum(sizes), len(sizes), tuple(sizes))

    async def search(
        self,
        journey_id: str,
        filter: Filter | None = None,  # noqa: A002 (the API's word)
        *,
        include_parameters: bool = True,
        page_size: int = 100,
        limit: int | None = None,
    ) -> AsyncIterator[Instance]:
        """Every matching instance, newest first, fetched a page at a time as you iterate."""
        skip, seen = 0, 0
        while limit is None or seen < limit:
            take = page_size if limit is None else min(page_size, limit - seen)
            page = await self._call(self.api.search(journey_id, filter, include_parameters, skip, take))
            for item in page:
                yield item
            seen += len(page)
            skip += len(page)
            if len(page) < take:
                return

    async def instance(self, journey_id: str, instance_id: str) -> InstanceDetail:
        return await self._call(self.api.instance(journey_id, instance_id))

    async def cancel(self, journey_id: str, instance_id: str) -> None:
        await self._call(self.api.cancel(journey_id, instance_id))

    # -- journeys extensions
    async def cancel_matching(
        self,
        journey_id: str,
        filter: Filter | None = None,
        *,
        all: bool = False,
        dry_run: bool = False,  # noqa: A002
    ) -> CancelResult:
        """Cancel every InProgress instance matching `filter` (or `all` of them)."""
        return await self._call(self.api.cancel_matching(journey_id, filter, all, dry_run))

    async def reply(self, from_number: str, body: str) -> ReplyResult:
        return await self._call(self.api.reply(from_number, body))

    async def replies(self, *, unmatched: bool = False, limit: int = 100) -> list[Reply]:
        return await self._call(self.api.replies(unmatched, limit))

    async def create_webhook(self, url: str, secret: str, event_types: list[str]) -> Webhook:
        return await self._call(self.api.create_webhook(url, secret, event_types))

    async def webhooks(self) -> list[Webhook]:
        return await self._call(self.api.webhooks())

    async def verify_webhook(self, webhook_id: str) -> Webhook:
        return await self._call(self.api.verify_webhook(webhook_id))

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._call(self.api.delete_webhook(webhook_id))

    async def deliveries(
        self, webhook_id: str, *, status: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        return await self._call(self.api.deliveries(webhook_id, status, limit))

    async def opt_outs(self, *, phone: str | None = None, limit: int = 100) -> list[OptOut]:
        return await self._call(self.api.opt_outs(phone, limit))

    async def add_opt_out(self, phone: str, reason: str | None = None) -> OptOut:
        return await self._call(self.api.add_opt_out(phone, reason))

    async def remove_opt_out(self, phone: str) -> None:
        await self._call(self.api.remove_opt_out(phone))

    async def request(self, call: Call[Any]) -> Any:
        """Send a call built with `self.api` (for what has no method here)."""
        return await self._call(call)
