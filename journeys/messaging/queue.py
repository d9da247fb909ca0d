"""Messages a worker batch queues: the outbox rule, and the frequency-cap ledger it counts with.

Rules only; the SQL is in `journeys.store.work` (which stores what it is given).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from msgspec.structs import replace
from sqlalchemy.engine import Connection

from journeys.keys.phi import OrgPhi
from journeys.records import OutboxEntry, QueuedMessage
from journeys.store import work
from journeys.store.consent import OptOutCache

EMAIL = "~email"  # the purpose of email addresses' blind indexes
LEDGER_WINDOW = timedelta(days=8)  # covers "per 7 days" and "per day" in any time zone
PREFETCH_CHUNK = 500


def queue_messages(conn: Connection, messages: Sequence[QueuedMessage], phis: Mapping[str, OrgPhi]) -> None:
    """Write queued messages, their subjects and bodies sealed with their org's key (`phis`,
    journeys.keys.phi). Those of an org with no provider for the channel are handed to
    the built-in outbox as they are written (status `sent`, provider `outbox`) — what the
    dispatcher's delivery to the outbox would do right after the commit, without a second write."""
    if not messages:
        return
    configured = work.configured_channels(conn, sorted({m.org_id for m in messages}))
    entries = []
    for m in map(lambda m: _sealed(m, phis[m.org_id]), messages):
        if (m.org_id, m.channel) in configured:  # due now: the dispatcher sends it after the commit
            entries.append(OutboxEntry(m, "queued", m.created_at, None, None))
        else:
            entries.append(OutboxEntry(m, "sent", m.created_at, m.created_at, "outbox"))
    work.insert_messages(conn, entries)


def _sealed(m: QueuedMessage, phi: OrgPhi) -> QueuedMessage:
    if not phi.encrypted:
        return m
    subject, html = (None if v is None else phi.seal(v) for v in (m.subject, m.html))
    return replace(
        m,
        to_address=recipient_key(phi, m.channel, m.to_address),
        recipient=phi.seal(m.to_address),
        subject=subject,
        body=phi.seal(m.body),
        html=html,
    )


def recipient_key(phi: OrgPhi, channel: str, to: str) -> str:
    """What an outbox message's recipient is matched by (frequency caps, opt-outs, erasure): the
    number's blind index (as everywhere numbers are matched), an email address's own; the
    address itself when the org's data is stored plain."""
    if not phi.encrypted:
        return to
    return phi.phone_key(to) if channel == "sms" else phi.blind(EMAIL, to.strip().lower())


def recipient_of(phi: OrgPhi, row: Mapping[str, Any]) -> str:
    """An outbox row's recipient (sealed in `recipient`, or plain in `to_address`)."""
    sealed = row["recipient"]
    return str(row["to_address"]) if sealed is None else phi.open(sealed)


class SmsLedger:
    """SMS per (org, phone) for frequency caps: the capped outbox rows of the last 8 days (queued
    or sent), read once per phone per batch, plus what this batch adds. Opt-outs too."""

    def __init__(self, conn: Connection, phis: Mapping[str, OrgPhi]) -> None:
        self.conn = conn
        self.phis = phis  # each org's way of storing numbers: the outbox holds their blind indexes
        self._times: dict[tuple[str, str], list[datetime]] = {}
        self.consent = OptOutCache(conn, phis)

    def _load(self, org_id: str, phone: str, since: datetime) -> list[datetime]:
        key = (org_id, phone)
        times = self._times.get(key)
        if times is None:
            stored = self.phis[org_id].phone_key(phone)
            times = work.capped_sms_times(self.conn, org_id, stored, since - LEDGER_WINDOW)
            self._times[key] = times
        return times

    def prefetch(self, pairs: set[tuple[str, str]], now: datetime) -> None:
        """Load the last 8 days of SMS for many (org, phone) pairs at once: one query per org
        and chunk, instead of one per phone. Their opt-outs too."""
        self.consent.prefetch(pairs)
        by_org: dict[str, list[str]] = {}
        for org_id, phone in pairs:
            if (org_id, phone) not in self._times:
                by_org.setdefault(org_id, []).append(phone)
        since = now - LEDGER_WINDOW
        for org_id, phones in by_org.items():
            phi = self.phis[org_id]
            for start in range(0, len(phones), PREFETCH_CHUNK):
                stored = {phi.phone_key(phone): phone for phone in phones[start : start + PREFETCH_CHUNK]}
                for phone in stored.values():
                    self._times[(org_id, phone)] = []
                for key, created in work.capped_sms_of_phones(self.conn, org_id, list(stored), since):
                    self._times[(org_id, stored[key])].append(created)

    def count(self, org_id: str, phone: str, since: datetime) -> int:
        return sum(1 for t in self._load(org_id, phone, since) if t >= since)

    def add(self, org_id: str, phone: str, at: datetime) -> None:
        self._load(org_id, phone, at).append(at)

    def opted_out(self, org_id: str, phone: str) -> bool:
        return self.consent.opted_out(org_id, phone)
