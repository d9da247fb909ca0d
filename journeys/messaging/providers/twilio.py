"""SMS through Twilio's Messages API (plain HTTPS with httpx; no Twilio SDK).

One POST per message to {twilio_api_base}/2010-04-01/Accounts/{account_sid}/Messages.json with
HTTP basic auth, the message's idempotency key as `I-Twilio-Idempotency-Token` (a retried send
is not delivered twice) and, when JOURNEYS_PUBLIC_BASE_URL is set, a StatusCallback to
/channels/twilio/{orgId}/status (see journeys.api.twilio_status).

Outcomes: 2xx -> sent (provider_message_id = Twilio's "sid"); 429 -> retried after Retry-After;
other 4xx -> failed permanently with Twilio's error code; 5xx, timeouts and network errors ->
retried by the dispatcher. Error texts hold Twilio's numeric code only: Twilio's own messages
can echo the recipient's number.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import phonenumbers

from journeys.config import Settings
from journeys.messaging.providers.base import OutboundMessage, SendResult
from journeys.messaging.providers.registry import ProviderConfigError

log = logging.getLogger("journeys.messaging.providers.twilio")

TIMEOUT_SECONDS = 10.0
DEFAULT_RETRY_AFTER = 30.0
KEYS = (
    "account_sid",
    "auth_token",
    "from",
    "messaging_service_sid",
    "help_text",
)  # help_text: the HELP answer


def request_signature(auth_token: str, url: str, params: Mapping[str, Iterable[str]]) -> str:
    """Twilio's X-Twilio-Signature of a form-encoded request: base64 HMAC-SHA1, keyed with the
    auth token, of the URL followed by each parameter's name and value, sorted by name (then
    value; a repeated value counts once)."""
    text = url + "".join(name + value for name in sorted(params) for value in sorted(set(params[name])))
    digest = hmac.new(auth_token.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_verifies(
    auth_token: str, url: str, params: Mapping[str, Iterable[str]], signature: str
) -> bool:
    expected = request_signature(auth_token, url, params)
    return hmac.compare_digest(expected.encode("ascii"), (signature or "").encode("utf-8"))


def to_e164(number: str, region: str | None) -> str | None:
    """The number in E.164, or None when phonenumbers says it is not a valid number."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate a Twilio configuration; returns it normalised (From in E.164)."""
    problems: list[str] = []
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")
    values = {k: str(v).strip() for k, v in config.items() if k in KEYS and str(v).strip()}
    sid = values.get("account_sid")
    if sid is None:
        problems.append("account_sid is required (your Twilio Account SID, 'AC…')")
    elif not (sid.startswith("AC") and len(sid) > 2):
        problems.append("account_sid must be a Twilio Account SID starting with 'AC'")
    if "auth_token" not in values:
        problems.append("auth_token is required (your Twilio auth token)")
    sender, service = values.get("from"), values.get("messaging_service_sid")
    if sender is None and service is None:
        problems.append("one of from (a phone number) or messaging_service_sid is required")
    elif sender is not None and service is not None:
        problems.append("set either from or messaging_service_sid, not both")
    elif sender is not None:
        e164 = to_e164(sender, None)
        if e164 is None:
            problems.append("from must be a valid phone number in international format (e.g. +13125550100)")
        else:
            values["from"] = e164
    elif service is not None and not (service.startswith("MG") and len(service) > 2):
        problems.append("messaging_service_sid must be a Messaging Service SID starting with 'MG'")
    if problems:
        raise ProviderConfigError("twilio: " + "; ".join(problems))
    return values


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return DEFAULT_RETRY_AFTER  # absent, or an HTTP date: take the default
    return seconds if seconds > 0 else DEFAULT_RETRY_AFTER


class TwilioProvider:
    name = "twilio"

    def __init__(
        self, config: dict[str, Any], settings: Settings, *, timeout: float = TIMEOUT_SECONDS
    ) -> None:
        config = check_config(config)
        self.account_sid: str = config["account_sid"]
        self.sender: str | None = config.get("from")
        self.service_sid: str | None = config.get("messaging_service_sid")
        api_base = (settings.twilio_api_base or "https://api.twilio.com").rstrip("/")
        self.url = f"{api_base}/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        public = settings.public_base_url
        self.public_base_url: str | None = str(public).rstrip("/") if public else None
        self.region: str = settings.default_phone_region or "US"
        self.client = httpx.Client(auth=(self.account_sid, config["auth_token"]), timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def send(self, message: OutboundMessage) -> SendResult:
        to = to_e164(message.to, self.region)
        if to is None:
            return SendResult(
                ok=False, permanent=True, error="invalid phone number", error_code="invalid_number"
            )
        form = {"To": to, "Body": message.body}
        if self.sender is not None:
            form["From"] = self.sender
        else:
            form["MessagingServiceSid"] = str(self.service_sid)
        if self.public_base_url:
            form["StatusCallback"] = f"{self.public_base_url}/channels/twilio/{message.org_id}/status"
        headers = {"I-Twilio-Idempotency-Token": message.idempotency_key}
        try:
            response = self.client.post(self.url, data=form, headers=headers)
        except httpx.TimeoutException:
            log.warning("twilio: timeout sending message %s", message.message_id)
            return SendResult(ok=False, error="Twilio timeout", error_code="timeout")
        except httpx.HTTPError as exc:
            log.warning("twilio: %s sending message %s", type(exc).__name__, message.message_id)
            return SendResult(
                ok=False, error=f"Twilio unreachable ({type(exc).__name__})", error_code="network"
            )
        status = response.status_code
        data = _json(response)
        if 200 <= status < 300:
            sid = data.get("sid")
            return SendResult(ok=True, provider_message_id=str(sid) if sid else None)
        code = data.get("code")
        error_code = str(code) if code is not None else f"http_{status}"
        error = f"Twilio error {code}" if code is not None else f"Twilio HTTP {status}"
        log.warning("twilio: HTTP %s (code %s) for message %s", status, code, message.message_id)
        if status == 429:
            return SendResult(
                ok=False, error=error, error_code=error_code, retry_after=_retry_after(response)
            )
        if 400 <= status < 500:
            return SendResult(ok=False, permanent=True, error=error, error_code=error_code)
        return SendResult(ok=False, error=error, error_code=error_code)


def build(config: dict[str, Any], settings: Settings) -> TwilioProvider:
    return TwilioProvider(config, settings)
