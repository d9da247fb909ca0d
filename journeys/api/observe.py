"""Operating the server: liveness (`/healthz`), readiness (`/readyz`), Prometheus metrics
(`/metrics`), and the HTTP middleware behind them — a request id per request, one access line
per request, request latency histograms.

Labels never carry raw paths (they hold ids): a request is labelled with its route template
(`/chatbotapi/external/orgs/{orgId}/journeys/{chatBotId}/instances/search`), its method and its
status class (`2xx`). Access lines carry the same, never the path or query.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from journeys import __version__
from journeys.clock import Clock
from journeys.errors import Unauthorized
from journeys.logs import accept_request_id, request_id
from journeys.store.db import check_database, read_only
from journeys.store.metrics import Backlog, Snapshot, snapshot

log = logging.getLogger("journeys.api")
access = logging.getLogger("journeys.access")

router = APIRouter(include_in_schema=False)

_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
_QUIET = {"/healthz", "/readyz", "/metrics"}  # probes and scrapes: counted, not logged
_JSON = "application/json"


# ------------------------------------------------------------------ probes
@router.get("/healthz")
async def healthz() -> Response:
    """Liveness: the process answers. Touches nothing else."""
    return Response(b'{"status":"ok"}', media_type=_JSON)


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Readiness: the database answers `SELECT 1` within JOURNEYS_READY_TIMEOUT seconds.
    503 otherwise, with a reason that names no host, database or error text."""
    state = request.app.state
    timeout: float = state.settings.ready_timeout
    reason = None
    try:
        with anyio.fail_after(timeout):
            await anyio.to_thread.run_sync(check_database, state.engine, timeout, abandon_on_cancel=True)
    except TimeoutError:
        reason = "the database did not answer in time"
        log.warning("readiness check failed: timed out after %.1f s", timeout)
    except Exception as exc:  # any failure means "not ready"; the class only, never the text
        reason = "the database is unavailable"
        log.warning("readiness check failed: %s", type(exc).__name__)
    if reason is None:
        return Response(b'{"status":"ok"}', media_type=_JSON)
    body = b'{"status":"unavailable","reason":"' + reason.encode() + b'"}'
    return Response(body, status_code=503, media_type=_JSON, headers={"Retry-After": "5"})


# ------------------------------------------------------------------ metrics
@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format. With JOURNEYS_METRICS_TOKEN set, only for `Bearer <token>`."""
    expected: str | None = request.app.state.settings.metrics_token
    if expected:
        kind, _, given = request.headers.get("authorization", "").partition(" ")
        if kind.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise Unauthorized(
                "missing or invalid metrics token (Authorization: Bearer <JOURNEYS_METRICS_TOKEN>)",
                realm="journeys-metrics",
            )
    body = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class DatabaseCollector(Collector):
    """Gauges and counters read from the database at scrape time (journeys.store.metrics)."""

    def __init__(self, engine: Any, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        now = self.clock.now()
        try:
            with read_only(self.engine) as conn:
                snap = snapshot(conn, now)
        except Exception as exc:
            log.warning("metrics: the database could not be read: %s", type(exc).__name__)
            snap = None
        yield _gauge(
            "journeys_database_up", "1 when the last scrape could read the database", int(snap is not None)
        )
        if snap is not None:
            yield from _snapshot_metrics(snap, now)
        yield _gauge(
            "journeys_metrics_database_seconds",
            "How long this scrape's database queries took",
            time.perf_counter() - started,
        )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(name: str, doc: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def _age(backlog: Backlog, now: Any) -> float:
    return max(0.0, (now - backlog.oldest).total_seconds()) if backlog.oldest is not None else 0.0


def _snapshot_metrics(s: Snapshot, now: Any) -> Iterator[Metric]:
    yield _labelled(
        "journeys_instances",
        "Active journey instances (ended ones are not counted at scrape time)",
        "status",
        {"InProgress": s.instances_active},
    )
    yield _gauge("journeys_due_instances", "Active instances whose next step is due now", s.due.count)
    yield _gauge(
        "journeys_due_oldest_age_seconds",
        "Seconds since the earliest due time of work that is due (0 when none is)",
        _age(s.due, now),
    )
    yield _labelled(
        "journeys_outbox_messages",
        "Outbox messages not yet sent, by status",
        "status",
        {"queued": s.outbox_queued, "sending": s.outbox_sending},
    )
    yield _gauge(
        "journeys_outbox_due_messages", "Queued messages whose send time has come", s.outbox_due.count
    )
    yield _gauge(
        "journeys_outbox_oldest_due_age_seconds",
        "Seconds since the send time of the oldest queued message that is due (0 when none is)",
        _age(s.outbox_due, now),
    )
    yield _labelled(
        "journeys_webhook_deliveries",
        "Event webhook deliveries not yet delivered or given up, by status",
        "status",
        {"pending": s.webhooks_pending, "sending": s.webhooks_sending},
    )
    yield _gauge(
        "journeys_webhook_due_deliveries",
        "Pending deliveries whose attempt time has come",
        s.webhooks_due.count,
    )
    yield _gauge(
        "journeys_webhook_oldest_due_age_seconds",
        "Seconds since the attempt time of the oldest pending delivery that is due (0 when none is)",
        _age(s.webhooks_due, now),
    )
    yield CounterMetricFamily(
        "journeys_worker_steps", "Steps run by all workers (from their heartbeats)", value=s.worker_steps
    )
    yield CounterMetricFamily(
        "journeys_worker_batches",
        "Batches run by all workers (from their heartbeats)",
        value=s.worker_batches,
    )
    yield _gauge("journeys_workers_alive", "Workers that sent a heartbeat in the last 30 s", s.workers_alive)


class Metrics:
    """The app's own registry (not prometheus_client's global one: several apps may live in one
    process, as in the tests)."""

    def __init__(self, engine: Any, clock: Clock) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "journeys_http_request_duration_seconds",
            "HTTP requests by route template, method and status class",
            ["route", "method", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        info = GaugeMetricFamily("journeys_build_info", "The running version", labels=["version"])
        info.add_metric([__version__], 1)
        self.registry.register(_Static([info]))
        self.registry.register(DatabaseCollector(engine, clock))
        ProcessCollector(registry=self.registry)


class _Static(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


# ------------------------------------------------------------------ the middleware
class ObserveMiddleware:
    """Outermost (it wraps even the error middleware, so a 500 is timed, logged and carries the
    request id): sets the request id for the request's context and returns it in `X-Request-Id`,
    observes the latency histogram and writes one access line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), b"")
        rid = accept_request_id(incoming.decode("latin-1") if incoming else None)
        # Not reset afterwards: uvicorn runs each request in a task of its own, and its log line
        # for an exception that escaped the app is written after this returns.
        request_id.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)["X-Request-Id"] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope.get("method", "") if scope.get("method") in _METHODS else "other"
        self.metrics.requests.labels(route, method, f"{status // 100}xx").observe(seconds)
        if route in _QUIET:
            return
        ms = round(seconds * 1000, 1)
        extra = {"http_method": method, "http_route": route, "http_status": status, "duration_ms": ms}
        access.info("%s %s %d %.1f ms", method, route, status, ms, extra=extra)


def install(app: FastAPI, metrics: Metrics) -> None:
    """Mount the routes and wrap the whole middleware stack (error handling included)."""
    app.include_router(router)
    build: Callable[[], ASGIApp] = app.build_middleware_stack

    def build_observed() -> ASGIApp:
        return ObserveMiddleware(build(), metrics)

    app.build_middleware_stack = build_observed  # type: ignore[method-assign]
