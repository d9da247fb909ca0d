"""The journey definition model.

A definition is what a designer writes (YAML or JSON) and what `journeys journey publish`
stores as an immutable version. The pydantic models below are the single source of truth for
its shape: the loader validates against them, and `journeys journey schema` prints their JSON
Schema. Cross-references (step targets, parameter names) are checked by `validator.py`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ParameterType = Literal["string", "datetime", "phone", "email", "number"]

_DURATION_PART = re.compile(r"(\d+)\s*(days?|d|hours?|h|minutes?|mins?|m|seconds?|secs?|s)\b", re.IGNORECASE)
_DURATION_FULL = re.compile(
    r"^\s*(?:\d+\s*(?:days?|d|hours?|h|minutes?|mins?|m|seconds?|secs?|s)\s*,?\s*)+$", re.IGNORECASE
)
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_duration(text: str) -> timedelta:
    """Parse a human duration such as ``"2d"``, ``"24h"``, ``"1 day 2 hours"``, ``"90m"``."""
    if not isinstance(text, str) or not _DURATION_FULL.match(text):
        raise ValueError(f"{text!r} is not a duration (use e.g. '30m', '24h', '2d', '1d 12h')")
    total = timedelta()
    for amount, unit in _DURATION_PART.findall(text):
        n = int(amount)
        u = unit.lower()[0]
        total += {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}.get(
            u, timedelta(seconds=n)
        )
    return total


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
    description: str | None = None


class _Step(_Strict):
    id: int = Field(ge=0, description="Step id, unique within the journey; shown as stepId")
    name: str | None = None
    next: int | None = Field(default=None, description="Step to go to next; defaults to the following step")


class SendSmsStep(_Step):
    type: Literal["send_sms"]
    to: str = Field(description="Name of a phone parameter")
    body: str = Field(min_length=1, description="Jinja2 template; parameters are variables")


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


Step = Annotated[SendSmsStep | WaitStep | WaitUntilStep | EndStep, Field(discriminator="type")]
STEP_TYPES = ("send_sms", "wait", "wait_until", "end")


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
