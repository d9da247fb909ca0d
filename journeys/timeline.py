"""Timeline events: one row per thing that happened to an instance. Details never hold PHI
(no parameter values, names, phone numbers or message bodies)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from journeys.ids import new_event_id

__all__ = ["event_row", "new_event_id"]


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
