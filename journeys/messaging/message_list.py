"""The staff console's list of an org's outgoing messages: the outbox and the sends held at their
step, filtered (status, channel, journey, dates) and paged newest first (services; never commit).

Paging is by keyset — a cursor naming the last row shown, (time, id) — so a page costs the same
deep in a clinic's millions of messages as on the first page. The outbox and the held sends are
two sources merged by time; a held send's channel is known only from its step, so the channel
filter is applied to held sends after they are read (a page may then show fewer rows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.engine import Connection

from journeys.definitions.values import has_nul
from journeys.errors import Invalid
from journeys.keys.phi import OrgPhi
from journeys.messaging.outgoing import HOLD_HORIZON, OutgoingMessage, from_hold, from_outbox
from journeys.messaging.provider_errors import ErrorExplanation, explain
from journeys.store import messages as repo

# What staff filter by, and the outbox statuses each stands for.
STATUS_GROUPS: dict[str, tuple[str, ...]] = {
    "queued": ("queued", "sending"),
    "sent": ("sent", "delivered"),
    "failed": ("failed", "undelivered"),
    "dropped": ("dropped",),
    "held": (),  # waiting at their step: no outbox row yet
}
CHANNELS = ("sms", "email")
MAX_PAGE = 200
_CURSOR = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)~([A-Za-z0-9_+-]{1,64})$")


class MessageListError(Invalid):
    pass


@dataclass(frozen=True, slots=True)
class MessageFilter:
    status: str | None = None  # a key of STATUS_GROUPS
    channel: str | None = None
    journey_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class ListedMessage:
    message: OutgoingMessage
    error: ErrorExplanation | None  # the provider's error code, explained
    cursor: str  # names this row's place, for the next page


@dataclass(frozen=True, slots=True)
class MessagePage:
    messages: list[ListedMessage]
    next_cursor: str | None  # None: this is the last page


def _day(value: str, name: str, problems: list[str]) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problems.append(f"{name}: must be a date such as 2026-11-02")
        return None


def parse_filter(status: str, channel: str, journey_id: str, date_from: str, date_to: str) -> MessageFilter:
    """The filter from a form's fields (empty: any); MessageListError naming every problem.
    Dates are whole UTC days, both inclusive."""
    problems = []
    if status and status not in STATUS_GROUPS:
        problems.append(f"status: one of {', '.join(STATUS_GROUPS)}")
    if channel and channel not in CHANNELS:
        problems.append(f"channel: one of {', '.join(CHANNELS)}")
    if len(journey_id) > 64 or has_nul(journey_id):
        problems.append("journey: not a journey id")
    first = _day(date_from, "from", problems)
    last = _day(date_to, "to", problems)
    if first and last and last < first:
        problems.append("to: must not be before from")
    if problems:
        raise MessageListError(problems)
    return MessageFilter(
        status=status or None,
        channel=channel or None,
        journey_id=journey_id or None,
        since=datetime.combine(first, datetime.min.time(), UTC) if first else None,
        until=_day_after(last) if last else None,
    )


def _day_after(day: date) -> datetime | None:
    if day == date.max:  # no later day: no upper bound
        return None
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)


def make_cursor(at: datetime, key: str) -> str:
    return f"{at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}~{key}"


def parse_cursor(value: str) -> tuple[datetime, str] | None:
    """A page cursor from a link; MessageListError when it is not one of ours."""
    if not value:
        return None
    found = _CURSOR.match(value)
    try:
        if found is None:
            raise ValueError(value)
        at = datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise MessageListError(["after: not a page of this list (start again from the first page)"]) from None
    return at, found.group(2)


def page_messages(
    conn: Connection, phi: OrgPhi, now: datetime, flt: MessageFilter, after: str, limit: int
) -> MessagePage:
    """One page of the org's messages, newest first, after the cursor `after` ("" for the first)."""
    org_id = phi.org_id
    limit = max(1, min(limit, MAX_PAGE))
    before = parse_cursor(after)
    rows: list[tuple[datetime, str, OutgoingMessage | None]] = []
    if flt.status != "held":
        statuses = STATUS_GROUPS[flt.status] if flt.status else None
        for r in repo.page_outbox(
            conn, org_id, statuses=statuses, channel=flt.channel, journey_id=flt.journey_id,
            since=flt.since, until=flt.until, before=before, limit=limit + 1,
        ):  # fmt: skip
            rows.append((r["created_at"], r["message_id"], from_outbox(r, phi)))
    if flt.status in (None, "held"):
        for r in repo.page_held_sends(
            conn, org_id, horizon=now - HOLD_HORIZON, journey_id=flt.journey_id,
            since=flt.since, until=flt.until, before=before, limit=limit + 1,
        ):  # fmt: skip
            held = from_hold(conn, r, phi)
            rows.append((r["at"], r["event_id"], held if flt.channel in (None, held.channel) else None))
    rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
    taken = rows[:limit]  # the rows this page accounts for (filtered held sends included)
    shown = [
        ListedMessage(m, explain(m.error_code, m.provider, m.channel), make_cursor(at, key))
        for at, key, m in taken
        if m is not None
    ]
    more = len(rows) > limit
    return MessagePage(shown, make_cursor(taken[-1][0], taken[-1][1]) if more else None)
