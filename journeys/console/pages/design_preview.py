"""The design page's preview: sample parameters, replies and webhook answers read from the form
and checked, then the simulator's timeline (journeys.engine.simulate: the interpreter the worker
runs, on a simulated clock; nothing stored, nothing sent) turned into rows for the page."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from journeys.definitions.model import (
    HttpRequestStep,
    JourneyDefinition,
    WaitForReplyStep,
    parse_duration,
)
from journeys.definitions.values import datetime_problem, get_zone
from journeys.engine.simulate import Reply, simulate
from journeys.errors import Invalid
from journeys.instances.trigger import validate_parameters

HORIZON = timedelta(days=400)
DEFAULT_DELAY = "5m"


@dataclass(frozen=True)
class ReplyChoice:
    """A wait_for_reply step of the definition and the replies the page offers for it."""

    step_id: int
    label: str
    options: tuple[tuple[str, str], ...]  # (reply text, label)


@dataclass(frozen=True)
class TimelineRow:
    local: str
    utc: str
    where: str
    kind: str
    detail: str
    message: str


@dataclass
class Sample:
    """The preview's inputs as checked: what the simulator needs, or the problems."""

    parameters: dict[str, str] = field(default_factory=dict)
    tz: str = "UTC"
    start: datetime | None = None
    replies: dict[int, list[Reply]] = field(default_factory=dict)
    http: dict[int, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def reply_choices(defn: JourneyDefinition) -> list[ReplyChoice]:
    out = []
    for flow in defn.flows:
        for step in flow.steps:
            if isinstance(step, WaitForReplyStep):
                options = tuple(
                    (route.keywords()[0], f"{route.keywords()[0]} ({route.outcome})")
                    for route in step.replies
                    if route.keywords()
                )
                name = f" {step.name}" if step.name else ""
                out.append(ReplyChoice(step.id, f"{flow.name}: step {step.id}{name}", options))
    return out


def http_steps(defn: JourneyDefinition) -> list[tuple[int, str]]:
    return [
        (step.id, f"{flow.name}: step {step.id}{f' {step.name}' if step.name else ''}")
        for flow in defn.flows
        for step in flow.steps
        if isinstance(step, HttpRequestStep)
    ]


def read_sample(defn: JourneyDefinition, values: dict[str, str]) -> Sample:
    """The form's sample values checked as the trigger API and `journeys simulate` check them."""
    sample = Sample(tz=values.get("tz", "").strip() or "UTC")
    zone = get_zone(sample.tz)
    if zone is None:
        sample.problems.append(f"Time zone: {sample.tz!r} is not an IANA time zone (e.g. America/Chicago)")
    given = {
        p.name: values[f"param.{p.name}"] for p in defn.parameters if values.get(f"param.{p.name}", "") != ""
    }
    canonical, problems = validate_parameters(defn, given, zone or ZoneInfo("UTC"))
    sample.parameters = canonical
    sample.problems.extend(f"Sample parameters: {problem}" for problem in problems)
    start = values.get("start", "").strip()
    if zone is not None:
        begin, problem = datetime_problem(start, zone)
        if begin is None:
            sample.problems.append(f"Start: {start!r} {problem} (use YYYY-MM-DD HH:MM, local time)")
        sample.start = begin
    _read_replies(defn, values, sample)
    _read_http(defn, values, sample)
    return sample


def _read_replies(defn: JourneyDefinition, values: dict[str, str], sample: Sample) -> None:
    for choice in reply_choices(defn):
        key = str(choice.step_id)
        text = values.get(f"reply_text.{key}", "").strip() or values.get(f"reply.{key}", "").strip()
        if not text:
            continue
        delay_text = values.get(f"reply_delay.{key}", "").strip() or DEFAULT_DELAY
        try:
            delay = parse_duration(delay_text)
        except ValueError as exc:
            sample.problems.append(f"Reply to step {key}: {exc}")
            continue
        sample.replies[choice.step_id] = [Reply(text, delay)]


def _read_http(defn: JourneyDefinition, values: dict[str, str], sample: Sample) -> None:
    for step_id, _ in http_steps(defn):
        key = str(step_id)
        status_text = values.get(f"http_status.{key}", "").strip() or "200"
        body_text = values.get(f"http_json.{key}", "").strip() or "{}"
        if not (status_text.isascii() and status_text.isdigit() and 100 <= int(status_text) <= 599):
            sample.problems.append(
                f"Webhook answer of step {key}: the status must be a number from 100 to 599"
            )
            continue
        try:
            body = json.loads(body_text)
        except ValueError:
            sample.problems.append(f"Webhook answer of step {key}: the body is not valid JSON")
            continue
        sample.http[step_id] = {"status": int(status_text), "json": body}


def run_preview(defn: JourneyDefinition, sample: Sample) -> list[TimelineRow]:
    """The simulator's timeline for the sample (which has no problems); Invalid if the journey
    does not settle."""
    if sample.start is None:
        raise Invalid("Start: choose when the instance starts")
    events = simulate(
        defn,
        sample.parameters,
        sample.tz,
        sample.start,
        replies=sample.replies,
        http=sample.http,
        horizon=HORIZON,
    )
    zone = get_zone(sample.tz) or ZoneInfo("UTC")
    return [_row(event, zone) for event in events]


def _row(event: dict[str, Any], zone: ZoneInfo) -> TimelineRow:
    at = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    flow = event["flowName"] or event["flowId"] or ""
    where = f"{flow} · step {event['stepId']}" if event["stepId"] is not None else str(flow)
    detail = " · ".join(f"{k}: {v}" for k, v in event["detail"].items() if k != "messageId")
    message = ""
    if "body" in event:
        subject = f" [{event['subject']}]" if "subject" in event else ""
        message = f"{event['channel']} to {event['to']}{subject}: {event['body']}"
    return TimelineRow(
        local=at.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z"),
        utc=event["time"],
        where=where,
        kind=event["type"],
        detail=detail,
        message=message,
    )
