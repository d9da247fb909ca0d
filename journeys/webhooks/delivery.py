"""Event webhooks: signing, the endpoint challenge, and the sender the worker runs.

Each delivery is POSTed as JSON with `X-Journeys-Signature: t=<unix seconds>,v1=<hex>`, the hex
HMAC-SHA256 under the subscription's secret of `f"{t}.{raw body}"`. Receivers should reject a
timestamp more than 5 minutes from their clock (the replay window). Failures are retried with
exponential backoff (30 s doubling, capped at 1 h, with jitter); a delivery is given up only
after 24 h and at least 8 attempts. Per subscription and instance, deliveries go out in order.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets as pysecrets
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from journeys import outbound
from journeys.backoff import backoff
from journeys.clock import Clock
from journeys.config import Settings
from journeys.keys.box import SecretKeyMissing
from journeys.store import webhooks as repo
from journeys.store.db import transaction

log = logging.getLogger("journeys.webhooks")

TIMEOUT_SECONDS = 10.0
LEASE = timedelta(seconds=60)
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(hours=24)
MIN_ATTEMPTS = 8
REPLAY_WINDOW_SECONDS = 300
USER_AGENT = "journeys-webhooks/1"


def hmac_hex(secret: str, message: str) -> str:
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={hmac_hex(secret, f'{timestamp}.' + body.decode('utf-8'))}"


def retry_delay(attempts: int) -> timedelta:
    """Backoff after the `attempts`-th failed attempt: 30 s doubling, capped at 1 h, ±20 % jitter."""
    return backoff(attempts, FIRST_RETRY, MAX_RETRY, jitter=(0.8, 1.2))


class VerificationFailed(Exception):
    pass


def challenge(url: str, secret: str, policy: outbound.OutboundPolicy) -> None:
    """GET url?challengeCode=<random>; the endpoint must answer 200 with hex HMAC-SHA256(secret,
    code). Raises VerificationFailed with a reason (no response body is quoted, and a network
    failure is not told apart from another: the text must not help scan ports)."""
    code = pysecrets.token_hex(16)
    with outbound.client(policy, TIMEOUT_SECONDS) as client:
        try:
            resp = client.get(url, params={"challengeCode": code}, headers={"User-Agent": USER_AGENT})
        except outbound.AddressNotAllowed:
            raise VerificationFailed(outbound.ADDRESS_NOT_ALLOWED) from None
        except (httpx.HTTPError, httpx.InvalidURL, ValueError):
            raise VerificationFailed("the endpoint could not be reached") from None
        if resp.status_code != 200:
            raise VerificationFailed(f"the endpoint answered the challenge with HTTP {resp.status_code}")
        if not hmac.compare_digest(resp.text.strip().lower(), hmac_hex(secret, code)):
            raise VerificationFailed(
                "the endpoint's answer to the challenge is not the hex HMAC-SHA256 of challengeCode "
                "under the webhook's secret"
            )


class WebhookSender:
    """Delivers due webhook deliveries (the worker calls `deliver_due` after each batch)."""

    def __init__(
        self, engine: Engine, clock: Clock, settings: Settings | None = None, *, batch_size: int = 50
    ) -> None:
        settings = settings or Settings.defaults()
        self.engine = engine
        self.clock = clock
        self.box = settings.secret_box()
        self.batch_size = batch_size
        self.policy = settings.outbound_policy()
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = outbound.client(self.policy, TIMEOUT_SECONDS)
        return self._client

    def deliver_due(self, max_rounds: int = 100) -> int:
        """Send what is due now, round after round (the next event of an instance becomes due
        once the previous one is delivered); returns how many were delivered."""
        delivered = 0
        for _ in range(max_rounds):
            now = self.clock.now()
            with transaction(self.engine) as conn:
                rows = repo.claim_due(conn, now, now + LEASE, self.batch_size)
            if not rows:
                break
            progressed = False
            for row in rows:
                ok = self._send(row)
                delivered += ok
                progressed = progressed or ok
            if not progressed:
                break
        return delivered

    def _send(self, row: dict[str, Any]) -> bool:
        now = self.clock.now()
        attempt = int(row["attempts"] or 0) + 1
        status_code: int | None = None
        error: str | None = None
        try:
            secret = str(self.box.open(row["secret_encrypted"])["secret"])
        except SecretKeyMissing as exc:
            secret, error = "", str(exc)
        if not error:
            body = row["payload"].encode("utf-8")
            ts = int(now.timestamp())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-Journeys-Event": row["event_type"],
                "X-Journeys-Delivery": row["delivery_id"],
                "X-Journeys-Signature": signature_header(secret, ts, body),
            }
            try:
                resp = self._http().post(row["url"], content=body, headers=headers)
                status_code = resp.status_code
                if not 200 <= status_code < 300:
                    error = f"HTTP {status_code}"
            except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
                error = outbound.failure_text(exc)
        values: dict[str, Any] = {"attempts": attempt, "last_status_code": status_code, "last_error": error}
        if error is None:
            values.update(status="delivered", delivered_at=now, next_attempt_at=None)
        elif now - row["created_at"] >= GIVE_UP_AFTER and attempt >= MIN_ATTEMPTS:
            values.update(status="failed", next_attempt_at=None)
            log.warning(
                "webhook delivery %s of org %s given up: %s", row["delivery_id"], row["org_id"], error
            )
        else:
            values.update(status="pending", next_attempt_at=now + retry_delay(attempt))
        with transaction(self.engine) as conn:
            repo.record_attempt(conn, row["org_id"], row["delivery_id"], values)
        return error is None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
