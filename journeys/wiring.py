"""Building a worker from the settings: the same for `journeys serve` (the worker in the API's
process) and `journeys worker`; its chores (the retention sweep) come from the domains that own
them, which the engine does not import."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine

from journeys.clock import Clock
from journeys.config import Settings
from journeys.engine.worker import Worker
from journeys.lifecycle.retention import RetentionSweep
from journeys.messaging.dispatch import Dispatcher, check_secret_key
from journeys.registered_apis.calls import RegisteredApis


def build_worker(engine: Engine, settings: Settings, clock: Clock) -> Worker:
    """A worker with its dispatcher, sized by the settings. Raises SecretKeyMissing when
    delivery providers are configured but JOURNEYS_SECRET_KEY is not set."""
    check_secret_key(engine, settings)
    sweep = RetentionSweep(
        engine,
        settings.retention_days,
        timedelta(seconds=settings.retention_sweep_seconds),
        settings.retention_batch_size,
    )
    return Worker(
        engine,
        clock,
        batch_size=settings.worker_batch_size,
        poll_interval=settings.worker_poll_interval,
        lease=timedelta(seconds=settings.worker_lease_seconds),
        dispatcher=Dispatcher(engine, clock, settings, batch_size=settings.send_batch_size),
        chores=[sweep] if settings.retention_purge else [],
        apis=RegisteredApis(engine, settings.secret_box(), settings.outbound_policy()),
    )
