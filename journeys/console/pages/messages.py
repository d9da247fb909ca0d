"""Messages: the org's outgoing messages (sent, failed, queued, held, dropped), filtered and
paged newest first, with each failure's provider error code explained. Message text is PHI:
every view is audited (the ids of the messages shown, and how many)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

import journeys.catalog.service as catalog
from journeys.accounts.audit import Action
from journeys.accounts.roles import Permission
from journeys.console import web
from journeys.console.web import Staff
from journeys.messaging import message_list
from journeys.messaging.message_list import MessageListError, MessagePage
from journeys.store.db import read_only

router = APIRouter(prefix=web.PREFIX)
PAGE_SIZE = 50
FIELDS = ("status", "channel", "journey", "from", "to")
STATUS_LABELS = [
    ("queued", "Queued (waiting to go)"),
    ("held", "Held at its step"),
    ("sent", "Sent or delivered"),
    ("failed", "Failed or undelivered"),
    ("dropped", "Dropped (not sent)"),
]


@router.get("/messages", include_in_schema=False)
async def messages_page(request: Request, staff: Staff = Depends(web.allowed(Permission.READ))) -> Response:
    query = {name: request.query_params.get(name, "").strip() for name in (*FIELDS, "after")}
    now = request.app.state.clock.now()

    def load() -> tuple[list[catalog.JourneyVersion], MessagePage | None, list[str]]:
        with read_only(request.app.state.engine) as conn:
            journeys = catalog.list_latest(conn, staff.org_id)
            try:
                flt = message_list.parse_filter(
                    query["status"], query["channel"], query["journey"], query["from"], query["to"]
                )
                found = message_list.page_messages(
                    conn, request.app.state.vault.org(staff.org_id), now, flt, query["after"], PAGE_SIZE
                )
            except MessageListError as exc:
                return journeys, None, exc.errors
        ids = tuple(m.message.id for m in found.messages if m.message.id)
        web.record(
            request,
            staff,
            Action.MESSAGES_VIEW,
            target_kind="message",
            target_ids=ids,
            count=len(found.messages),
        )
        return journeys, found, []

    journeys, found, problems = await run_in_threadpool(load)
    filters = {name: query[name] for name in FIELDS if query[name]}
    return web.render(
        request,
        "messages.html",
        staff=staff,
        status=400 if problems else 200,
        query=query,
        problems=problems,
        found=found,
        journeys=journeys,
        journey_names={j.journey_id: j.name for j in journeys},
        statuses=STATUS_LABELS,
        channels=message_list.CHANNELS,
        next_url=_next_url(filters, found),
        first_url=f"{web.PREFIX}/messages" + (f"?{urlencode(filters)}" if filters else ""),
    )


def _next_url(filters: dict[str, str], found: MessagePage | None) -> str | None:
    if found is None or found.next_cursor is None:
        return None
    return f"{web.PREFIX}/messages?" + urlencode({**filters, "after": found.next_cursor})
