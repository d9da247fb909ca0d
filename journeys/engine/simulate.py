"""`journeys simulate`: one instance on a simulated clock, no database, no provider.

It drives the same interpreter the worker runs (`advance`), jumping the clock from one due
time to the next, so what it prints is what the engine would do: each step with its time,
what it would send (rendered), waits, held sends, caps and branches taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from journeys.definitions.model import JourneyDefinition
from journeys.definitions.values import get_zone
from journeys.engine.interpreter import Instance, StepFailed, advance
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
    replies = {k: list(v) for k, v in (replies or {}).items()}
    http = http or {}
    main = defn.main_flow
    inst = Instance(
        "sim-org", "sim-instance", "sim-journey", 1, main.id, main.steps[0].id, tz, dict(parameters), {}
    )
    ledger = MemoryLedger()
    now = start.astimezone(UTC)
    end = now + horizon
    timeline: list[dict[str, Any]] = []
    for _ in range(MAX_ITERATIONS):
        try:
            fx = advance(defn, inst, now, ledger)
        except StepFailed as exc:
            timeline.append(
                _event(now, zone, exc.flow_id, exc.flow_name, exc.step_id, "failed", {"error": str(exc)})
            )
            return timeline
        messages = {m["message_id"]: m for m in fx.messages}
        for row in fx.events:
            detail = json.loads(row["detail"])
            ev = _event(
                row["at"], zone, row["flow_id"], row["flow_name"], row["step_id"], row["kind"], detail
            )
            msg = messages.get(detail.get("messageId", ""))
            if msg is not None:
                ev.update({"channel": msg["channel"], "to": msg["to_address"], "body": msg["body"]})
                if msg["subject"] is not None:
                    ev["subject"] = msg["subject"]
            timeline.append(ev)
        if fx.status != "InProgress":
            return timeline
        inst.flow_id = fx.flow_id or inst.flow_id
        inst.step_id = fx.step_id if fx.step_id is not None else inst.step_id
        inst.state = fx.state
        if fx.parameters is not None:
            inst.parameters = dict(fx.parameters)
        if fx.http_call is not None:
            step = int(fx.http_call["step"])
            given = http.get(step, {"status": 200, "json": {}})
            status = int(given.get("status", 200))
            result = {"ok": 200 <= status < 300, "status": status, "json": given.get("json"), "error": None}
            if not result["ok"]:
                result["error"] = f"HTTP {status}"
            inst.state.setdefault("http", {})[str(step)] = result
            continue
        due = fx.due_at or now
        awaiting = inst.state.get("awaiting")
        if awaiting and fx.reply_phone and replies.get(int(awaiting["step"])):
            reply = replies[int(awaiting["step"])].pop(0)
            at = now + reply.delay
            if at < due:
                inst.state["reply"] = {"text": reply.text}
                due = at
        if due > end:
            timeline.append(
                _event(now, zone, inst.flow_id, None, None, "simulation_stopped", {"reason": "horizon"})
            )
            return timeline
        now = max(now, due)
    raise SimulationError("the journey did not settle (too many steps)")


def _event(
    at: datetime,
    zone: Any,
    flow_id: str | None,
    flow_name: str | None,
    step_id: int | None,
    kind: str,
    detail: dict[str, Any],
) -> dict[str, Any]:
    return {
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "localTime": at.astimezone(zone).isoformat(),
        "flowId": flow_id,
        "flowName": flow_name,
        "stepId": step_id,
        "type": kind,
        "detail": detail,
    }
