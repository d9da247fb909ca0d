"""The worker: claims due instances in batches and runs them through the interpreter.

A batch is claimed with a lease (one statement, committed), then run and written in one
transaction: run every instance's steps in memory, write the new cursors set-based where the
rows are still leased to the batch at the revision claimed (the guard), then the events, outbox
messages and parameters of those instances, commit. A crash anywhere before
that commit loses nothing and repeats nothing: when the lease expires the instances are simply
due again, for any worker. Delivery of queued messages and HTTP calls happen after the commit.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from journeys.backoff import backoff
from journeys.catalog import load_version
from journeys.channels.dispatch import Dispatcher
from journeys.channels.phone import normalise_phone
from journeys.channels.webhooks import WebhookSender
from journeys.clock import Clock
from journeys.engine.http import perform_http
from journeys.engine.interpreter import Effects, Instance, StepFailed, advance, load_state
from journeys.engine.timeline import event_row
from journeys.ids import new_id
from journeys.outbound import OutboundPolicy
from journeys.store import work
from journeys.store.db import read_only, transaction
from journeys.store.instances import replace_parameters

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
        # http_request steps reach only what JOURNEYS_OUTBOUND_ALLOW and the public internet allow.
        self.outbound = OutboundPolicy.from_settings(self.dispatcher.settings)
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
            rows = work.claim_due(conn, now, self.batch_size, token, self.lease)
        result.claimed = len(rows)
        calls: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (instance key, call)
        if rows:
            with self._renewing(token):
                with transaction(self.engine) as conn:
                    calls = self._execute(conn, token, rows, now, result)
        for key, call in calls:  # outside any transaction: the network is slow and may fail
            self._http(key, call)
        result.delivered = self.dispatcher.deliver_due()
        self.webhooks.deliver_due()
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
        self, conn: Any, token: str, rows: list[dict[str, Any]], now: datetime, result: BatchResult
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Run the batch in memory, then write it: the cursor update (guarded by lease and `rev`)
        first, and the events, messages and parameters of the instances it changed."""
        ledger = work.SmsLedger(conn)
        ledger.prefetch(self._phones(conn, rows), now)
        runs = [(row, *self._run_one(conn, row, now, ledger)) for row in rows]
        kept = work.write_instance_updates(conn, token, [update for _, _, update in runs])
        events: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        param_rows: list[dict[str, Any]] = []
        calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for row, fx, _ in runs:
            if (row["org_id"], row["instance_id"]) not in kept:
                continue  # cancelled, moved to a subflow or answered meanwhile: that change wins
            result.steps += fx.steps_run
            events.extend(fx.events)
            messages.extend(fx.messages)
            if fx.parameters is not None and fx.changed:
                param_rows.extend(
                    {
                        "org_id": row["org_id"],
                        "instance_id": row["instance_id"],
                        "journey_id": row["journey_id"],
                        "name": name.lower(),
                        "value": fx.parameters[name],
                    }
                    for name in sorted(fx.changed)
                )
            if fx.http_call is not None:
                key = {"org_id": row["org_id"], "instance_id": row["instance_id"], "rev": int(row["rev"]) + 1}
                calls.append((key, fx.http_call))
        work.insert_events(conn, events)
        work.insert_messages(conn, messages)
        replace_parameters(conn, param_rows)
        return calls

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
    def _phones(conn: Any, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
        """(org, normalised phone) of every phone parameter of the claimed instances."""
        pairs: set[tuple[str, str]] = set()
        for row in rows:
            try:
                defn = load_version(conn, row["org_id"], row["journey_id"], int(row["version"]))
            except LookupError:
                continue
            phone_params = [p.name for p in defn.parameters if p.type == "phone"]
            if not phone_params:
                continue
            params = json.loads(row["parameters"])
            for name in phone_params:
                phone = normalise_phone(params.get(name) or "")
                if phone:
                    pairs.add((row["org_id"], phone))
        return pairs

    def _http(self, key: dict[str, Any], call: dict[str, Any]) -> None:
        outcome = perform_http(call, self.outbound)
        with transaction(self.engine) as conn:
            # Guarded by rev: a cancel or subflow that came in meanwhile wins, and the result is dropped.
            work.store_http_result(
                conn, key["org_id"], key["instance_id"], key["rev"], call["step"], outcome, self.clock.now()
            )
        self.wake.set()

    def _run_one(
        self, conn: Any, row: dict[str, Any], now: datetime, ledger: work.SmsLedger
    ) -> tuple[Effects, dict[str, Any]]:
        inst = Instance(
            org_id=row["org_id"],
            instance_id=row["instance_id"],
            journey_id=row["journey_id"],
            version=int(row["version"]),
            flow_id=row["flow_id"],
            step_id=int(row["step_id"]),
            time_zone=row["time_zone"],
            parameters=json.loads(row["parameters"]),
            state=load_state(row["state"]),
        )
        attempts = int(row["attempts"])
        try:
            defn = load_version(conn, inst.org_id, inst.journey_id, inst.version)
            fx = advance(defn, inst, now, ledger)
            error = None
        except StepFailed as exc:
            fx = Effects(status="Failed", state=inst.state)
            error = str(exc)
            fx.events.append(
                event_row(
                    inst.org_id,
                    inst.instance_id,
                    now,
                    exc.flow_id or inst.flow_id,
                    exc.flow_name,
                    exc.step_id if exc.step_id is not None else inst.step_id,
                    "failed",
                    {"error": error},
                )
            )
        except Exception as exc:  # an unexpected fault: retry with backoff, then fail
            attempts += 1
            error = f"{type(exc).__name__}: {exc}"
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
                fx = Effects(
                    flow_id=inst.flow_id,
                    step_id=inst.step_id,
                    due_at=now + retry_delay(attempts),
                    state=inst.state,
                )
                kind = "step_retry"
            fx.events.append(
                event_row(
                    inst.org_id,
                    inst.instance_id,
                    now,
                    inst.flow_id,
                    None,
                    inst.step_id,
                    kind,
                    {"error": type(exc).__name__, "attempt": attempts},
                )
            )
        ended = fx.status != "InProgress"
        update = {
            "b_org_id": inst.org_id,
            "b_instance_id": inst.instance_id,
            "b_rev": row["rev"],
            "status": fx.status,
            "flow_id": fx.flow_id if not ended else inst.flow_id,
            "step_id": fx.step_id if not ended else inst.step_id,
            "due_at": None if ended else fx.due_at,
            "state": json.dumps(fx.state, separators=(",", ":")),
            "parameters": row["parameters"]
            if fx.parameters is None
            else json.dumps(fx.parameters, ensure_ascii=False, separators=(",", ":")),
            "waiting_reply_phone": None if ended else fx.reply_phone,
            "attempts": attempts if error and not ended else 0,
            "last_error": error,
            "last_event_at": fx.last_event_at,
            "last_flow_name": fx.last_flow_name,
            "last_step_id": fx.last_step_id,
            "ended_at": now if ended else None,
        }
        return fx, update

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
        if self.engine.dialect.name == "postgresql":
            threading.Thread(target=self._listen, name="journeys-listen", daemon=True).start()

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

    def _listen(self) -> None:
        """PostgreSQL LISTEN: wake up at once when work is triggered (a hint; polling still runs)."""
        import psycopg

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("LISTEN journeys_due")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake.set()
            except Exception as exc:
                log.warning("LISTEN connection lost (%s); polling meanwhile", type(exc).__name__)
                self._stop.wait(random.uniform(1.0, 3.0))

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
