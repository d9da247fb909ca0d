"""Audit entries of reads (an API token's searches and instance views), buffered in process and
appended to the chain in batches.

Why: appending takes the org's chain lock (journeys.store.audit.lock_head) until the transaction
ends, so one append per search would serialise an org's concurrent searches — the API's hot path.
Instead a read's entry goes into this buffer (a list append under a mutex: no database work in
the request) and a background thread flushes it every `interval` seconds, or sooner once `limit`
entries wait: one transaction per org, the chain computed at flush time (entries keep the time of
their request; their order in the chain is the order they were buffered in).

What a crash loses: the entries still buffered — at most `interval` seconds' (or `limit`) reads.
Changes (triggers, cancels, opt-outs, replies) are never buffered: they are audited in the
transaction that makes them. A clean shutdown flushes (the app's lifespan calls `stop`)."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

from sqlalchemy.engine import Engine

from journeys.accounts import audit
from journeys.accounts.audit import AuditEntry
from journeys.store.db import transaction

log = logging.getLogger("journeys.audit")

FLUSH_INTERVAL = 1.0  # seconds
FLUSH_LIMIT = 500  # entries: flush sooner
MAX_PENDING = 100_000  # beyond this (the database down for long), the oldest are dropped, logged


class AuditBuffer:
    def __init__(self, engine: Engine, interval: float = FLUSH_INTERVAL, limit: int = FLUSH_LIMIT) -> None:
        self.engine = engine
        self.interval = interval
        self.limit = limit
        self._pending: list[AuditEntry] = []
        self._mutex = threading.Lock()  # guards _pending
        self._flushing = threading.Lock()  # one flush at a time (chain order)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, entry: AuditEntry) -> None:
        """Queue an entry (no I/O); the flusher appends it within `interval` seconds."""
        with self._mutex:
            self._pending.append(entry)
            size = len(self._pending)
            if size > MAX_PENDING:
                dropped = size - MAX_PENDING
                del self._pending[:dropped]
                log.error("audit buffer full: %d read entries dropped (is the database down?)", dropped)
        if size >= self.limit:
            self._wake.set()

    def pending(self) -> int:
        with self._mutex:
            return len(self._pending)

    def flush(self) -> int:
        """Append every queued entry to its org's chain, one transaction per org; the number
        written. Entries of an org whose transaction fails are put back (tried again next time)."""
        with self._flushing:
            with self._mutex:
                taken, self._pending = self._pending, []
            by_org: dict[str, list[AuditEntry]] = defaultdict(list)
            for entry in taken:
                by_org[entry.org_id].append(entry)
            written = 0
            for org_id, entries in by_org.items():
                try:
                    with transaction(self.engine) as conn:
                        audit.record_many(conn, entries)
                    written += len(entries)
                except Exception as exc:  # the database is down: keep them for the next flush
                    log.warning("audit flush of org %s failed (%s); retrying", org_id, type(exc).__name__)
                    with self._mutex:
                        self._pending[:0] = entries
            return written

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="audit-buffer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the flusher and flush what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self.pending():
                self.flush()
