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
import random
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from journeys.clock import Clock
from journeys.config import Settings
from journeys.messaging.providers import registry
from journeys.messaging.providers.base import OutboundMessage, Provider, SendResult
from journeys.messaging.status import apply_early_status
from journeys.secrets import SecretBox, SecretKeyMissing
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
    ceiling = min(RETRY_BASE * (2 ** min(max(attempt - 1, 0), 20)), RETRY_MAX)
    return timedelta(seconds=random.uniform(ceiling.total_seconds() / 2, ceiling.total_seconds()))


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
        self.box = SecretBox(self.settings.secret_key)
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

    def _provider(self, org_id: str, channel: str) -> Provider:
        with read_only(self.engine) as conn:
            rows = repo.list_channels(conn, org_id)
        row = next(r for r in rows if r["channel"] == channel)
        key = (org_id, channel)
        cached = self._providers.get(key)
        if cached is not None and cached[0] == row["config_encrypted"]:  # a new seal differs every time
            return cached[1]
        provider = registry.build(row["provider"], self.box.open(row["config_encrypted"]), self.settings)
        self._providers[key] = (row["config_encrypted"], provider)
        return provider

    def _send(self, row: dict[str, Any]) -> bool:
        message = OutboundMessage(
            org_id=row["org_id"],
            message_id=row["message_id"],
            channel=row["channel"],
            to=row["to_address"],
            subject=row["subject"],
            body=row["body"],
            html=row["html"],
            idempotency_key=row["idempotency_key"],
        )
        attempt = int(row["attempts"])
        try:
            provider = self._provider(row["org_id"], row["channel"])
            result = provider.send(message)
            provider_name = provider.name
        except StopIteration:  # the channel was removed meanwhile: the built-in outbox takes it
            result, provider_name = SendResult(ok=True, provider_message_id=None), "outbox"
        except Exception as exc:  # a provider bug or bad configuration: retry, never crash
            log.error("provider error for message %s: %s", row["message_id"], type(exc).__name__)
            result, provider_name = SendResult(ok=False, error=type(exc).__name__), "unknown"
        now = self.clock.now()
        detail: dict[str, Any] = {
            "messageId": row["message_id"],
            "provider": provider_name,
            "attempt": attempt,
        }
        if result.ok:
            values: dict[str, Any] = {
                "status": "sent",
                "sent_at": now,
                "provider": provider_name,
                "provider_message_id": result.provider_message_id,
                "last_error": None,
            }
            kind = f"{row['channel']}_sent"
        elif result.permanent or attempt >= MAX_SEND_ATTEMPTS:
            values = {"status": "failed", "last_error": result.error, "error_code": result.error_code}
            kind = f"{row['channel']}_failed"
            detail.update({"error": result.error, "errorCode": result.error_code})
        else:
            delay = timedelta(seconds=result.retry_after) if result.retry_after else send_retry_delay(attempt)
            values = {
                "status": "queued",
                "send_after": now + delay,
                "last_error": result.error,
                "error_code": result.error_code,
            }
            kind = f"{row['channel']}_retry"
            detail.update(
                {
                    "error": result.error,
                    "errorCode": result.error_code,
                    "retryInSeconds": int(delay.total_seconds()),
                }
            )
        with transaction(self.engine) as conn:
            recorded = repo.record_result(conn, row["org_id"], row["message_id"], attempt, values)
            if recorded:
                record_events(
                    conn,
                    [
                        event_row(
                            row["org_id"],
                            row["instance_id"],
                            now,
                            row["flow_id"],
                            None,
                            row["step_id"],
                            kind,
                            detail,
                        )
                    ],
                )
        if recorded and result.ok and result.provider_message_id:
            # A status callback may have come before this commit: it was held; apply it now.
            with transaction(self.engine) as conn:
                apply_early_status(
                    conn, row["org_id"], result.provider_message_id, self.clock.now(), message_known=True
                )
        return bool(result.ok)
