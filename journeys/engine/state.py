"""An instance's interpreter state: what the interpreter remembers between runs of the instance.

`InstanceState` is the one place it is read from and written to JSON (the `state` column).
The JSON is the shape stored since the first release — camelCase keys, only those set:
`completeAfterWait`, `skipNextSend`, `held` (step id), `deferred` ({step, since}), `awaiting`
({step, until}), `reply` ({text, at, messageId}), `lastReply`, `outcome`, `http` ({step id:
{ok, status, json, error}}) and `httpKey` ({step, key}) — so existing databases keep working.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec


class Awaiting(msgspec.Struct, frozen=True):
    """Waiting at a wait_for_reply step until `until` (ISO UTC)."""

    step: int
    until: str


class Deferred(msgspec.Struct, frozen=True):
    """A capped send at `step` deferred since `since` (ISO UTC)."""

    step: int
    since: str


class PendingHttp(msgspec.Struct, frozen=True):
    """The idempotency key of the call an http_request step makes (the same on every retry)."""

    step: int
    key: str


class ReplyGiven(msgspec.Struct, frozen=True):
    """A patient's reply handed to the waiting instance."""

    text: str
    at: str | None = None
    message_id: str | None = None


class HttpResult(msgspec.Struct, frozen=True):
    """The outcome of an http_request step's call. `data` is the JSON answer (or None)."""

    ok: bool
    status: int | None
    data: Any
    error: str | None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> HttpResult:
        return cls(bool(raw.get("ok")), raw.get("status"), raw.get("json"), raw.get("error"))

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "status": self.status, "json": self.data, "error": self.error}


class InstanceState(msgspec.Struct, frozen=True):
    complete_after_wait: bool = False  # the flow ended with a wait: complete when it is over
    skip_next_send: bool = False  # a wait_until passed with policy skip
    held: int | None = None  # the send held by the send window
    deferred: Deferred | None = None
    awaiting: Awaiting | None = None
    reply: ReplyGiven | None = None
    last_reply: str | None = None  # the outcome of the last wait_for_reply (for branches)
    outcome: str | None = None  # the end step's outcome
    http: Mapping[str, HttpResult] = msgspec.field(default_factory=dict)  # by str(step id)
    http_key: PendingHttp | None = None

    @classmethod
    def from_json(cls, text: str | None) -> InstanceState:
        if not text:
            return EMPTY
        data = json.loads(text)
        if not isinstance(data, dict) or not data:
            return EMPTY
        return cls(
            complete_after_wait=bool(data.get("completeAfterWait", False)),
            skip_next_send=bool(data.get("skipNextSend", False)),
            held=data.get("held"),
            deferred=_pair(Deferred, data.get("deferred"), "since"),
            awaiting=_pair(Awaiting, data.get("awaiting"), "until"),
            reply=_reply(data.get("reply")),
            last_reply=data.get("lastReply"),
            outcome=data.get("outcome"),
            http={str(k): HttpResult.from_json(v) for k, v in (data.get("http") or {}).items()},
            http_key=_pair(PendingHttp, data.get("httpKey"), "key"),
        )

    def to_json(self) -> str:
        out: dict[str, Any] = {}
        if self.complete_after_wait:
            out["completeAfterWait"] = True
        if self.skip_next_send:
            out["skipNextSend"] = True
        if self.held is not None:
            out["held"] = self.held
        if self.deferred is not None:
            out["deferred"] = {"step": self.deferred.step, "since": self.deferred.since}
        if self.awaiting is not None:
            out["awaiting"] = {"step": self.awaiting.step, "until": self.awaiting.until}
        if self.reply is not None:
            reply: dict[str, Any] = {"text": self.reply.text}
            if self.reply.at is not None:
                reply["at"] = self.reply.at
            if self.reply.message_id is not None:
                reply["messageId"] = self.reply.message_id
            out["reply"] = reply
        if self.last_reply is not None:
            out["lastReply"] = self.last_reply
        if self.outcome is not None:
            out["outcome"] = self.outcome
        if self.http:
            out["http"] = {k: v.to_json() for k, v in self.http.items()}
        if self.http_key is not None:
            out["httpKey"] = {"step": self.http_key.step, "key": self.http_key.key}
        return json.dumps(out, separators=(",", ":")) if out else "{}"


EMPTY = InstanceState()


def _pair(cls: Any, raw: Any, second: str) -> Any:
    if not isinstance(raw, dict) or "step" not in raw:
        return None
    return cls(raw["step"], str(raw.get(second, "")))


def _reply(raw: Any) -> ReplyGiven | None:
    if not isinstance(raw, dict):
        return None
    return ReplyGiven(str(raw.get("text", "")), raw.get("at"), raw.get("messageId"))
