"""The application factory: settings, database, migrations, worker, routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from journeys import __version__
from journeys.accounts.audit_buffer import AuditBuffer
from journeys.api import docs, errors, extensions, observe
from journeys.api import fhir as fhir_routes
from journeys.api import medchat as routes
from journeys.api import twilio_inbound as inbound_routes
from journeys.api import twilio_status as twilio_routes
from journeys.api import webhooks as webhook_routes
from journeys.api.guard import BodyDeadline, SecurityHeaders
from journeys.api.inputs import no_nul_in_path_or_query
from journeys.api.limits import RateLimits
from journeys.api.openapi import build as build_openapi
from journeys.clock import Clock
from journeys.config import Settings
from journeys.console.app import install as install_console
from journeys.logs import guard_third_party
from journeys.registered_apis.calls import RegisteredApis
from journeys.store.db import create_db_engine
from journeys.store.migrate import upgrade
from journeys.wiring import build_worker

log = logging.getLogger("journeys.api")


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, run_worker: bool | None = None
) -> FastAPI:
    """Build the app. The database is migrated to head here; with `run_worker`, the worker runs
    in the same process for the app's lifetime."""
    settings = settings or Settings()
    clock = clock or settings.clock()
    guard_third_party()  # no library logs URLs (patient data, credentials) through this app
    engine = create_db_engine(
        settings.database_url, pool_size=settings.pool_size, max_overflow=settings.max_overflow
    )
    upgrade(engine)
    worker = build_worker(engine, settings, clock)
    start_worker = settings.worker_enabled if run_worker is None else run_worker

    audit_buffer = AuditBuffer(engine)  # token reads' audit entries (journeys.accounts.audit_buffer)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        audit_buffer.start()
        if start_worker:
            worker.start()
        try:
            yield
        finally:
            worker.stop()
            audit_buffer.stop()
            engine.dispose()

    app = FastAPI(
        title="journeys",
        version=__version__,
        description="Patient-journey engine; wire-compatible with the MedChat Journeys API.",
        lifespan=lifespan,
        docs_url=None,  # served by journeys.api.docs, from the package rather than a CDN
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        dependencies=[Depends(no_nul_in_path_or_query)],
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.engine = engine
    app.state.worker = worker
    # Calls to the orgs' registered APIs from a request (a FHIR feed fetching a Patient).
    app.state.registered_apis = RegisteredApis(engine, settings.secret_box(), settings.outbound_policy())
    app.state.vault = worker.vault  # each org's key for patient data (journeys.keys.phi)
    app.state.audit_buffer = audit_buffer
    app.state.wake_worker = worker.wake.set
    errors.install(app)
    _install_routes(app)
    _install_guards(app, settings, clock)
    app.state.metrics = observe.Metrics(engine, clock)
    observe.install(app, app.state.metrics)  # /healthz, /readyz, /metrics; request ids, access lines
    _install_openapi(app)
    return app


ROUTERS = (
    routes.router,
    extensions.router,
    twilio_routes.router,
    webhook_routes.router,
    inbound_routes.router,
    docs.router,
    fhir_routes.router,
)


def _install_routes(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
    console = install_console(app)  # the staff console's pages under /console
    app.state.routers = (*ROUTERS, *console)  # for a 405's Allow header (errors.allowed_methods)


def _install_guards(app: FastAPI, settings: Settings, clock: Clock) -> None:
    """Outermost last: security headers on every answer (429s and 408s included)."""
    app.add_middleware(BodyDeadline, seconds=settings.request_body_timeout_seconds)
    app.add_middleware(RateLimits, limits=settings.limits(), clock=clock)
    public_https = (settings.public_base_url or "").startswith("https://")
    app.add_middleware(SecurityHeaders, public_https=public_https)


def _install_openapi(app: FastAPI) -> None:
    """The OpenAPI document, built once on first use (journeys.api.openapi)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app.title, app.version, app.description, app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
