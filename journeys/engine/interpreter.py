"""The interpreter: what a step does.

`advance` takes an instance's committed state, the clock's `now` and a `Ledger` (how many SMS
a phone number has been sent), runs steps until the instance must wait (or ends), and returns
every effect as data: timeline events, outbox messages, the new cursor, parameter changes and,
for an `http_request` step, the call to make. It does no I/O itself, so the worker (which
writes the effects in one transaction and makes HTTP calls outside it) and the simulator share
it exactly.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from msgspec.structs import replace

from journeys.definitions.model import (
    BranchStep,
    EndStep,
    Flow,
    FrequencyCap,
    GotoStep,
    HttpRequestStep,
    JourneyDefinition,
    SendEmailStep,
    SendSmsStep,
    SetParametersStep,
    WaitForReplyStep,
    WaitStep,
    WaitUntilStep,
    normalise_reply,
    parse_duration,
)
from journeys.definitions.templates import (
    EMAIL_BODY,
    EMAIL_HTML,
    EMAIL_SUBJECT,
    HTTP_BODY,
    HTTP_HEADER,
    HTTP_URL,
    PARAMETER_VALUE,
    SMS_BODY,
    OutputLimit,
    TemplateRenderError,
    render,
    render_html,
)
from journeys.definitions.values import MAX_VALUE_BYTES, MAX_VALUE_CHARS, get_zone, parse_datetime
from journeys.engine.effects import (
    STOP,
    WAIT_AT_END,
    Effects,
    HttpCall,
    Instance,
    Ledger,
    Next,
    NoLedger,
    StepFailed,
    StepResult,
    Stop,
)
from journeys.engine.rules import evaluate, next_window_opening, wait_until_target
from journeys.engine.state import Awaiting, Deferred, InstanceState, PendingHttp
from journeys.ids import new_id
from journeys.messaging.phone import normalise_phone
from journeys.records import QueuedMessage
from journeys.timeline import event_row, new_event_id

MAX_STEPS_PER_ADVANCE = 100
HTTP_LEASE_GRACE = timedelta(seconds=60)
CAP_WEEK = timedelta(days=7)

__all__ = [
    "Effects",
    "HttpCall",
    "Instance",
    "InstanceState",
    "Ledger",
    "StepFailed",
    "advance",
    "wait_until_target",
]


class _Run:
    def __init__(self, defn: JourneyDefinition, inst: Instance, now: datetime, ledger: Ledger) -> None:
        self.defn = defn
        self.inst = inst
        self.now = now
        self.ledger = ledger
        self.zone = get_zone(inst.time_zone) or UTC
        self.fx = Effects(state=inst.state)
        self.params = dict(inst.parameters)
        self.index: dict[int, tuple[Flow, int]] = {}
        for flow in defn.flows:
            for i, step in enumerate(flow.steps):
                self.index[step.id] = (flow, i)
        self.types = {p.name: p.type for p in defn.parameters}

    # ------------------------------------------------------------------ helpers
    def update(self, **changes: Any) -> None:
        """Change the interpreter state (only call when something changes)."""
        self.fx.state = replace(self.fx.state, **changes)

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

    def param(self, name: str) -> str:
        p = self.defn.parameter(name)
        return self.params.get(p.name if p else name, "") or ""

    def set_param(self, name: str, value: str) -> None:
        """Change a parameter. Values are cut to the limit the API accepts (they are indexed for
        search); the full text of a reply stays in the inbound message."""
        value = _fit(value)
        p = self.defn.parameter(name)
        canonical = p.name if p else name
        if self.params.get(canonical) != value:
            self.params[canonical] = value
            self.fx.changed.add(canonical)
            self.fx.parameters = self.params

    def render(self, source: str, step_id: int, limit: OutputLimit) -> str:
        try:
            return render(source, self.params, self.types, self.zone, limit)  # type: ignore[arg-type]
        except TemplateRenderError as exc:
            raise StepFailed(f"step {step_id}: {exc}") from None

    def wait_here(self, flow: Flow, step_id: int, due: datetime) -> Stop:
        self.fx.flow_id, self.fx.step_id, self.fx.due_at = flow.id, step_id, due
        return STOP

    def finish(self, status: str) -> Stop:
        self.fx.status = status
        self.fx.due_at = None
        self.fx.reply_phone = None
        return STOP

    # ------------------------------------------------------------------ the loop
    def run(self) -> Effects:
        fx = self.fx
        step_id: int | None = self.inst.step_id
        flow_id = self.inst.flow_id
        if fx.state.complete_after_wait:
            self.update(complete_after_wait=False)
            step_id = None
        while True:
            if step_id is None:
                flow = self.defn.flow(flow_id) or self.defn.main_flow
                self.record(flow, None, "completed", {"reason": "reached the end of the flow"})
                self.finish("Completed")
                return fx
            located = self.index.get(step_id)
            if located is None:
                raise StepFailed(f"step {step_id} does not exist in version {self.inst.version}")
            flow, pos = located
            flow_id = flow.id
            if fx.steps_run >= MAX_STEPS_PER_ADVANCE:
                self.wait_here(flow, step_id, self.now)  # yield; continue in the next batch
                return fx
            step = flow.steps[pos]
            following = flow.steps[pos + 1].id if pos + 1 < len(flow.steps) else None
            default_next = step.next if step.next is not None else following
            fx.steps_run += 1
            try:
                outcome = self.step(flow, step, default_next)
            except StepFailed as exc:
                exc.flow_id, exc.flow_name, exc.step_id = flow.id, flow.name, step.id
                raise
            if isinstance(outcome, Stop):
                if outcome.complete_after_wait:
                    self.update(complete_after_wait=True)
                return fx
            step_id = outcome.step_id

    def step(self, flow: Flow, step: Any, default_next: int | None) -> StepResult:
        """Run one step: where to go on, or Stop when the instance must wait or has ended."""
        if isinstance(step, SendSmsStep):
            return self.send_sms(flow, step, default_next)
        if isinstance(step, SendEmailStep):
            return self.send_email(flow, step, default_next)
        if isinstance(step, WaitStep):
            due = self.now + parse_duration(step.duration)
            self.record(flow, step.id, "wait", {"until": _iso(due)})
            return self.wait_then(flow, step.id, default_next, due)
        if isinstance(step, WaitUntilStep):
            return self.wait_until(flow, step, default_next)
        if isinstance(step, WaitForReplyStep):
            return self.wait_for_reply(flow, step, default_next)
        if isinstance(step, BranchStep):
            return Next(self.branch(flow, step, default_next))
        if isinstance(step, SetParametersStep):
            for name, source in step.values.items():
                self.set_param(name, self.render(source, step.id, PARAMETER_VALUE))
            self.record(flow, step.id, "set_parameters", {"parameters": sorted(step.values)})
            return Next(default_next)
        if isinstance(step, GotoStep):
            self.record(flow, step.id, "goto", {"target": step.target})
            return Next(step.target)
        if isinstance(step, HttpRequestStep):
            return self.http_request(flow, step, default_next)
        if isinstance(step, EndStep):
            self.record(flow, step.id, "end", {"outcome": step.outcome} if step.outcome else {})
            if step.outcome:
                self.update(outcome=step.outcome)
            return self.finish("Completed")
        raise StepFailed(f"unknown step type {type(step).__name__}")  # pragma: no cover

    def branch(self, flow: Flow, step: BranchStep, default_next: int | None) -> int | None:
        for i, case in enumerate(step.cases):
            if evaluate(case.when, self.params, self.defn, self.zone, self.now, self.fx.state.last_reply):
                self.record(flow, step.id, "branch", {"case": i, "next": case.next})
                return case.next
        target = step.else_ if step.else_ is not None else default_next
        self.record(flow, step.id, "branch", {"case": "else", "next": target})
        return target

    def wait_then(self, flow: Flow, wait_step: int, next_step: int | None, due: datetime) -> Stop:
        # Time really passes here, so a send skipped for lateness before this wait is not this one's.
        if self.fx.state.skip_next_send or self.fx.state.deferred is not None:
            self.update(skip_next_send=False, deferred=None)
        if next_step is None:
            self.wait_here(flow, wait_step, due)
            return WAIT_AT_END
        return self.wait_here(flow, next_step, due)

    # ------------------------------------------------------------------ sends
    def held_by_window(self, flow: Flow, step_id: int, enabled: bool) -> Stop | None:
        window = self.defn.send_window
        if not enabled or window is None:
            return None
        opening = next_window_opening(self.now, window, self.zone)
        if opening is None:
            if self.fx.state.held is not None:
                self.update(held=None)
            return None
        if self.fx.state.held != step_id:
            self.update(held=step_id)
            self.record(
                flow, step_id, "send_held", {"until": _iso(opening), "reason": "outside the send window"}
            )
        return self.wait_here(flow, step_id, opening)

    def too_late(self, flow: Flow, step_id: int, send_before: str | None, kind: str) -> bool:
        """Whether the step's send_before time has come (the send is then skipped and recorded)."""
        if send_before is None:
            return False
        deadline = self.param_time(send_before)
        if deadline is not None and self.now < deadline:
            return False
        reason = f"{send_before} has passed" if deadline else f"parameter {send_before} is empty"
        self.record(flow, step_id, kind, {"reason": reason})
        return True

    def skip_for_past_time(self, flow: Flow, step_id: int, kind: str) -> bool:
        if self.fx.state.skip_next_send:
            self.update(skip_next_send=False)
            self.record(flow, step_id, kind, {"reason": "its time had passed (wait_until policy skip)"})
            return True
        return False

    def sms_recipient(self, flow: Flow, step: SendSmsStep) -> str | None:
        """The normalised number to text, or None when the send is skipped (recorded)."""
        raw = self.param(step.to).strip()
        to = normalise_phone(raw) if raw else None
        if to is None:
            problem = "is empty" if not raw else "is not a phone number"
            self.record(flow, step.id, "sms_skipped", {"reason": f"parameter {step.to} {problem}"})
            return None
        if self.ledger.opted_out(self.inst.org_id, to):
            self.record(flow, step.id, "sms_skipped", {"reason": "the number opted out"})
            return None
        return to

    def send_sms(self, flow: Flow, step: SendSmsStep, default_next: int | None) -> StepResult:
        if self.skip_for_past_time(flow, step.id, "sms_skipped"):
            return Next(default_next)
        to = self.sms_recipient(flow, step)
        if to is None or self.too_late(flow, step.id, step.send_before, "sms_skipped"):
            return Next(default_next)
        held = self.held_by_window(flow, step.id, step.send_window)
        if held is not None:
            return held
        cap = self.defn.frequency_cap
        if step.frequency_cap and cap is not None:
            limit = self.cap_reached(cap, to)
            if limit is not None:
                return self.capped(flow, step, default_next, limit)
        if self.fx.state.deferred is not None:
            self.update(deferred=None)
        body = self.render(step.body, step.id, SMS_BODY)
        capped = bool(step.frequency_cap and cap is not None)
        self.queue(flow, step.id, "sms", to, None, body, None, capped=capped)
        if capped:
            self.ledger.add(self.inst.org_id, to, self.now)
        return Next(default_next)

    def cap_reached(self, cap: FrequencyCap, to: str) -> str | None:
        """The limit a send to `to` now would exceed, or None."""
        org = self.inst.org_id
        if cap.per_day is not None:
            local_midnight = self.now.astimezone(self.zone).replace(hour=0, minute=0, second=0, microsecond=0)
            if self.ledger.count(org, to, local_midnight.astimezone(UTC)) >= cap.per_day:
                return f"{cap.per_day} per day"
        if cap.per_7_days is not None and self.ledger.count(org, to, self.now - CAP_WEEK) >= cap.per_7_days:
            return f"{cap.per_7_days} per 7 days"
        return None

    def capped(self, flow: Flow, step: SendSmsStep, default_next: int | None, limit: str) -> StepResult:
        """A send the cap stops now: deferred to the next local day (at the send window's opening)
        while the policy and its deadline allow, else recorded as capped and skipped."""
        cap = self.defn.frequency_cap
        assert cap is not None
        deferred = self.fx.state.deferred
        since = self.now
        if deferred is not None and deferred.step == step.id:
            since = datetime.fromisoformat(deferred.since.replace("Z", "+00:00"))
        until = self.next_cap_day(step.send_window)
        reason = None
        if cap.when_capped == "defer":
            # Deferred while the next try is still before the step's send_before (if any), within 7 days.
            last = since + CAP_WEEK
            if step.send_before is not None:
                last = min(last, self.param_time(step.send_before) or since)
            if until < last:
                self.update(deferred=Deferred(step.id, _iso(since)))
                self.record(flow, step.id, "sms_deferred", {"until": _iso(until), "limit": limit})
                return self.wait_here(flow, step.id, until)
            reason = (
                f"no day the cap allows before {step.send_before}"
                if step.send_before is not None and last < since + CAP_WEEK
                else "no day the cap allows within the 7 days a send may be deferred"
            )
        if deferred is not None:
            self.update(deferred=None)
        self.record(flow, step.id, "sms_capped", {"limit": limit, **({"reason": reason} if reason else {})})
        return Next(default_next)

    def next_cap_day(self, use_window: bool) -> datetime:
        """The next local midnight, or the send window's opening that day."""
        day = self.now.astimezone(self.zone).date() + timedelta(days=1)
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.zone).astimezone(UTC)
        window = self.defn.send_window
        if use_window and window is not None:
            return next_window_opening(midnight, window, self.zone) or midnight
        return midnight

    def param_time(self, name: str) -> datetime | None:
        raw = self.param(name)
        return parse_datetime(raw, self.zone) if raw else None  # type: ignore[arg-type]

    def send_email(self, flow: Flow, step: SendEmailStep, default_next: int | None) -> StepResult:
        if self.skip_for_past_time(flow, step.id, "email_skipped"):
            return Next(default_next)
        to = self.param(step.to).strip()
        if not to:
            self.record(flow, step.id, "email_skipped", {"reason": f"parameter {step.to} is empty"})
            return Next(default_next)
        if self.too_late(flow, step.id, step.send_before, "email_skipped"):
            return Next(default_next)
        held = self.held_by_window(flow, step.id, step.send_window)
        if held is not None:
            return held
        subject = self.render(step.subject, step.id, EMAIL_SUBJECT)
        body = self.render(step.body, step.id, EMAIL_BODY)
        html = None
        if step.html is not None:
            try:
                html = render_html(step.html, self.params, self.types, self.zone, EMAIL_HTML)  # type: ignore[arg-type]
            except TemplateRenderError as exc:
                raise StepFailed(f"step {step.id}: {exc}") from None
        self.queue(flow, step.id, "email", to, subject, body, html)
        return Next(default_next)

    def queue(
        self,
        flow: Flow,
        step_id: int,
        channel: str,
        to: str,
        subject: str | None,
        body: str,
        html: str | None,
        *,
        capped: bool = False,
    ) -> None:
        message_id = new_id()
        if self.fx.state.held is not None:
            self.update(held=None)
        eid = self.record(flow, step_id, f"{channel}_queued", {"messageId": message_id})
        inst = self.inst
        self.fx.messages.append(
            QueuedMessage(
                org_id=inst.org_id,
                message_id=message_id,
                instance_id=inst.instance_id,
                journey_id=inst.journey_id,
                flow_id=flow.id,
                step_id=step_id,
                channel=channel,
                to_address=to,
                subject=subject,
                body=body,
                html=html,
                capped=capped,
                idempotency_key=f"{inst.instance_id}:{eid}",
                created_at=self.now,
            )
        )

    # ------------------------------------------------------------------ waits
    def wait_until(self, flow: Flow, step: WaitUntilStep, default_next: int | None) -> StepResult:
        raw = self.param(step.parameter)
        base = parse_datetime(raw, self.zone) if raw else None  # type: ignore[arg-type]
        if base is None:
            raise StepFailed(f"parameter {step.parameter} is empty or not a valid datetime")
        due = wait_until_target(base, step, self.zone)
        if due > self.now:
            self.record(flow, step.id, "wait", {"until": _iso(due)})
            return self.wait_then(flow, step.id, default_next, due)
        if step.if_past == "skip":
            self.update(skip_next_send=True)
        self.record(flow, step.id, "wait_skipped", {"until": _iso(due), "policy": step.if_past})
        return Next(default_next)

    def start_waiting_for_reply(
        self, flow: Flow, step: WaitForReplyStep, default_next: int | None
    ) -> StepResult:
        phone = normalise_phone(self.param(step.to))
        if phone is None:
            self.update(last_reply="no_reply")
            reason = "is empty" if not self.param(step.to).strip() else "is not a phone number"
            self.record(flow, step.id, "reply_skipped", {"reason": f"parameter {step.to} {reason}"})
            return Next(step.on_timeout if step.on_timeout is not None else default_next)
        until = self.now + parse_duration(step.timeout)
        self.update(skip_next_send=False, awaiting=Awaiting(step.id, _iso(until)), reply=None)
        self.record(flow, step.id, "waiting_for_reply", {"until": _iso(until)})
        self.fx.reply_phone = phone
        return self.wait_here(flow, step.id, until)

    def wait_for_reply(self, flow: Flow, step: WaitForReplyStep, default_next: int | None) -> StepResult:
        state = self.fx.state
        awaiting = state.awaiting
        if awaiting is None or awaiting.step != step.id:
            return self.start_waiting_for_reply(flow, step, default_next)
        reply = state.reply
        if reply is not None:
            self.update(reply=None)
        until = datetime.fromisoformat(awaiting.until.replace("Z", "+00:00"))
        if reply is None and self.now < until:
            self.fx.reply_phone = normalise_phone(self.param(step.to))
            return self.wait_here(flow, step.id, until)  # woken early: keep waiting
        self.update(awaiting=None)
        self.fx.reply_phone = None
        if reply is None:
            self.update(last_reply="no_reply")
            self.record(flow, step.id, "reply_timeout", {"outcome": "no_reply"})
            return Next(step.on_timeout if step.on_timeout is not None else default_next)
        if step.save_reply_to:
            self.set_param(step.save_reply_to, reply.text)
        said = normalise_reply(reply.text)
        for route in step.replies:
            if said in route.keywords():
                self.update(last_reply=route.outcome)
                self.record(flow, step.id, "reply_received", {"outcome": route.outcome})
                return Next(route.next if route.next is not None else default_next)
        self.update(last_reply="other")
        self.record(flow, step.id, "reply_received", {"outcome": "other"})
        return Next(step.on_other if step.on_other is not None else default_next)

    # ------------------------------------------------------------------ http
    def http_call(self, flow: Flow, step: HttpRequestStep) -> Stop:
        """Decide the step's call (the worker makes it after the commit) and wait for its result."""
        pending = self.fx.state.http_key
        if pending is None or pending.step != step.id:
            pending = PendingHttp(step.id, new_id())  # the same key on every retry of this call
            self.update(http_key=pending)
        target = (step.url or "") if step.api is None else (step.path or "")
        call = HttpCall(
            step=step.id,
            method=step.method,
            url=self.render(target, step.id, HTTP_URL),
            headers={k: self.render(v, step.id, HTTP_HEADER) for k, v in step.headers.items()},
            body=self.render_json(step.body, step.id, [HTTP_BODY.max_chars]),
            timeout=parse_duration(step.timeout).total_seconds(),
            idempotency_key=pending.key,
            api=step.api,
        )
        if step.api is not None:
            if call.url and (not call.url.startswith(("/", "?")) or call.url.startswith("//")):
                raise StepFailed(f"step {step.id}: the path does not render to a path below the API's URL")
        elif not call.url.startswith(("http://", "https://")):
            raise StepFailed(f"step {step.id}: the url does not render to an http(s) URL")
        self.fx.http_call = call
        self.fx.steps_run -= 1  # it runs when the result is in
        # Due again after the timeout (plus grace): if the worker died mid-call, the call is retried.
        return self.wait_here(flow, step.id, self.now + timedelta(seconds=call.timeout) + HTTP_LEASE_GRACE)

    def http_request(self, flow: Flow, step: HttpRequestStep, default_next: int | None) -> StepResult:
        result = self.fx.state.http.get(str(step.id))
        if result is None:
            return self.http_call(flow, step)
        results = {k: v for k, v in self.fx.state.http.items() if k != str(step.id)}
        self.update(http=results, http_key=None)
        detail: dict[str, Any] = {"status": result.status, "ok": result.ok}
        if result.error:
            detail["error"] = result.error
        if result.ok:
            saved = []
            for name, path in step.save.items():
                value = _dig(result.data, path)
                if value is not None:
                    self.set_param(name, value if isinstance(value, str) else json.dumps(value))
                    saved.append(name)
            detail["saved"] = saved
            self.record(flow, step.id, "http_request", detail)
            return Next(default_next)
        self.record(flow, step.id, "http_failed", detail)
        if step.on_failure is not None:
            return Next(step.on_failure)
        raise StepFailed(f"step {step.id}: HTTP request failed ({result.error or result.status})")

    def render_json(self, value: Any, step_id: int, left: list[int]) -> Any:
        """Render every string inside an http_request body; together at most HTTP_BODY
        (`left` holds what remains of it)."""
        if isinstance(value, str):
            text = self.render(value, step_id, HTTP_BODY)
            left[0] -= len(text)
            if left[0] < 0:
                what = f"the {HTTP_BODY.label} renders more than {HTTP_BODY.max_chars:,} characters"
                raise StepFailed(f"step {step_id}: {what} (the limit)")
            return text
        if isinstance(value, list):
            return [self.render_json(v, step_id, left) for v in value]
        if isinstance(value, dict):
            return {k: self.render_json(v, step_id, left) for k, v in value.items()}
        return value


def _fit(value: str) -> str:
    # NUL cannot be stored (PostgreSQL); an HTTP response or a template could produce one.
    value = value.replace("\x00", "")[:MAX_VALUE_CHARS]
    while len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        value = value[:-1]
    return value


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def advance(defn: JourneyDefinition, inst: Instance, now: datetime, ledger: Ledger | None = None) -> Effects:
    """Run the instance from its cursor until it waits or ends. Raises StepFailed."""
    return _Run(defn, inst, now, ledger or NoLedger()).run()


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
