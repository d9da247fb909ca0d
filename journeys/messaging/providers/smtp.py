"""Email over SMTP (aiosmtplib).

Configuration (`journeys channel set --channel email --provider smtp --set key=value ...`):

    host          required: the relay's host name
    port          default 587 (465 with security "tls")
    security      "starttls" (default: STARTTLS is required, never falls back to plain text),
                  "tls" (implicit TLS, usually port 465) or "none" (plain text: local relays only)
    username      optional; with password (both or neither)
    password      optional
    from_address  required: the envelope sender and From address
    from_name     optional: the From display name
    timeout       seconds per SMTP command, default 15

Each message gets a Message-ID derived from its idempotency key, so a message sent again (a
sender that died mid-send, a retry after a temporary failure) carries the same Message-ID and
is recognisable as the same message. A refused recipient or another 5xx reply fails the message
permanently (error code = the SMTP reply code); connection problems, time-outs, 4xx replies and
authentication or TLS problems (configuration the operator can fix) are retried. Error texts
never contain addresses; nothing here logs addresses or bodies.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import ssl
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any, TypeVar

import aiosmtplib

from journeys.config import Settings
from journeys.messaging.providers.base import OutboundMessage, SendResult
from journeys.messaging.providers.registry import ProviderConfigError

SECURITY = ("starttls", "tls", "none")
KEYS = ("host", "port", "security", "username", "password", "from_address", "from_name", "timeout")
DEFAULT_TIMEOUT = 15.0
MAX_TIMEOUT = 300.0
_EMAIL = re.compile(
    r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_ANY_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")
_QUEUED_AS = re.compile(r"queued as ([A-Za-z0-9._-]+)", re.IGNORECASE)
_KEY_SAFE = re.compile(r"[A-Za-z0-9-]")

T = TypeVar("T")


# ---------------------------------------------------------------- configuration
def _text(config: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = config.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ProviderConfigError(f"smtp: {key} is required")
        return None
    if not isinstance(value, str):
        raise ProviderConfigError(f"smtp: {key} must be a string")
    if "\r" in value or "\n" in value:
        raise ProviderConfigError(f"smtp: {key} must not contain line breaks")
    return value.strip()


def _number(config: dict[str, Any], key: str) -> float | None:
    value = config.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ProviderConfigError(f"smtp: {key} must be a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ProviderConfigError(f"smtp: {key} must be a number, got {value!r}") from None


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate an SMTP configuration; returns it normalised (defaults filled in)."""
    if not isinstance(config, dict):
        raise ProviderConfigError("smtp: the configuration must be a mapping of keys to values")
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise ProviderConfigError(
            f"smtp: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(known: {', '.join(KEYS)})"
        )
    host = _text(config, "host", required=True)
    security = (_text(config, "security", required=False) or "starttls").lower()
    if security not in SECURITY:
        raise ProviderConfigError(
            f"smtp: security must be one of {', '.join(SECURITY)}, got {config['security']!r}"
        )
    port_value = _number(config, "port")
    if port_value is None:
        port = 465 if security == "tls" else 587
    else:
        if port_value != int(port_value) or not 1 <= port_value <= 65535:
            raise ProviderConfigError(
                f"smtp: port must be a whole number from 1 to 65535, got {config['port']!r}"
            )
        port = int(port_value)
    username = _text(config, "username", required=False)
    password = config.get("password")
    if password is not None and not isinstance(password, str):
        raise ProviderConfigError("smtp: password must be a string")
    password = password or None
    if (username is None) != (password is None):
        given, missing = ("username", "password") if username is not None else ("password", "username")
        raise ProviderConfigError(f"smtp: {given} is set but {missing} is not (give both or neither)")
    from_address = _text(config, "from_address", required=True)
    assert from_address is not None
    if not _EMAIL.match(from_address):
        raise ProviderConfigError(f"smtp: from_address {from_address!r} is not an email address")
    from_name = _text(config, "from_name", required=False)
    timeout = _number(config, "timeout")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    elif not 0 < timeout <= MAX_TIMEOUT:
        raise ProviderConfigError(f"smtp: timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds")
    normalised: dict[str, Any] = {
        "host": host,
        "port": port,
        "security": security,
        "from_address": from_address,
        "timeout": timeout,
    }
    if from_name is not None:
        normalised["from_name"] = from_name
    if username is not None:
        normalised["username"] = username
        normalised["password"] = password
    return normalised


