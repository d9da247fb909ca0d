"""Time and condition rules the interpreter applies: wait_until targets, the send window, and
branch conditions. Pure functions of their arguments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from journeys.definitions.model import (
    Condition,
    JourneyDefinition,
    SendWindow,
    WaitUntilStep,
    parse_duration,
    split_duration,
)
from journeys.definitions.values import parse_datetime


def wait_until_target(base_utc: datetime, step: WaitUntilStep, zone: Any) -> datetime:
    """The moment a wait_until step waits for.

    Whole days move along the local calendar (wall-clock), `at` then sets the local time of
    day, and hours/minutes are exact elapsed time; so "2d before at 09:00" is 09:00 local on
    the right day on both sides of a DST change.
    """
    offset = step.before or step.after
    sign = -1 if step.before else 1
    days, rest = split_duration(offset) if offset else (0, timedelta())
    local = base_utc.astimezone(zone)
    if days:
        wall = local.replace(tzinfo=None) + timedelta(days=sign * days)
        local = wall.replace(tzinfo=zone)
    if step.at:
        hh, mm = step.at.split(":")
        local = local.replace(hour=int(hh), minute=int(mm), second=0, microsecond=0, tzinfo=zone)
    return local.astimezone(UTC) + sign * rest


def _clock(text: str) -> tuple[int, int]:
    hh, mm = text.split(":")
    return int(hh), int(mm)


def next_window_opening(now: datetime, window: SendWindow, zone: Any) -> datetime | None:
    """None when `now` is inside the window (local [start, end)); else the next opening."""
    local = now.astimezone(zone)
    sh, sm = _clock(window.start)
    eh, em = _clock(window.end)
    minutes = local.hour * 60 + local.minute
    if sh * 60 + sm <= minutes < eh * 60 + em:
        return None
    day = local.date() if minutes < sh * 60 + sm else local.date() + timedelta(days=1)
    opening = datetime(day.year, day.month, day.day, sh, sm, tzinfo=zone)
    return opening.astimezone(UTC)


def _moment(
    text: str, params: dict[str, str], defn: JourneyDefinition, zone: Any, now: datetime
) -> datetime | None:
    if text == "now":
        return now
    if text.startswith("now"):
        sign = -1 if text[3:].lstrip().startswith("-") else 1
        return now + sign * parse_duration(text[3:].lstrip().lstrip("+-"))
    p = defn.parameter(text)
    raw = params.get(p.name if p else text, "")
    return parse_datetime(raw, zone) if raw else None


def evaluate(
    cond: Condition,
    params: dict[str, str],
    defn: JourneyDefinition,
    zone: Any,
    now: datetime,
    last_reply: str | None,
) -> bool:
    """Whether a branch condition holds. Parameter names are matched case-insensitively;
    values exactly."""
    if cond.all is not None:
        return all(evaluate(c, params, defn, zone, now, last_reply) for c in cond.all)
    if cond.any is not None:
        return any(evaluate(c, params, defn, zone, now, last_reply) for c in cond.any)
    if cond.not_ is not None:
        return not evaluate(cond.not_, params, defn, zone, now, last_reply)
    if cond.reply is not None:
        return last_reply == cond.reply
    assert cond.parameter is not None
    p = defn.parameter(cond.parameter)
    value = params.get(p.name if p else cond.parameter, "") or ""
    if cond.equals is not None:
        return value == cond.equals
    if cond.not_equals is not None:
        return value != cond.not_equals
    if cond.in_ is not None:
        return value in cond.in_
    if cond.empty is not None:
        return (value.strip() == "") == cond.empty
    mine = parse_datetime(value, zone) if value else None
    if mine is None:
        return False
    if cond.before is not None:
        other = _moment(cond.before, params, defn, zone, now)
        return other is not None and mine < other
    if cond.after is not None:
        other = _moment(cond.after, params, defn, zone, now)
        return other is not None and mine > other
    return False  # pragma: no cover - the model requires one test
