"""Delivery statuses reported by providers (Twilio's status callbacks), applied to the outbox and
the timeline (services: take a connection, never commit).

A callback can arrive before the send has recorded the provider's message id: the provider
answers the send, calls back at once, and the sender commits the id a moment later. Such a
status is held (`early_delivery_statuses`) and applied when the id is recorded. Both sides try
to apply it *after* their own commit — the callback after holding it, the sender after recording
the id — so whichever commits last sees both; taking the held row is a `DELETE … RETURNING`, so
only one of them applies it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from journeys.store import channels as repo
from journeys.timeline import event_row
from journeys.webhooks.events import record_events

FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed"})
# A held status whose message never shows up (another system's message on the same account).
EARLY_STATUS_KEEP = timedelta(days=1)


def record_delivery_status(
    conn: Connection,
    org_id: str,
    provider_message_id: str,
    status: str,
    error_code: str | None,
    now: datetime,
) -> bool:
    """Apply a final status to the org's message with this provider id and add an `sms_status`
    event; False when no message has that id (yet)."""
    row = repo.update_delivery_status(conn, org_id, provider_message_id, status, error_code)
    if row is None:
        return False
    detail = {"messageId": row["message_id"], "status": status, "errorCode": error_code}
    event = event_row(
        org_id, row["instance_id"], now, row["flow_id"], None, row["step_id"], "sms_status", detail
    )
    record_events(conn, [event])
    return True


def hold_early_status(
    conn: Connection,
    org_id: str,
    provider_message_id: str,
    status: str,
    error_code: str | None,
    now: datetime,
) -> None:
    repo.hold_early_status(conn, org_id, provider_message_id, status, error_code, now, EARLY_STATUS_KEEP)


def apply_early_status(
    conn: Connection, org_id: str, provider_message_id: str, now: datetime, *, message_known: bool = False
) -> bool:
    """Apply the status held for this id, once its message is known (`message_known`: the caller
    has just recorded it); True when applied here."""
    if not message_known and not repo.message_with_provider_id(conn, org_id, provider_message_id):
        return False
    held = repo.take_early_status(conn, org_id, provider_message_id)
    if held is None:
        return False
    return record_delivery_status(conn, org_id, provider_message_id, held["status"], held["error_code"], now)
