"""A real SMTP server for tests (aiosmtpd on 127.0.0.1): what it receives, whom it refuses,
and the one user it lets in."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import AuthResult, LoginPassword

# (MAIL FROM, RCPT TOs, the parsed message, whether the session had authenticated)
Received = tuple[str, list[str], EmailMessage, bool]


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it receives (parsed, and the raw bytes), refuses the
    recipient `refuse` with a 550 and answers DATA with a 451 `defer_data` times."""

    refuse: str | None = None
    defer_data: int = 0
    received: list[Received] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address == self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.defer_data:
            self.defer_data -= 1
            return "451 4.3.0 Try again later"
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.raw.append(envelope.original_content)
        self.received.append(
            (envelope.mail_from, list(envelope.rcpt_tos), parsed, bool(session.authenticated))
        )
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"


def authenticator(user: str, password: str) -> Callable[..., AuthResult]:
    """An aiosmtpd authenticator that lets `user` with `password` in (LOGIN or PLAIN)."""

    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    return check
