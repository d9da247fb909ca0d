"""Webhook subscription services (used by the API and the CLI).

Creating or re-verifying a subscription challenges the endpoint (outside any transaction):
events are only recorded for verified subscriptions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import Engine

from journeys.definitions.values import NUL_PROBLEM, has_nul
from journeys.errors import JourneysError, Kind
from journeys.ids import new_id
from journeys.keys.box import SecretBox
from journeys.outbound import ADDRESS_NOT_ALLOWED, AddressNotAllowed, OutboundPolicy, mask_url
from journeys.store import webhooks as repo
from journeys.store.db import read_only, transaction
from journeys.webhooks import delivery as sender
from journeys.webhooks.events import EVENT_TYPES

DELIVERY_STATUSES = ("pending", "sending", "delivered", "failed")
MAX_SECRET_LENGTH = 512
MAX_URL_LENGTH = 2048


class WebhookError(JourneysError):
    """A subscription request failed; `kind` says how, `errors` what (no secrets, no PHI)."""


def _validate(url: Any, secret: Any, event_types: Any) -> tuple[str, str, list[str]]:
    errors: list[str] = []
    if not isinstance(url, str) or not url.strip():
        errors.append("url is required")
    elif has_nul(url):
        errors.append(f"url {NUL_PROBLEM}")
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in url.strip()):
        errors.append("url must not contain control characters (line breaks, tabs)")
    elif len(url) > MAX_URL_LENGTH:
        errors.append(f"url must be at most {MAX_URL_LENGTH} characters long")
    else:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors.append("url must be an absolute http or https URL")
    if not isinstance(secret, str) or not secret:
        errors.append("secret is required (a shared secret used to sign deliveries)")
    elif len(secret) < 16 or len(secret) > MAX_SECRET_LENGTH:
        errors.append(f"secret must be 16 to {MAX_SECRET_LENGTH} characters long")
    types: list[str] = []
    if (
        not isinstance(event_types, list)
        or not event_types
        or not all(isinstance(t, str) for t in event_types)
    ):
        errors.append('eventTypes must be a non-empty list of event types (or ["*"] for all)')
    else:
        types = list(dict.fromkeys(t.strip() for t in event_types))
        unknown = [t for t in types if t != "*" and t not in EVENT_TYPES]
        if unknown:
            errors.append(f"unknown event types: {', '.join(unknown)} (known: {', '.join(EVENT_TYPES)}, *)")
        if "*" in types:
            types = ["*"]
    if errors:
        raise WebhookError(errors)
    return str(url).strip(), str(secret), types


@dataclass(frozen=True, slots=True)
class Subscription:
    """A webhook subscription as shown to its org (never its secret)."""

    id: str
    url: str  # credentials in it masked: never shown back
    event_types: tuple[str, ...]
    verified_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event's delivery to a subscription: its attempts and the last answer."""

    id: str
    event_type: str
    instance_id: str | None
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None  # only while pending
    created_at: datetime
    delivered_at: datetime | None


def _subscription(row: dict[str, Any]) -> Subscription:
    return Subscription(
        id=str(row["subscription_id"]),
        url=mask_url(str(row["url"])),
        event_types=tuple(str(row["event_types"]).split()),
        verified_at=row["verified_at"],
        created_at=row["created_at"],
    )


def _delivery(row: dict[str, Any]) -> Delivery:
    return Delivery(
        id=str(row["delivery_id"]),
        event_type=str(row["event_type"]),
        instance_id=row["instance_id"],
        status=str(row["status"]),
        attempts=int(row["attempts"]),
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
    )


def _get(engine: Engine, org_id: str, subscription_id: str) -> dict[str, Any]:
    with read_only(engine) as conn:
        row = repo.get_subscription(conn, org_id, subscription_id)
    if row is None:
        raise WebhookError([f"webhook {subscription_id} not found"], kind=Kind.NOT_FOUND)
    return row


def _verify(
    engine: Engine, box: SecretBox, policy: OutboundPolicy, row: dict[str, Any], now: datetime
) -> dict[str, Any]:
    secret = str(box.open(row["secret_encrypted"])["secret"])  # SecretKeyMissing: unavailable
    try:
        sender.challenge(row["url"], secret, policy)
    except sender.VerificationFailed as exc:
        raise WebhookError(
            [f"webhook {row['subscription_id']} was not verified: {exc} (it is kept, unverified)"]
        ) from None
    with transaction(engine) as conn:
        repo.set_verified(conn, row["org_id"], row["subscription_id"], now)
    return {**row, "verified_at": now}


def create(
    engine: Engine,
    box: SecretBox,
    org_id: str,
    url: Any,
    secret: Any,
    event_types: Any,
    now: datetime,
    policy: OutboundPolicy,
) -> Subscription:
    """Store the subscription, then challenge the endpoint. Raises WebhookError (400 when the
    challenge fails; the subscription stays, unverified, with its id in the message; 400 and
    nothing stored when the URL's address is not allowed by the outbound policy)."""
    url, secret, types = _validate(url, secret, event_types)
    try:
        policy.check_url(url)
    except AddressNotAllowed:
        raise WebhookError([f"url: {ADDRESS_NOT_ALLOWED}"]) from None
    sealed = box.seal({"secret": secret})  # SecretKeyMissing: unavailable
    row = {
        "org_id": org_id,
        "subscription_id": new_id(),
        "url": url,
        "secret_encrypted": sealed,
        "event_types": " ".join(types),
        "verified_at": None,
        "created_at": now,
        "disabled_at": None,
    }
    with transaction(engine) as conn:
        repo.insert_subscription(conn, row)
    return _subscription(_verify(engine, box, policy, row, now))


def verify(
    engine: Engine,
    box: SecretBox,
    org_id: str,
    subscription_id: str,
    now: datetime,
    policy: OutboundPolicy,
) -> Subscription:
    row = _get(engine, org_id, subscription_id)
    return _subscription(_verify(engine, box, policy, row, now))


def list_all(engine: Engine, org_id: str) -> list[Subscription]:
    with read_only(engine) as conn:
        return [_subscription(r) for r in repo.list_subscriptions(conn, org_id)]


def delete(engine: Engine, org_id: str, subscription_id: str, now: datetime) -> None:
    with transaction(engine) as conn:
        if not repo.disable(conn, org_id, subscription_id, now):
            raise WebhookError([f"webhook {subscription_id} not found"], kind=Kind.NOT_FOUND)


def deliveries(
    engine: Engine, org_id: str, subscription_id: str | None, status: str | None = None, limit: int = 100
) -> list[Delivery]:
    if status is not None and status not in DELIVERY_STATUSES:
        raise WebhookError([f"status must be one of {', '.join(DELIVERY_STATUSES)}"])
    if not 1 <= limit <= 1000:
        raise WebhookError(["limit must be between 1 and 1000"])
    if subscription_id is not None:
        _get(engine, org_id, subscription_id)
    with read_only(engine) as conn:
        return [_delivery(r) for r in repo.list_deliveries(conn, org_id, subscription_id, status, limit)]


def parse_event_types(text: str) -> Sequence[str]:
    """The CLI's --events: a comma list, or *."""
    return [t.strip() for t in text.split(",") if t.strip()]
