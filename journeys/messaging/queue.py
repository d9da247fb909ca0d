"""Messages a worker batch queues: the outbox rule, and the frequency-cap ledger it counts with.

Rules only; the SQL is in `journeys.store.work` (which stores what it is given).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from msgspec.structs import replace
from sqlalchemy.engine import Connection

from journeys.keys.phi import OrgPhi
from journeys.records import OutboxEntry, QueuedMessage
from journeys.store import work
from journeys.store.consent import OptOutCache

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
    return replace(m, subject=subject, body=phi.seal(m.body), html=html)


class SmsLedger:
    """SMS per (org, phone) for frequency caps: the capped outbox rows of the last 8 days (queued
    or sent), read once per phone per batch, plus what this batch adds. Opt-outs too."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._times: dict[tuple[str, str], list[datetime]] = {}
        self.consent = OptOutCache(conn)

    def _load(self, org_id: str, phone: str, since: datetime) -> list[datetime]:
        key = (org_id, phone)
        times = self._times.get(key)
        if times is None:
            times = work.capped_sms_times(self.conn, org_id, phone, since - LEDGER_WINDOW)
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
            for start in range(0, len(phones), PREFETCH_CHUNK):
                chunk = phones[start : start + PREFETCH_CHUNK]
                for phone in chunk:
                    self._times[(org_id, phone)] = []
                for phone, created in work.capped_sms_of_phones(self.conn, org_id, chunk, since):
                    self._times[(org_id, phone)].append(created)

    def count(self, org_id: str, phone: str, since: datetime) -> int:
        return sum(1 for t in self._load(org_id, phone, since) if t >= since)

    def add(self, org_id: str, phone: str, at: datetime) -> None:
        self._load(org_id, phone, at).append(at)

    def opted_out(self, org_id: str, phone: str) -> bool:
        return self.consent.opted_out(org_id, phone)