def build(config: dict[str, Any], settings: Settings) -> SmtpProvider:
    return SmtpProvider(check_config(config))


# ---------------------------------------------------------------- sending
def message_id_for(idempotency_key: str, from_address: str) -> str:
    """The Message-ID of the message with this idempotency key: the same on every resend.
    `:` becomes `.`; other characters outside [A-Za-z0-9-] become `=XX` (so it stays unique)."""
    left = "".join(
        c if _KEY_SAFE.match(c) else "." if c == ":" else "".join(f"={b:02X}" for b in c.encode())
        for c in idempotency_key
    )
    return f"<{left}@{from_address.rsplit('@', 1)[1]}>"


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code (in a thread of its own when this
    thread already runs an event loop)."""

    async def main() -> T:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


def _scrub(text: str) -> str:
    """A server's reply text without any address in it, on one line, at most 200 characters."""
    return " ".join(_ANY_ADDRESS.sub("<address>", text).split())[:200]


def _failure(exc: BaseException) -> SendResult:
    """What a failed SMTP exchange means for the message."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        refused = exc.recipients[0]
        return SendResult(
            ok=False,
            permanent=refused.code >= 500,
            error=f"recipient refused: {refused.code} {_scrub(refused.message)}".rstrip(),
            error_code=str(refused.code),
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # The org's credentials, not this message: retried so a corrected password still delivers.
        return SendResult(
            ok=False,
            error=f"authentication failed: {exc.code} {_scrub(exc.message)}".rstrip(),
            error_code=str(exc.code),
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        stage = {
            aiosmtplib.SMTPSenderRefused: "sender refused",
            aiosmtplib.SMTPDataError: "message refused",
            aiosmtplib.SMTPRecipientRefused: "recipient refused",
        }.get(type(exc), "server replied")
        return SendResult(
            ok=False,
            permanent=exc.code >= 500,
            error=f"{stage}: {exc.code} {_scrub(exc.message)}".rstrip(),
            error_code=str(exc.code),
        )
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError | TimeoutError):
        return SendResult(ok=False, error="SMTP server timed out")
    if isinstance(exc, ssl.SSLError):
        return SendResult(ok=False, error=f"TLS error: {type(exc).__name__}")
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected | OSError):
        return SendResult(ok=False, error=f"cannot reach the SMTP server: {type(exc).__name__}")
    if isinstance(exc, aiosmtplib.SMTPException):  # e.g. STARTTLS or AUTH not offered by the server
        return SendResult(ok=False, error=f"SMTP error: {_scrub(str(exc))}")
    raise exc


class SmtpProvider:
    name = "smtp"

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def compose(self, message: OutboundMessage) -> EmailMessage:
        config = self.config
        mail = EmailMessage()
        mail["From"] = Address(display_name=config.get("from_name", ""), addr_spec=config["from_address"])
        mail["To"] = message.to
        mail["Subject"] = " ".join((message.subject or "").split())  # one line: no header injection
        mail["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = message_id_for(message.idempotency_key, config["from_address"])
        mail.set_content(message.body)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return mail

    def send(self, message: OutboundMessage) -> SendResult:
        config = self.config
        try:
            mail = self.compose(message)
        except (ValueError, TypeError, IndexError):
            return SendResult(
                ok=False, permanent=True, error="the message cannot be composed (invalid recipient address)"
            )
        security = config["security"]

        async def deliver() -> tuple[dict[str, Any], str]:
            return await aiosmtplib.send(
                mail,
                sender=config["from_address"],
                recipients=[message.to],
                hostname=config["host"],
                port=config["port"],
                username=config.get("username"),
                password=config.get("password"),
                use_tls=security == "tls",
                start_tls=security == "starttls",
                timeout=config["timeout"],
            )

        try:
            _, reply = _run(deliver)
        except Exception as exc:
            return _failure(exc)
        queued = _QUEUED_AS.search(reply or "")
        return SendResult(ok=True, provider_message_id=queued.group(1)[:64] if queued else None)
