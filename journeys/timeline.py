"""Timeline events: one per thing that happened to an instance. Details never hold PHI
(no parameter values, names, phone numbers or message bodies). The store writes them
(`journeys.store.events`); `journeys.webhooks.events.record_events` is the way in."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from journeys.ids import new_event_id
from journeys.records import TimelineEvent

__all__ = ["TimelineEvent", "event_row", "new_event_id"]

_NO_DETAIL: Mapping[str, Any] = MappingProxyType({})


def event_row(
    org_id: str,
    instance_id: str,
    at: datetime,
    flow_id: str | None,
    flow_name: str | None,
    step_id: int | None,
    kind: str,
    detail: Mapping[str, Any] | None = None,
    event_id: str | None = None,
) -> TimelineEvent:
    """A new timeline event (a new time-ordered id unless `event_id` is given)."""
    return TimelineEvent(
        org_id,
        instance_id,
        event_id or new_event_id(),
        at,
        flow_id,
        flow_name,
        step_id,
        kind,
        detail or _NO_DETAIL,
    )
