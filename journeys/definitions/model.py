"""The journey definition model.

A definition is what a designer writes (YAML or JSON) and what `journeys journey publish`
stores as an immutable version. The pydantic models below are the single source of truth for
its shape: the loader validates against them, and `journeys journey schema` prints their JSON
Schema. Cross-references (step targets, parameter names) are checked by `validator.py`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ParameterType = Literal["string", "datetime", "phone", "email", "number"]

# ASCII digits only (`\d` and int() also take other scripts' digits).
_UNIT = r"(days?|d|hours?|h|minutes?|mins?|m|seconds?|secs?|s)"
_DURATION_PART = re.compile(r"([0-9]+)\s*" + _UNIT + r"\b", re.IGNORECASE | re.ASCII)
_DURATION_FULL = re.compile(r"\s*(?:[0-9]+\s*" + _UNIT + r"\s*,?\s*)+", re.IGNORECASE | re.ASCII)
MAX_DURATION = timedelta(days=3660)  # ten years: further out, date arithmetic would overflow
_CLOCK = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


def parse_duration(text: str) -> timedelta:
    """Parse a human duration such as ``"2d"``, ``"24h"``, ``"1 day 2 hours"``, ``"90m"``."""
    if not isinstance(text, str) or not _DURATION_FULL.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration (use e.g. '30m', '24h', '2d', '1d 12h')")
    seconds = 0
    for amount, unit in _DURATION_PART.findall(text):
        if len(amount.lstrip("0")) > 9:
            raise ValueError(f"{text!r} is longer than {MAX_DURATION.days} days")
        seconds += int(amount) * {"d": 86400, "h": 3600, "m": 60}.get(unit.lower()[0], 1)
        if seconds > MAX_DURATION.total_seconds():
            raise ValueError(f"{text!r} is longer than {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)


def split_duration(text: str) -> tuple[int, timedelta]:
    """Split a duration into whole calendar days and the remaining exact time.

    Days are applied on the local calendar (so "2d before 09:00" stays 09:00 across a DST
    change); hours and smaller are applied as exact elapsed time.
    """
    days = 0
    rest = timedelta()
    for amount, unit in _DURATION_PART.findall(text):
        n = int(amount)
        u = unit.lower()[0]
        if u == "d":
            days += n
        elif u == "h":
            rest += timedelta(hours=n)
        elif u == "m":
            rest += timedelta(minutes=n)
        else:
            rest += timedelta(seconds=n)
    return days, rest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameter(_Strict):
    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Parameter name, matched case-insensitively"
    )
    type: ParameterType = "string"
    required: bool = True
    identifier: bool = Field(
        default=False, description="Part of the instance identifier (used to find instances for subflows)"
    )
    search: Literal["exact", "prefix"] = Field(
        default="exact",
        description=(
            "How instance search may match it when patient data is encrypted: exact (equals, in) or "
            "prefix (also startsWith, 1 to 12 characters, e.g. a day of a datetime: 12 more index "
            "rows per instance)"
        ),
    )
    description: str | None = None

    @property
    def prefix_searchable(self) -> bool:
        return self.search == "prefix"


class _Step(_Strict):
    id: int = Field(ge=0, description="Step id, unique within the journey; shown as stepId")
    name: str | None = None
    next: int | None = Field(default=None, description="Step to go to next; defaults to the following step")


class SendSmsStep(_Step):
    type: Literal["send_sms"]
    to: str = Field(description="Name of a phone parameter")
    body: str = Field(min_length=1, description="Jinja2 template; parameters are variables")
    frequency_cap: bool = Field(
        default=True, description="Count against and obey the journey's frequency cap (false: transactional)"
    )
    send_window: bool = Field(default=True, description="Hold the send until the journey's send window opens")
    send_before: str | None = Field(
        default=None,
        description=(
            "A datetime parameter (e.g. the appointment): the text is not sent at or after that time "
            "(held, deferred or late, it is skipped and the timeline says why)"
        ),
    )


class SendEmailStep(_Step):
    type: Literal["send_email"]
    to: str = Field(description="Name of an email parameter")
    subject: str = Field(min_length=1, description="Jinja2 template")
    body: str = Field(min_length=1, description="Plain-text body, Jinja2 template")
    html: str | None = Field(default=None, description="Optional HTML body, Jinja2 template (autoescaped)")
    send_window: bool = Field(
        default=False, description="Hold the send until the journey's send window opens"
    )
    send_before: str | None = Field(
        default=None,
        description="A datetime parameter: the email is not sent at or after that time (skipped, recorded)",
    )


class HttpRequestStep(_Step):
    type: Literal["http_request"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str | None = Field(
        default=None, min_length=1, description="Jinja2 template rendering to an http(s) URL (or give 'api')"
    )
    api: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_-]{0,63}$",
        description="A registered API of the org (`journeys api set`): its base URL and credentials",
    )
    path: str | None = Field(
        default=None,
        description="With 'api': a Jinja2 template after its base URL, e.g. '/patients/{{ patientId }}'",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Header values are Jinja2 templates")
    body: Any = Field(default=None, description="JSON body; every string inside is a Jinja2 template")
    timeout: str = Field(default="10s", description="e.g. '10s', '1m'")
    save: dict[str, str] = Field(
        default_factory=dict,
        description="Parameter name -> dotted path into the JSON response (e.g. 'data.status') to save",
    )
    on_failure: int | None = Field(
        default=None, description="Step to go to on a non-2xx answer, timeout or network error; unset: fail"
    )

    @field_validator("timeout")
    @classmethod
    def _check_timeout(cls, v: str) -> str:
        if not timedelta(seconds=1) <= parse_duration(v) <= timedelta(seconds=60):
            raise ValueError("an http_request timeout must be from 1s to 60s")
        return v


DEFAULT_REPLY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "confirmed": ("c", "confirm", "confirmed", "yes", "y"),
    "reschedule": ("r", "reschedule"),
}


class ReplyRoute(_Strict):
    outcome: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Name of this branch, e.g. 'confirmed'")
    match: list[str] | None = Field(
        default=None,
        description=(
            "Keywords (case-insensitive, surrounding spaces and punctuation ignored); defaults for "
            "'confirmed': C, confirm, confirmed, yes, y; for 'reschedule': R, reschedule"
        ),
    )
    next: int | None = Field(default=None, description="Step for this outcome; default: the following step")

    def keywords(self) -> tuple[str, ...]:
        if self.match is not None:
            return tuple(normalise_reply(k) for k in self.match)
        return DEFAULT_REPLY_KEYWORDS.get(self.outcome, ())


def normalise_reply(text: str) -> str:
    return text.strip().strip(".,!?;:'\"()[] ").strip().lower()


class WaitForReplyStep(_Step):
    type: Literal["wait_for_reply"]
    to: str = Field(description="Name of the phone parameter whose replies are awaited")
    timeout: str = Field(description="How long to wait, e.g. '24h', '2d'")
    save_reply_to: str | None = Field(
        default=None, description="Optional string parameter to save the reply text in"
    )
    replies: list[ReplyRoute] = Field(default_factory=list)
    on_other: int | None = Field(
        default=None, description="Step for any other reply; default: the following step"
    )
    on_timeout: int | None = Field(default=None, description="Step when no reply came in time ('no_reply')")

    @field_validator("timeout")
    @classmethod
    def _check_timeout(cls, v: str) -> str:
        parse_duration(v)
        return v


class Condition(_Strict):
    """One test, or a combination. Exactly one of the tests below must be given."""

    parameter: str | None = Field(default=None, description="Parameter the test applies to")
    equals: str | None = None
    not_equals: str | None = None
    in_: list[str] | None = Field(default=None, alias="in")
    empty: bool | None = Field(default=None, description="true: the parameter is missing or blank")
    before: str | None = Field(
        default=None,
        description="Datetime parameter is before 'now', 'now+2d', 'now-3h' or another datetime parameter",
    )
    after: str | None = Field(default=None, description="Like 'before', the other way")
    reply: str | None = Field(default=None, description="The last wait_for_reply outcome equals this")
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(default=None, alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        tests = [
            n
            for n in (
                "equals",
                "not_equals",
                "in_",
                "empty",
                "before",
                "after",
                "reply",
                "all",
                "any",
                "not_",
            )
            if getattr(self, n) is not None
        ]
        if len(tests) != 1:
            names = ", ".join(t.rstrip("_") for t in tests) or "none"
            raise ValueError(
                "a condition needs exactly one of: equals, not_equals, in, empty, before, after, reply, all, "
                f"any, not (given: {names})"
            )
        needs_param = tests[0] in ("equals", "not_equals", "in_", "empty", "before", "after")
        if needs_param and not self.parameter:
            raise ValueError(f"'{tests[0].rstrip('_')}' needs 'parameter'")
        if not needs_param and self.parameter:
            raise ValueError(f"'{tests[0].rstrip('_')}' does not take 'parameter'")
        for bound in (self.before, self.after):
            if bound is not None and bound.startswith("now") and bound != "now":
                parse_duration(bound[3:].lstrip("+-"))
        return self

    def walk(self) -> list[Condition]:
        out = [self]
        for child in (self.all or []) + (self.any or []) + ([self.not_] if self.not_ else []):
            out.extend(child.walk())
        return out


class BranchCase(_Strict):
    when: Condition
    next: int = Field(description="Step to go to when the condition holds")


class BranchStep(_Step):
    type: Literal["branch"]
    cases: list[BranchCase] = Field(min_length=1, description="Tried in order; the first that holds wins")
    else_: int | None = Field(
        default=None, alias="else", description="Step when no case holds; default: following"
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SetParametersStep(_Step):
    type: Literal["set_parameters"]
    values: dict[str, str] = Field(
        min_length=1, description="Parameter name -> Jinja2 template of its new value"
    )


class GotoStep(_Step):
    type: Literal["goto"]
    target: int = Field(description="Step id to continue at, in this flow or another")


class WaitStep(_Step):
    type: Literal["wait"]
    duration: str = Field(description="e.g. '30m', '2h', '1d 12h'")

    @field_validator("duration")
    @classmethod
    def _check_duration(cls, v: str) -> str:
        parse_duration(v)
        return v


class WaitUntilStep(_Step):
    type: Literal["wait_until"]
    parameter: str = Field(description="Name of a datetime parameter")
    before: str | None = Field(default=None, description="Duration before the parameter's time")
    after: str | None = Field(default=None, description="Duration after the parameter's time")
    at: str | None = Field(default=None, description="Local time of day HH:MM, applied after the day offset")
    if_past: Literal["skip", "run_now"] = Field(
        default="skip",
        description=(
            "When the computed time has already passed: 'skip' goes on at once and skips the next send "
            "(it was meant for that time); 'run_now' goes on at once and sends."
        ),
    )

    @field_validator("before", "after")
    @classmethod
    def _check_offset(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("at")
    @classmethod
    def _check_at(cls, v: str | None) -> str | None:
        if v is not None and not _CLOCK.match(v):
            raise ValueError(f"{v!r} is not a time of day (use HH:MM, 24-hour)")
        return v


class EndStep(_Step):
    type: Literal["end"]
    outcome: str | None = Field(default=None, description="Outcome recorded on the instance's timeline")


Step = Annotated[
    SendSmsStep
    | SendEmailStep
    | HttpRequestStep
    | WaitStep
    | WaitUntilStep
    | WaitForReplyStep
    | BranchStep
    | SetParametersStep
    | GotoStep
    | EndStep,
    Field(discriminator="type"),
]
STEP_TYPES = (
    "send_sms",
    "send_email",
    "http_request",
    "wait",
    "wait_until",
    "wait_for_reply",
    "branch",
    "set_parameters",
    "goto",
    "end",
)
WAITING_STEP_TYPES = ("wait", "wait_until", "wait_for_reply")


class SendWindow(_Strict):
    """Quiet hours, in the instance's time zone: sends due outside [start, end) wait for the next opening."""

    start: str = "08:00"
    end: str = "21:00"

    @field_validator("start", "end")
    @classmethod
    def _check_clock(cls, v: str) -> str:
        if not _CLOCK.match(v):
            raise ValueError(f"{v!r} is not a time of day (use HH:MM, 24-hour)")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> SendWindow:
        if _minutes(self.start) >= _minutes(self.end):
            raise ValueError("the send window's start must be before its end")
        return self


