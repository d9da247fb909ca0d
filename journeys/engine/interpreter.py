"""The interpreter: what a step does.

`advance` takes an instance's committed state and the clock's `now`, runs steps until the
instance must wait (or ends), and returns every effect as data: timeline events, outbox
messages and the new cursor. It does no I/O, so the worker (which writes the effects in one
transaction) and the simulator share it exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from journeys.definitions.model import (
    EndStep,
    Flow,
    JourneyDefinition,
    SendSmsStep,
    WaitStep,
    WaitUntilStep,
    parse_duration,
    split_duration,
)
from journeys.definitions.templates import TemplateRenderError, render
from journeys.definitions.values import get_zone, parse_datetime
from journeys.engine.timeline import event_row, new_event_id
from journeys.ids import new_id

MAX_STEPS_PER_ADVANCE = 100


class StepFailed(Exception):
    """A step cannot run for a reason that retrying will not fix (recorded, instance Failed)."""


@dataclass
class Instance:
    org_id: str
    instance_id: str
    journey_id: str
    version: int
    flow_id: str
    step_id: int
    time_zone: str
    parameters: dict[str, str]
    state: dict[str, Any]


@dataclass
class Effects:
    status: str = "InProgress"
    flow_id: str | None = None
    step_id: int | None = None
    due_at: datetime | None = None
    state: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, str] | None = None  # set when a step changed them
    events: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    last_event_at: datetime | None = None
    last_flow_name: str | None = None
    last_step_id: int | None = None
    steps_run: int = 0
    error: str | None = None


class _Run:
    def __init__(self, defn: JourneyDefinition, inst: Instance, now: datetime) -> None:
        self.defn = defn
        self.inst = inst
        self.now = now
        self.zone = get_zone(inst.time_zone) or UTC
        self.fx = Effects(state=dict(inst.state))
        self.index: dict[int, tuple[Flow, int]] = {}
        for flow in defn.flows:
            for i, step in enumerate(flow.steps):
                self.index[step.id] = (flow, i)
        self.types = {p.name: p.type for p in defn.parameters}

    def record(self, flow: Flow, step_id: int | None, kind: str, detail: dict[str, Any] | None = None) -> str:
        eid = new_event_id()
        self.fx.events.append(
            event_row(
                self.inst.org_id,
                self.inst.instance_id,
                self.now,
                flow.id,
                flow.name,
                step_id,
                kind,
                detail,
                eid,
            )
        )
        if step_id is not None:
            self.fx.last_event_at = self.now
            self.fx.last_flow_name = flow.name
            self.fx.last_step_id = step_id
        return eid

    def following(self, flow: Flow, pos: int) -> int | None:
        return flow.steps[pos + 1].id if pos + 1 < len(flow.steps) else None

    def run(self) -> Effects:
        fx = self.fx
        step_id: int | None = self.inst.step_id
        flow_id = self.inst.flow_id
        fx.state.pop("waitStep", None)
        while True:
            if step_id is None:
                flow = self.defn.flow(flow_id) or self.defn.main_flow
                self.record(flow, None, "completed", {"reason": "reached the end of the flow"})
                return self.finish("Completed")
            located = self.index.get(step_id)
            if located is None:
                raise StepFailed(f"step {step_id} does not exist in version {self.inst.version}")
            flow, pos = located
            flow_id = flow.id
            if fx.steps_run >= MAX_STEPS_PER_ADVANCE:
                # Yield to other instances; continue in the next batch.
                fx.flow_id, fx.step_id, fx.due_at = flow.id, step_id, self.now
                return fx
            step = flow.steps[pos]
            fx.steps_run += 1
            default_next = step.next if step.next is not None else self.following(flow, pos)
            if isinstance(step, SendSmsStep):
                self.send_sms(flow, step)
                step_id = default_next
            elif isinstance(step, WaitStep):
                due = self.now + parse_duration(step.duration)
                self.record(flow, step.id, "wait", {"until": _iso(due)})
                return self.wait(flow, step.id, default_next, due)
            elif isinstance(step, WaitUntilStep):
                due = self.wait_until_time(step)
                if due is None:
                    raise StepFailed(f"parameter {step.parameter} is empty or not a valid datetime")
                if due > self.now:
                    self.record(flow, step.id, "wait", {"until": _iso(due)})
                    return self.wait(flow, step.id, default_next, due)
                if step.if_past == "skip":
                    fx.state["skipNextSend"] = True
                    self.record(flow, step.id, "wait_skipped", {"until": _iso(due), "policy": "skip"})
                else:
                    self.record(flow, step.id, "wait_skipped", {"until": _iso(due), "policy": "run_now"})
                step_id = default_next
            elif isinstance(step, EndStep):
                self.record(flow, step.id, "end", {"outcome": step.outcome} if step.outcome else {})
                if step.outcome:
                    fx.state["outcome"] = step.outcome
                return self.finish("Completed")
            else:  # pragma: no cover - the model admits no other step type
                raise StepFailed(f"unknown step type {type(step).__name__}")

    def wait(self, flow: Flow, wait_step: int, next_step: int | None, due: datetime) -> Effects:
        fx = self.fx
        fx.state["waitStep"] = wait_step
        if next_step is None:
            # Waiting at the end of a flow: complete when the wait is over.
            fx.state["completeAfterWait"] = True
            next_step = wait_step
        fx.flow_id, fx.step_id, fx.due_at = flow.id, next_step, due
        return fx

    def finish(self, status: str) -> Effects:
        fx = self.fx
        fx.status = status
        fx.due_at = None
        return fx

    def send_sms(self, flow: Flow, step: SendSmsStep) -> None:
        if self.fx.state.pop("skipNextSend", False):
            self.record(
                flow, step.id, "sms_skipped", {"reason": "its time had passed (wait_until policy skip)"}
            )
            return
        param = self.defn.parameter(step.to)
        to = self.inst.parameters.get(param.name if param else step.to, "").strip()
        if not to:
            self.record(flow, step.id, "sms_skipped", {"reason": f"parameter {step.to} is empty"})
            return
        try:
            body = render(step.body, self.inst.parameters, self.types, self.zone)  # type: ignore[arg-type]
        except TemplateRenderError as exc:
            raise StepFailed(f"step {step.id}: {exc}") from exc
        message_id = new_id()
        eid = self.record(flow, step.id, "sms_queued", {"messageId": message_id})
        self.fx.messages.append(
            {
                "org_id": self.inst.org_id,
                "message_id": message_id,
                "instance_id": self.inst.instance_id,
                "journey_id": self.inst.journey_id,
                "flow_id": flow.id,
                "step_id": step.id,
                "channel": "sms",
                "to_address": to,
                "subject": None,
                "body": body,
                "status": "queued",
                "idempotency_key": f"{self.inst.instance_id}:{eid}",
                "send_after": self.now,
                "created_at": self.now,
            }
        )

    def wait_until_time(self, step: WaitUntilStep) -> datetime | None:
        param = self.defn.parameter(step.parameter)
        raw = self.inst.parameters.get(param.name if param else step.parameter, "")
        if not raw:
            return None
        base = parse_datetime(raw, self.zone)  # type: ignore[arg-type]
        if base is None:
            return None
        return wait_until_target(base, step, self.zone)


def wait_until_target(base_utc: datetime, step: WaitUntilStep, zone: Any) -> datetime:
    """The moment a wait_until step waits for.

    Whole days move along the local calendar (wall-clock), `at` then sets the local time of
    day, and hours/minutes are exact elapsed time; so "2d before at 09:00" is 09:00 local on
    the right day on both sides of a DST change.
    """
    offset = step.before or step.after
    sign = -1 if step.before else 1
    days, rest = split_duration(offset) if offset else (0, timedelta())
    local = base_utc.astimezone(zone)
    if days:
        wall = local.replace(tzinfo=None) + timedelta(days=sign * days)
        local = wall.replace(tzinfo=zone)
    if step.at:
        hh, mm = step.at.split(":")
        local = local.replace(hour=int(hh), minute=int(mm), second=0, microsecond=0, tzinfo=zone)
    moment = local.astimezone(UTC)
    # Re-normalise through UTC so a wall time in a DST gap resolves to a real instant.
    return moment + sign * rest


def advance(defn: JourneyDefinition, inst: Instance, now: datetime) -> Effects:
    """Run the instance from its cursor until it waits or ends. Raises StepFailed."""
    run = _Run(defn, inst, now)
    if inst.state.get("completeAfterWait"):
        run.fx.state.pop("completeAfterWait", None)
        flow = defn.flow(inst.flow_id) or defn.main_flow
        run.record(flow, None, "completed", {"reason": "reached the end of the flow"})
        return run.finish("Completed")
    return run.run()


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_state(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    data = json.loads(text)
    return data if isinstance(data, dict) else {}
