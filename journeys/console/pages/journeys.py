"""Journeys: every journey of the org with its latest version."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

import journeys.catalog.service as catalog
from journeys.accounts.roles import Permission
from journeys.console import web
from journeys.console.web import Staff
from journeys.store.db import read_only

router = APIRouter(prefix=web.PREFIX)


@router.get("/journeys", include_in_schema=False)
async def journeys_page(request: Request, staff: Staff = Depends(web.allowed(Permission.READ))) -> Response:
    def load() -> list[catalog.JourneyVersion]:
        with read_only(request.app.state.engine) as conn:
            return catalog.list_latest(conn, staff.org_id)

    found = await run_in_threadpool(load)
    return web.render(request, "journeys.html", staff=staff, journeys=found)
