"""`journeys simulate`: one instance on a simulated clock, no database, no provider.

It drives the same interpreter the worker runs (`advance`), jumping the clock from one due
time to the next, so what it prints is what the engine would do: each step with its time,
what it would send (rendered), waits, held sends, caps and branches taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from msgspec.structs import replace

from journeys.definitions.model import JourneyDefinition
from journeys.definitions.values import get_zone
from journeys.engine.interpreter import Effects, Instance, StepFailed, advance
from journeys.engine.state import HttpResult, ReplyGiven
from journeys.errors import Invalid

MAX_ITERATIONS = 10_000


class SimulationError(Invalid):
    pass


@dataclass
class Reply:
    text: str
    delay: timedelta = timedelta(minutes=5)  # after the question was asked


@dataclass
class MemoryLedger:
    """The frequency-cap ledger, in memory."""

    sent: list[tuple[str, str, datetime]] = field(default_factory=list)

    def count(self, org_id: str, phone: str, since: datetime) -> int:
        return sum(1 for o, p, t in self.sent if o == org_id and p == phone and t >= since)

    def add(self, org_id: str, phone: str, at: datetime) -> None:
        self.sent.append((org_id, phone, at))

    def opted_out(self, org_id: str, phone: str) -> bool:
        return False


def simulate(
    defn: JourneyDefinition,
    parameters: dict[str, str],
    tz: str,
    start: datetime,
    *,
    replies: dict[int, list[Reply]] | None = None,
    http: dict[int, dict[str, Any]] | None = None,
    horizon: timedelta = timedelta(days=400),
) -> list[dict[str, Any]]:
    """Run one instance from `start` (aware) until it ends or `horizon` passes; return its events.

    `replies` maps a wait_for_reply step id to the replies given each time it waits (in order);
    without one, that wait times out. `http` maps an http_request step id to its result
    ({"status": 200, "json": {...}}); the default is a 200 with an empty JSON object.
    """
    zone = get_zone(tz)
    if zone is None:
        raise SimulationError(f"{tz!r} is not an IANA time zone")
    run = _Simulation(defn, parameters, tz, zone, replies, http or {})
    now = start.astimezone(UTC)
    end = now + horizon
    for _ in range(MAX_ITERATIONS):
        due = run.step(now)
        if due is None:
            return run.timeline
        if due > end:
            run.event(now, run.inst.flow_id, None, None, "simulation_stopped", {"reason": "horizon"})
            return run.timeline
        now = max(now, due)
    raise SimulationError("the journey did not settle (too many steps)")


class _Simulation:
    def __init__(
        self,
        defn: JourneyDefinition,
        parameters: dict[str, str],
        tz: str,
        zone: ZoneInfo,
        replies: dict[int, list[Reply]] | None,
        http: dict[int, dict[str, Any]],
    ) -> None:
        main = defn.main_flow
        self.defn = defn
        self.zone = zone
        self.inst = Instance(
            "sim-org", "sim-instance", "sim-journey", 1, main.id, main.steps[0].id, tz, dict(parameters)
        )
        self.replies = {k: list(v) for k, v in (replies or {}).items()}
        self.http = http
        self.ledger = MemoryLedger()
        self.timeline: list[dict[str, Any]] = []

    def step(self, now: datetime) -> datetime | None:
        """Advance the instance at `now`; when it is due next (None: it has ended)."""
        inst = self.inst
        try:
            fx = advance(self.defn, inst, now, self.ledger)
        except StepFailed as exc:
            self.event(now, exc.flow_id, exc.flow_name, exc.step_id, "failed", {"error": str(exc)})
            return None
        self.record(fx)
        if fx.status != "InProgress":
            return None
        inst.flow_id = fx.flow_id or inst.flow_id
        inst.step_id = fx.step_id if fx.step_id is not None else inst.step_id
        inst.state = fx.state
        if fx.parameters is not None:
            inst.parameters = dict(fx.parameters)
        if fx.http_call is not None:
            self.answer_http(fx.http_call.step)
            return now
        return self.reply_or(now, fx.due_at or now, fx.reply_phone)

    def record(self, fx: Effects) -> None:
        messages = {m.message_id: m for m in fx.messages}
        for e in fx.events:
            ev = self.event(e.at, e.flow_id, e.flow_name, e.step_id, e.kind, dict(e.detail))
            msg = messages.get(e.detail.get("messageId", ""))
            if msg is not None:
                ev.update({"channel": msg.channel, "to": msg.to_address, "body": msg.body})
                if msg.subject is not None:
                    ev["subject"] = msg.subject

    def answer_http(self, step: int) -> None:
        given = self.http.get(step, {"status": 200, "json": {}})
        status = int(given.get("status", 200))
        ok = 200 <= status < 300
        result = HttpResult(ok, status, given.get("json"), None if ok else f"HTTP {status}")
        self.inst.state = replace(self.inst.state, http={**self.inst.state.http, str(step): result})

    def reply_or(self, now: datetime, due: datetime, reply_phone: str | None) -> datetime:
        """The next due time: the reply given to the wait (when it comes before `due`)."""
        awaiting = self.inst.state.awaiting
        if awaiting and reply_phone and self.replies.get(awaiting.step):
            reply = self.replies[awaiting.step].pop(0)
            at = now + reply.delay
            if at < due:
                self.inst.state = replace(self.inst.state, reply=ReplyGiven(reply.text))
                return at
        return due

    def event(
        self,
        at: datetime,
        flow_id: str | None,
        flow_name: str | None,
        step_id: int | None,
        kind: str,
        detail: dict[str, Any],
    ) -> dict[str, Any]:
        ev = {
            "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "localTime": at.astimezone(self.zone).isoformat(),
            "flowId": flow_id,
            "flowName": flow_name,
            "stepId": step_id,
            "type": kind,
            "detail": detail,
        }
        self.timeline.append(ev)
        return ev
