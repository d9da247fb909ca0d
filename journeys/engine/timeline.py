"""Timeline events: one row per thing that happened to an instance. Details never hold PHI
(no parameter values, names, phone numbers or message bodies)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from datetime import datetime
from typing import Any

import orjson

_counter = itertools.count()
_lock = threading.Lock()
_node = os.urandom(2).hex()


def new_event_id() -> str:
    """A time-ordered id: ns timestamp, process-local sequence, random node (32 chars)."""
    with _lock:
        seq = next(_counter) & 0xFFFFFF
    return f"{time.time_ns():020d}{seq:06x}{_node}"[:32]


def event_row(
    org_id: str,
    instance_id: str,
    at: datetime,
    flow_id: str | None,
    flow_name: str | None,
    step_id: int | None,
    kind: str,
    detail: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "instance_id": instance_id,
        "event_id": event_id or new_event_id(),
        "at": at,
        "flow_id": flow_id,
        "flow_name": flow_name,
        "step_id": step_id,
        "kind": kind,
        "detail": orjson.dumps(detail).decode("utf-8") if detail else "{}",
    }
