"""What a delivery provider is: it sends one message and says how that went."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OutboundMessage:
    org_id: str
    message_id: str
    channel: str  # sms | email
    to: str
    subject: str | None
    body: str
    html: str | None
    idempotency_key: str


@dataclass(frozen=True)
class SendResult:
    """`ok`: accepted by the provider. Otherwise `permanent` says whether retrying can help;
    `retry_after` (seconds) is the provider's own back-off request (e.g. HTTP 429)."""

    ok: bool
    provider_message_id: str | None = None
    permanent: bool = False
    error: str | None = None  # human text, never message content or recipients
    error_code: str | None = None
    retry_after: float | None = None


class Provider(Protocol):
    name: str

    def send(self, message: OutboundMessage) -> SendResult: ...