class FrequencyCap(_Strict):
    """SMS per phone number per org (default: the healthcare TCPA exemption's 1 a day, 3 a week)."""

    per_day: int | None = Field(
        default=1, ge=1, description="Per calendar day in the instance's zone; null: no limit"
    )
    per_7_days: int | None = Field(default=3, ge=1, description="Per rolling 7 days; null: no limit")
    when_capped: Literal["defer", "skip"] = Field(
        default="defer",
        description=(
            "A capped send: 'defer' waits for the next day (at the send window's opening) and tries "
            "again, for up to 7 days and only while before the step's send_before; 'skip' records "
            "it as capped and moves on"
        ),
    )


def _minutes(clock: str) -> int:
    hh, mm = clock.split(":")
    return int(hh) * 60 + int(mm)


class Flow(_Strict):
    id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Flow id; a subflow's id is the API's flowId"
    )
    name: str = Field(min_length=1, description="Shown as flowName")
    main: bool = False
    steps: list[Step] = Field(min_length=1)


class JourneyDefinition(_Strict):
    name: str = Field(
        min_length=1, description="Journey name (journeyBotName); publishing it again makes a new version"
    )
    description: str | None = None
    parameters: list[Parameter] = Field(default_factory=list)
    send_window: SendWindow | None = Field(
        default_factory=SendWindow,
        description="Quiet hours for sends (default 08:00-21:00 local); null: none",
    )
    frequency_cap: FrequencyCap | None = Field(
        default_factory=FrequencyCap, description="SMS frequency cap per phone number; null: none"
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="Days an ended instance keeps its patient data before it is reduced to a tombstone "
        "(default: the org's retention, 365 days unless set)",
    )
    flows: list[Flow] = Field(min_length=1)

    # --- derived helpers (no I/O) ---
    @property
    def main_flow(self) -> Flow:
        for flow in self.flows:
            if flow.main:
                return flow
        return self.flows[0]

    def flow(self, flow_id: str) -> Flow | None:
        for flow in self.flows:
            if flow.id == flow_id:
                return flow
        return None

    def subflow(self, flow_id: str) -> Flow | None:
        flow = self.flow(flow_id)
        if flow is None or flow is self.main_flow:
            return None
        return flow

    @property
    def identifier_parameters(self) -> list[Parameter]:
        return [p for p in self.parameters if p.identifier]

    def parameter(self, name: str) -> Parameter | None:
        lowered = name.lower()
        for p in self.parameters:
            if p.name.lower() == lowered:
                return p
        return None

    def has_datetime_parameters(self) -> bool:
        return any(p.type == "datetime" for p in self.parameters)
