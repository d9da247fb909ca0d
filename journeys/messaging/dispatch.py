"""Delivering the outbox.

Messages of orgs without a provider for their channel go to the built-in outbox provider (one
set-based statement: "sent" means recorded). Messages of orgs with a provider (Twilio, SMTP)
are leased in batches (status `sending`, `send_after` = the lease's expiry), sent outside any
transaction with their idempotency key, and their outcome recorded if the lease is still
theirs. A sender that dies mid-send lets the lease expire and the message is sent again: at
least once. Transient failures are retried with exponential backoff and jitter (honouring a
provider's Retry-After); permanent ones fail the message with the provider's error code.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from journeys.backoff import backoff
from journeys.clock import Clock
from journeys.config import Settings
from journeys.keys.box import SecretKeyMissing
from journeys.messaging.org_channels import org_channel
from journeys.messaging.providers import registry
from journeys.messaging.providers.base import OutboundMessage, Provider, SendResult
from journeys.messaging.queue import recipient_of
from journeys.messaging.status import apply_early_status
from journeys.store import channels as repo
from journeys.store import messages
from journeys.store.db import read_only, transaction
from journeys.timeline import event_row
from journeys.webhooks.events import record_events

log = logging.getLogger("journeys.channels")

MAX_SEND_ATTEMPTS = 10
SEND_LEASE = timedelta(seconds=60)
RETRY_BASE = timedelta(seconds=5)
RETRY_MAX = timedelta(hours=1)


def send_retry_delay(attempt: int) -> timedelta:
    return backoff(attempt, RETRY_BASE, RETRY_MAX)


def check_secret_key(engine: Engine, settings: Settings) -> None:
    """Refuse to start when providers are configured but JOURNEYS_SECRET_KEY is not set."""
    with read_only(engine) as conn:
        configured = repo.any_channels(conn)
    if configured and not settings.secret_key:
        raise SecretKeyMissing(
            "delivery providers are configured (journeys channel list) but JOURNEYS_SECRET_KEY is not set; "
            "set it to the key the credentials were stored with"
        )


class Dispatcher:
    def __init__(
        self, engine: Engine, clock: Clock, settings: Settings | None = None, *, batch_size: int = 50
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.settings = settings or Settings.defaults()
        self.box = self.settings.secret_box()
        self.vault = self.settings.vault(engine)  # messages' subjects and bodies are sealed
        self.batch_size = batch_size
        self._providers: dict[tuple[str, str], tuple[Any, Provider]] = {}

    def deliver_due(self) -> int:
        """Deliver what is due now; returns how many messages were handed over."""
        now = self.clock.now()
        with transaction(self.engine) as conn:
            delivered = messages.deliver_to_outbox(conn, now)
        with transaction(self.engine) as conn:
            claimed = repo.claim_for_sending(conn, now, now + SEND_LEASE, self.batch_size)
        for row in claimed:
            if self._send(row):
                delivered += 1
        return delivered

    def _provider(self, org_id: str, channel: str) -> Provider | None:
        """The org's provider for `channel` (built once per configuration), or None when the
        channel was removed meanwhile."""
        with read_only(self.engine) as conn:
            found = org_channel(conn, org_id, channel)
        if found is None:
            return None
        key = (org_id, channel)
        cached = self._providers.get(key)
        if cached is not None and cached[0] == found.sealed:  # a new seal differs every time
            return cached[1]
        provider = registry.build(found.provider, self.box.open(found.sealed), self.settings)
        self._providers[key] = (found.sealed, provider)
        return provider

    def _send(self, row: dict[str, Any]) -> bool:
        """Hand one leased message to its provider and record the outcome; True when sent."""
        attempt = int(row["attempts"])
        result, provider_name = self._attempt(row)
        now = self.clock.now()
        values, kind, detail = _outcome(row, attempt, result, provider_name, now)
        with transaction(self.engine) as conn:
            recorded = repo.record_result(conn, row["org_id"], row["message_id"], attempt, values)
            if recorded:
                event = event_row(
                    row["org_id"], row["instance_id"], now, row["flow_id"], None, row["step_id"], kind, detail
                )
                record_events(conn, [event])
        if recorded and result.ok and result.provider_message_id:
            # A status callback may have come before this commit: it was held; apply it now.
            with transaction(self.engine) as conn:
                apply_early_status(
                    conn, row["org_id"], result.provider_message_id, self.clock.now(), message_known=True
                )
        return bool(result.ok)

    def _attempt(self, row: dict[str, Any]) -> tuple[SendResult, str]:
        """Send once; the result and the provider's name. Never raises."""
        try:
            phi = self.vault.org(row["org_id"])  # KeyUnavailable: another key; retried like any error
            message = OutboundMessage(
                org_id=row["org_id"],
                message_id=row["message_id"],
                channel=row["channel"],
                to=recipient_of(phi, row),
                subject=None if row["subject"] is None else phi.open(row["subject"]),
                body=phi.open(row["body"]),
                html=None if row["html"] is None else phi.open(row["html"]),
                idempotency_key=row["idempotency_key"],
            )
            provider = self._provider(row["org_id"], row["channel"])
            if provider is None:  # the channel was removed meanwhile: the built-in outbox takes it
                return SendResult(ok=True, provider_message_id=None), "outbox"
            return provider.send(message), provider.name
        except Exception as exc:  # a provider bug or bad configuration: retry, never crash
            log.error("provider error for message %s: %s", row["message_id"], type(exc).__name__)
            return SendResult(ok=False, error=type(exc).__name__), "unknown"


def _outcome(
    row: dict[str, Any], attempt: int, result: SendResult, provider_name: str, now: datetime
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """What a send's result changes in the outbox row, its event's kind and detail: sent,
    failed (permanently, or after MAX_SEND_ATTEMPTS), or queued again after a delay."""
    detail: dict[str, Any] = {"messageId": row["message_id"], "provider": provider_name, "attempt": attempt}
    if result.ok:
        values: dict[str, Any] = {
            "status": "sent",
            "sent_at": now,
            "provider": provider_name,
            "provider_message_id": result.provider_message_id,
            "last_error": None,
        }
        return values, f"{row['channel']}_sent", detail
    detail.update({"error": result.error, "errorCode": result.error_code})
    if result.permanent or attempt >= MAX_SEND_ATTEMPTS:
        values = {"status": "failed", "last_error": result.error, "error_code": result.error_code}
        return values, f"{row['channel']}_failed", detail
    delay = timedelta(seconds=result.retry_after) if result.retry_after else send_retry_delay(attempt)
    values = {
        "status": "queued",
        "send_after": now + delay,
        "last_error": result.error,
        "error_code": result.error_code,
    }
    detail["retryInSeconds"] = int(delay.total_seconds())
    return values, f"{row['channel']}_retry", detail
