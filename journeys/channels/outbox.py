"""The built-in outbox provider: a message is delivered by being recorded as sent in the
database, where `journeys messages` lists it. It needs no network, so the demo works offline.
Real providers (Twilio, SMTP) plug in behind the same outbox in the channels issue."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from journeys.store import messages


class OutboxProvider:
    name = "outbox"

    def deliver_due(self, conn: Connection, now: datetime) -> int:
        """Deliver every queued message whose time has come; returns how many."""
        return messages.deliver_to_outbox(conn, now)
