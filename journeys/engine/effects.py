"""What the interpreter takes and returns: the instance it runs, the effects of a run, a
step's result, and the ledger the frequency cap counts with (values only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import msgspec

from journeys.engine.state import EMPTY, InstanceState
from journeys.records import QueuedMessage, TimelineEvent


class StepFailed(Exception):
    """A step cannot run for a reason that retrying will not fix (recorded, instance Failed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.flow_id: str | None = None
        self.flow_name: str | None = None
        self.step_id: int | None = None


class HttpCall(msgspec.Struct, frozen=True):
    """The request an http_request step makes (the worker makes it after the batch commits)."""

    step: int
    method: str
    url: str
    headers: dict[str, str]
    body: Any  # JSON, its strings rendered
    timeout: float  # seconds
    idempotency_key: str  # the same on every retry of the call
    # A registered API of the org: then `url` is the path below its base URL, and the worker adds
    # the base URL and the API's credentials (journeys.registered_apis) when it makes the call.
    api: str | None = None


class Ledger(Protocol):
    """SMS sent per (org, phone): what the frequency cap counts."""

    def count(self, org_id: str, phone: str, since: datetime) -> int: ...

    def add(self, org_id: str, phone: str, at: datetime) -> None: ...

    def opted_out(self, org_id: str, phone: str) -> bool: ...


class NoLedger:
    def count(self, org_id: str, phone: str, since: datetime) -> int:
        return 0

    def add(self, org_id: str, phone: str, at: datetime) -> None:
        return None

    def opted_out(self, org_id: str, phone: str) -> bool:
        return False


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
    state: InstanceState = EMPTY


@dataclass
class Effects:
    status: str = "InProgress"
    flow_id: str | None = None
    step_id: int | None = None
    due_at: datetime | None = None
    state: InstanceState = EMPTY
    parameters: dict[str, str] | None = None  # the new parameters, when a step changed them
    changed: set[str] = field(default_factory=set)  # names of changed parameters
    events: list[TimelineEvent] = field(default_factory=list)
    messages: list[QueuedMessage] = field(default_factory=list)
    reply_phone: str | None = None  # set while waiting for a reply from this number
    http_call: HttpCall | None = None  # a request for the worker to make after commit
    last_event_at: datetime | None = None
    last_flow_name: str | None = None
    last_step_id: int | None = None
    steps_run: int = 0


class Next(msgspec.Struct, frozen=True):
    """A step's result: go on at `step_id` (None: the end of the flow)."""

    step_id: int | None


class Stop(msgspec.Struct, frozen=True):
    """A step's result: the instance waits (or has ended); its Effects are final."""

    complete_after_wait: bool = False  # the flow ends with this wait: complete once it is over


STOP = Stop()
WAIT_AT_END = Stop(complete_after_wait=True)
StepResult = Next | Stop
