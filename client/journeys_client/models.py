"""Typed values for every request and response (frozen dataclasses; times are aware datetimes in
UTC). `from_json` reads the server's camelCase JSON; `to_json` writes a request's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _req_time(text: str) -> datetime:
    moment = _time(text)
    assert moment is not None
    return moment


@dataclass(frozen=True)
class Flow:
    id: str
    name: str
    main: bool


@dataclass(frozen=True)
class ParameterInfo:
    name: str
    type: str
    required: bool
    identifier: bool


@dataclass(frozen=True)
class Journey:
    """A journey (MedChat's chat bot): its id is the `chatBotId` of the instance routes."""

    id: str
    name: str
    flows: tuple[Flow, ...]
    version: int | None = None  # journeys: the latest published version
    parameters: tuple[ParameterInfo, ...] = ()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Journey:
        return cls(
            id=d["id"],
            name=d["name"],
            flows=tuple(Flow(f["id"], f["name"], bool(f.get("main"))) for f in d.get("flows", [])),
            version=d.get("version"),
            parameters=tuple(
                ParameterInfo(p["name"], p["type"], p["required"], p["identifier"])
                for p in d.get("parameters", [])
            ),
        )


@dataclass(frozen=True)
class NewInstance:
    """One instance of a bulk trigger: its parameters (names as the journey declares them)."""

    parameters: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"parameters": dict(self.parameters)}


@dataclass(frozen=True)
class LastStep:
    at: datetime
    flow_name: str
    step_id: int


@dataclass(frozen=True)
class Event:
    at: datetime
    type: str
    flow_id: str | None
    flow_name: str | None
    step_id: int | None
    detail: Mapping[str, Any]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Event:
        return cls(
            _req_time(d["eventDateTime"]),
            d["type"],
            d.get("flowId"),
            d.get("flowName"),
            d.get("stepId"),
            d.get("detail") or {},
        )


@dataclass(frozen=True)
class Instance:
    id: str
    journey_name: str
    status: str  # InProgress | Completed | Cancelled | Failed
    created_at: datetime
    started_at: datetime
    batch_id: str | None
    last_step: LastStep | None
    parameters: Mapping[str, str] | None  # None unless asked for (search's include_parameters)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Instance:
        last = d.get("lastStepExecuted")
        return cls(
            id=d["id"],
            journey_name=d["journeyBotName"],
            status=d["status"],
            created_at=_req_time(d["createdDateTime"]),
            started_at=_req_time(d["startDateTime"]),
            batch_id=d.get("journeyBatchId"),
            last_step=LastStep(_req_time(last["eventDateTime"]), last["flowName"], last["stepId"])
            if last
            else None,
            parameters=d.get("parameters"),
        )


@dataclass(frozen=True)
class InstanceDetail(Instance):
    events: tuple[Event, ...] = ()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> InstanceDetail:
        base = Instance.from_json(d)
        return cls(**{**base.__dict__, "events": tuple(Event.from_json(e) for e in d.get("events", []))})


@dataclass(frozen=True)
class CancelResult:
    """A bulk cancel: how many were cancelled, or (a dry run) how many would be."""

    cancelled: int | None
    would_cancel: int | None


@dataclass(frozen=True)
class Reply:
    id: str
    from_number: str
    body: str
    received_at: datetime
    instance_id: str | None
    matched: bool
    source: str
    kind: str

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Reply:
        return cls(
            d["id"], d["from"], d["body"], _req_time(d["receivedDateTime"]), d.get("instanceId"),
            d["matched"], d["source"], d["kind"],
        )  # fmt: skip


@dataclass(frozen=True)
class ReplyResult:
    id: str
    matched: bool
    instance_id: str | None


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    event_types: tuple[str, ...]
    verified: bool
    verified_at: datetime | None
    created_at: datetime

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Webhook:
        return cls(
            d["id"], d["url"], tuple(d["eventTypes"]), d["verified"], _time(d.get("verifiedDateTime")),
            _req_time(d["createdDateTime"]),
        )  # fmt: skip


@dataclass(frozen=True)
class Delivery:
    id: str
    type: str
    instance_id: str | None
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Delivery:
        return cls(
            d["id"], d["type"], d.get("instanceId"), d["status"], d["attempts"], d.get("lastStatusCode"),
            d.get("lastError"), _time(d.get("nextAttemptDateTime")), _req_time(d["createdDateTime"]),
            _time(d.get("deliveredDateTime")),
        )  # fmt: skip


@dataclass(frozen=True)
class OptOut:
    phone: str
    opted_out: bool
    source: str | None
    keyword: str | None
    reason: str | None
    updated_at: datetime

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> OptOut:
        return cls(
            d["phone"], d["optedOut"], d.get("source"), d.get("keyword"), d.get("reason"),
            _req_time(d["updatedDateTime"]),
        )  # fmt: skip


@dataclass(frozen=True)
class TriggerResult:
    """A bulk trigger, chunked: how many instances were started, in how many requests."""

    triggered: int
    requests: int
    chunk_sizes: tuple[int, ...] = field(default=())
