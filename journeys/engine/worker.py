"""The worker: claims due instances in batches and runs them through the interpreter.

A batch is claimed with a lease (one statement, committed), then run and written in one
transaction: run every instance's steps in memory, write the new cursors set-based where the
rows are still leased to the batch at the revision claimed (the guard), then the events, outbox
messages and parameters of those instances, commit. A crash anywhere before
that commit loses nothing and repeats nothing: when the lease expires the instances are simply
due again, for any worker. Delivery of queued messages and HTTP calls happen after the commit.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from msgspec.structs import replace
from sqlalchemy.engine import Engine

from journeys.backoff import backoff
from journeys.catalog.service import load_version
from journeys.clock import Clock
from journeys.engine.http import ApiResolver, perform_step_call
from journeys.engine.interpreter import Effects, HttpCall, Instance, StepFailed, advance
from journeys.engine.passes import shard_of, step_passes
from journeys.engine.state import HttpResult, InstanceState
from journeys.ids import new_id
from journeys.keys.envelope import KeyUnavailable
from journeys.keys.phi import OrgPhi, Vault
from journeys.keys.searchable import parameter_rows, prefix_names
from journeys.messaging.dispatch import Dispatcher
from journeys.messaging.phone import normalise_phone
from journeys.messaging.queue import SmsLedger, queue_messages
from journeys.records import ClaimedInstance, CursorUpdate, ParameterRow, QueuedMessage, TimelineEvent
from journeys.store import work
from journeys.store.console_counts import add_passes
from journeys.store.db import read_only, transaction
from journeys.store.instances import replace_parameters
from journeys.timeline import event_row
from journeys.webhooks.delivery import WebhookSender
from journeys.webhooks.events import record_events

log = logging.getLogger("journeys.worker")

MAX_ATTEMPTS = 5
DEFAULT_LEASE = timedelta(seconds=30)
HEARTBEAT_EVERY = 5.0  # seconds
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_MAX = timedelta(minutes=30)
BATCH_BACKOFF_BASE = timedelta(seconds=0.5)  # a failed batch (e.g. the database is down)
BATCH_BACKOFF_MAX = timedelta(seconds=30)


@dataclass
class BatchResult:
    claimed: int = 0
    steps: int = 0
    delivered: int = 0


@dataclass(frozen=True, slots=True)
class HttpWork:
    """An http_request step's call, made after the batch commits; its result is stored only
    while the instance is still at revision `rev` (the one the batch wrote)."""

    org_id: str
    instance_id: str
    rev: int
    call: HttpCall


def retry_delay(attempt: int) -> timedelta:
    """Exponential backoff with jitter: between half and all of base * 2**(attempt-1), capped."""
    return backoff(attempt, BACKOFF_BASE, BACKOFF_MAX)


class Worker:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        batch_size: int = 200,
        poll_interval: float = 1.0,
        lease: timedelta = DEFAULT_LEASE,
        dispatcher: Dispatcher | None = None,
        webhooks: WebhookSender | None = None,
        vault: Vault | None = None,
        chores: Sequence[Callable[[datetime], None]] = (),
        apis: ApiResolver | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease = lease
        self.worker_id = f"{socket.gethostname()[:24]}-{os.getpid()}-{new_id()[-8:]}"
        self.started_at: datetime | None = None  # set when the loop starts
        self._batch_seq = 0
        self.batches = 0
        self.steps = 0
        self._last_heartbeat = 0.0
        self.dispatcher = dispatcher or Dispatcher(engine, clock)
        self.webhooks = webhooks or WebhookSender(engine, clock, self.dispatcher.settings)
        # Patient data is sealed with each org's key whenever JOURNEYS_SECRET_KEY is set.
        self.vault = vault or self.dispatcher.vault
        # http_request steps reach only what JOURNEYS_OUTBOUND_ALLOW and the public internet allow.
        self.outbound = self.dispatcher.settings.outbound_policy()
        # Housekeeping after each batch (the retention sweep): each decides when it is due.
        self.chores = tuple(chores)
        self.apis = apis  # http_request steps' registered APIs (their URLs and credentials)
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ one batch
    def run_batch(self) -> BatchResult:
        """Claim a batch (short transaction), run and write it (second transaction), make its
        HTTP calls (no transaction), deliver due messages."""
        now = self.clock.now()
        result = BatchResult()
        self._batch_seq += 1
        token = f"{self.worker_id}:{self._batch_seq}"
        with transaction(self.engine) as conn:
            rows = work.claim_due(conn, now, self.batch_size, token, self.lease, sealed=self.vault.encrypted)
        result.claimed = len(rows)
        calls: list[HttpWork] = []
        phis = self._keys({r.org_id for r in rows})  # before the transaction: keys may be made
        rows = [r for r in rows if r.org_id in phis]
        if rows:
            with self._renewing(token):
                with transaction(self.engine) as conn:
                    calls = self._execute(conn, token, rows, now, result, phis)
        for work_item in calls:  # outside any transaction: the network is slow and may fail
            self._http(work_item)
        result.delivered = self.dispatcher.deliver_due()
        self.webhooks.deliver_due()
        self._chores(now)
        self.batches += 1
        self.steps += result.steps
        if result.claimed or result.delivered:
            log.debug(
                "batch %d: %d instances claimed, %d steps run, %d HTTP calls, %d messages handed over",
                self._batch_seq,
                result.claimed,
                result.steps,
                len(calls),
                result.delivered,
            )
        return result

    def _execute(
        self,
        conn: Any,
        token: str,
        rows: list[ClaimedInstance],
        now: datetime,
        result: BatchResult,
        phis: dict[str, OrgPhi],
    ) -> list[HttpWork]:
        """Run the batch in memory, then write it: the cursor update (guarded by lease and `rev`)
        first, and the events, messages and parameters of the instances it changed."""
        ledger = SmsLedger(conn, phis)
        ledger.prefetch(self._phones(conn, rows, phis), now)
        runs = [(row, *self._run_one(conn, row, now, ledger, phis[row.org_id])) for row in rows]
        kept = work.write_instance_updates(conn, token, [update for _, _, update in runs])
        events: list[TimelineEvent] = []
        messages: list[QueuedMessage] = []
        param_rows: list[ParameterRow] = []
        calls: list[HttpWork] = []
        done: list[tuple[ClaimedInstance, list[TimelineEvent]]] = []
        for row, fx, _ in runs:
            if (row.org_id, row.instance_id) not in kept:
                continue  # cancelled, moved to a subflow or answered meanwhile: that change wins
            result.steps += fx.steps_run
            events.extend(fx.events)
            done.append((row, fx.events))
            messages.extend(fx.messages)
            if fx.parameters is not None and fx.changed:
                prefix = prefix_names(load_version(conn, row.org_id, row.journey_id, row.version))
                instance, phi = (row.org_id, row.instance_id), phis[row.org_id]
                changed = sorted(fx.changed)
                param_rows += parameter_rows(phi, instance, row.journey_id, fx.parameters, changed, prefix)
            if fx.http_call is not None:
                calls.append(HttpWork(row.org_id, row.instance_id, row.rev + 1, fx.http_call))
        record_events(conn, events)
        queue_messages(conn, messages, phis)
        replace_parameters(conn, param_rows)
        add_passes(conn, shard_of(self.worker_id), step_passes(done))  # last: its rows are shared
        return calls

    def _chores(self, now: datetime) -> None:
        for chore in self.chores:
            try:
                chore(now)
            except Exception as exc:  # housekeeping must never stop the worker; it runs again later
                log.error("chore %s failed: %s", type(chore).__name__, type(exc).__name__)

    def _keys(self, org_ids: set[str]) -> dict[str, OrgPhi]:
        """Each org's key; an org whose key this worker cannot unwrap (another JOURNEYS_SECRET_KEY)
        is logged and its instances left leased, to go back to every worker when the lease ends."""
        out = {}
        for org_id in sorted(org_ids):
            try:
                out[org_id] = self.vault.org(org_id)
            except KeyUnavailable as exc:
                log.error("instances of org %s skipped: %s", org_id, "; ".join(exc.messages))
        return out

    @contextmanager
    def _renewing(self, token: str) -> Iterator[None]:
        """Renew the batch's lease every third of its length until the batch is written."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.lease.total_seconds() / 3):
                try:
                    with transaction(self.engine) as conn:
                        work.renew_lease(conn, token, self.clock.now() + self.lease)
                except Exception as exc:  # the write will find out; never crash the worker here
                    log.warning("lease renewal failed: %s", type(exc).__name__)

        thread = threading.Thread(target=renew, name="journeys-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(5)

    @staticmethod
    def _phones(conn: Any, rows: list[ClaimedInstance], phis: dict[str, OrgPhi]) -> set[tuple[str, str]]:
        """(org, normalised phone) of every phone parameter of the claimed instances."""
        pairs: set[tuple[str, str]] = set()
        for row in rows:
            try:
                defn = load_version(conn, row.org_id, row.journey_id, row.version)
            except LookupError:
                continue
            phone_params = [p.name for p in defn.parameters if p.type == "phone"]
            if not phone_params:
                continue
            params = phis[row.org_id].open_json(row.parameters)
            for name in phone_params:
                phone = normalise_phone(params.get(name) or "")
                if phone:
                    pairs.add((row.org_id, phone))
        return pairs

    def _http(self, item: HttpWork) -> None:
        outcome = perform_step_call(item.org_id, item.call, self.outbound, self.apis)
        phi = self.vault.org(item.org_id)
        with transaction(self.engine) as conn:
            # Guarded by rev: a cancel or subflow that came in meanwhile wins, and the result is dropped.
            store_http_result(
                conn, phi, item.instance_id, item.rev, item.call.step, outcome, self.clock.now()
            )
        self.wake.set()

    def _run_one(
        self, conn: Any, row: ClaimedInstance, now: datetime, ledger: SmsLedger, phi: OrgPhi
    ) -> tuple[Effects, CursorUpdate]:
        """Run one claimed instance; its effects and the cursor update that writes them."""
        inst = Instance(
            org_id=row.org_id,
            instance_id=row.instance_id,
            journey_id=row.journey_id,
            version=row.version,
            flow_id=row.flow_id,
            step_id=row.step_id,
            time_zone=row.time_zone,
            parameters=phi.open_json(row.parameters),
            state=InstanceState.from_json(phi.open(row.state) if row.state else None),
        )
        attempts = row.attempts
        error: str | None = None
        try:
            defn = load_version(conn, inst.org_id, inst.journey_id, inst.version)
            fx = advance(defn, inst, now, ledger)
        except StepFailed as exc:
            fx, error = _failed(inst, exc, now), str(exc)
        except Exception as exc:  # an unexpected fault: retry with backoff, then fail
            attempts += 1
            fx, error = _faulted(inst, exc, attempts, now), f"{type(exc).__name__}: {exc}"
        return fx, _cursor_update(row, inst, fx, (attempts, error), now, phi)

    def run_until_idle(self, max_batches: int = 10_000) -> BatchResult:
        """Run batches until nothing is due now (tests and the simulator's clock use this)."""
        total = BatchResult()
        for _ in range(max_batches):
            r = self.run_batch()
            total.claimed += r.claimed
            total.steps += r.steps
            total.delivered += r.delivered
            if r.claimed == 0:
                break
        return total

    # ------------------------------------------------------------------ the loop
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self.started_at = self.clock.now()
        self._thread = threading.Thread(target=self._loop, name="journeys-worker", daemon=True)
        self._thread.start()
        listen = work.due_listener(self.engine)  # None: the database sends no notifications
        if listen is not None:
            args = (self._stop, self.wake)
            threading.Thread(target=listen, args=args, name="journeys-listen", daemon=True).start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in progress is written (a batch is never abandoned half-done)."""
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        log.info(
            "worker %s started (batch size %d, poll interval %.1fs)",
            self.worker_id,
            self.batch_size,
            self.poll_interval,
        )
        failures = 0
        while not self._stop.is_set():
            try:
                r = self.run_batch()
                failures = 0
                self._heartbeat()
                if r.claimed >= self.batch_size:
                    continue  # more is due right now
                timeout = self._sleep_time()
            except Exception as exc:
                failures += 1
                log.error("worker batch failed (%s); backing off", type(exc).__name__)
                timeout = backoff(failures + 1, BATCH_BACKOFF_BASE, BATCH_BACKOFF_MAX).total_seconds()
            self.wake.wait(timeout)
            self.wake.clear()
        self._heartbeat(stopped=True)
        log.info("worker stopped (%s)", self.worker_id)

    def _heartbeat(self, stopped: bool = False) -> None:
        if not stopped and time.monotonic() - self._last_heartbeat < HEARTBEAT_EVERY:
            return
        self._last_heartbeat = time.monotonic()
        try:
            with transaction(self.engine) as conn:
                work.heartbeat(
                    conn,
                    self.worker_id,
                    socket.gethostname(),
                    os.getpid(),
                    self.started_at or self.clock.now(),
                    self.clock.now(),
                    self.batches,
                    self.steps,
                    stopped,
                )
        except Exception as exc:
            log.warning("heartbeat failed: %s", type(exc).__name__)

    def _sleep_time(self) -> float:
        jittered = self.poll_interval * random.uniform(0.8, 1.2)
        try:
            with read_only(self.engine) as conn:
                due = work.next_due(conn)
        except Exception:
            return jittered
        if due is None:
            return jittered
        return max(0.0, min(jittered, (due - self.clock.now()).total_seconds()))


def _failed(inst: Instance, exc: StepFailed, now: datetime) -> Effects:
    """A step that cannot run: the instance fails, the error recorded."""
    fx = Effects(status="Failed", state=inst.state)
    step_id = exc.step_id if exc.step_id is not None else inst.step_id
    flow_id = exc.flow_id or inst.flow_id
    detail = {"error": str(exc)}
    fx.events.append(
        event_row(inst.org_id, inst.instance_id, now, flow_id, exc.flow_name, step_id, "failed", detail)
    )
    return fx


def _faulted(inst: Instance, exc: Exception, attempts: int, now: datetime) -> Effects:
    """An unexpected fault at the `attempts`-th try: retried later with backoff, then failed."""
    # The exception's message may quote patient data: log its type and where it happened only.
    log.error(
        "step failed for instance %s (attempt %d): %s at\n%s",
        inst.instance_id,
        attempts,
        type(exc).__name__,
        "".join(traceback.format_tb(exc.__traceback__)),
    )
    if attempts >= MAX_ATTEMPTS:
        fx = Effects(status="Failed", state=inst.state)
        kind = "failed"
    else:
        due = now + retry_delay(attempts)
        fx = Effects(flow_id=inst.flow_id, step_id=inst.step_id, due_at=due, state=inst.state)
        kind = "step_retry"
    detail = {"error": type(exc).__name__, "attempt": attempts}
    fx.events.append(
        event_row(inst.org_id, inst.instance_id, now, inst.flow_id, None, inst.step_id, kind, detail)
    )
    return fx


def _cursor_update(
    row: ClaimedInstance,
    inst: Instance,
    fx: Effects,
    outcome: tuple[int, str | None],
    now: datetime,
    phi: OrgPhi,
) -> CursorUpdate:
    attempts, error = outcome
    ended = fx.status != "InProgress"
    waiting = None if ended or fx.reply_phone is None else phi.phone_key(fx.reply_phone)
    return CursorUpdate(
        org_id=row.org_id,
        instance_id=row.instance_id,
        rev=row.rev,
        status=fx.status,
        flow_id=fx.flow_id if not ended else inst.flow_id,
        step_id=fx.step_id if not ended else inst.step_id,
        due_at=None if ended else fx.due_at,
        state=phi.seal(fx.state.to_json()),
        parameters=row.parameters if fx.parameters is None else phi.seal_json(fx.parameters),
        attempts=attempts if error and not ended else 0,
        last_error=error,
        last_event_at=fx.last_event_at,
        last_flow_name=fx.last_flow_name,
        last_step_id=fx.last_step_id,
        ended_at=now if ended else None,
        waiting_reply_phone=waiting,
    )


def store_http_result(
    conn: Any, phi: OrgPhi, instance_id: str, rev: int, step_id: int, outcome: HttpResult, now: datetime
) -> bool:
    """Hand an http_request step's result to the instance and make it due now. Guarded by `rev`:
    False (nothing written) when the instance changed since the call was decided."""
    org_id = phi.org_id
    found, text = work.read_state(conn, org_id, instance_id, rev)
    if not found:
        return False
    state = InstanceState.from_json(phi.open(text) if text else text)
    results = {**state.http, str(step_id): outcome}
    sealed = phi.seal(replace(state, http=results).to_json())
    return work.resume_with_state(conn, org_id, instance_id, rev, sealed, now)
