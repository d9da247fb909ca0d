"""Journeys: every journey of the org with its versions and instances by status; a journey's
version drawn as a graph with live counts at each step; the instances at a step."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

import journeys.catalog.overview as overview
from journeys.accounts.audit import Action
from journeys.accounts.roles import Permission
from journeys.console import web
from journeys.console.graph import layout
from journeys.console.web import Staff
from journeys.errors import NotFound
from journeys.store.db import read_only
from journeys.store.tables import STATUSES

router = APIRouter(prefix=web.PREFIX)


@router.get("/journeys", include_in_schema=False)
async def journeys_page(request: Request, staff: Staff = Depends(web.allowed(Permission.READ))) -> Response:
    def load() -> list[overview.JourneySummary]:
        with read_only(request.app.state.engine) as conn:
            return overview.summaries(conn, staff.org_id)

    found = await run_in_threadpool(load)
    return web.render(request, "journeys.html", staff=staff, journeys=found, statuses=STATUSES)


@router.get("/journeys/{journey_id}", include_in_schema=False)
async def journey_page(
    request: Request,
    journey_id: str,
    version: str | None = None,
    period: str | None = None,
    staff: Staff = Depends(web.allowed(Permission.READ)),
) -> Response:
    number = overview.parse_version(version)
    period_key, length = overview.parse_period(period)
    now = request.app.state.clock.now()

    def load() -> tuple[overview.ShownVersion, overview.StepCounts]:
        with read_only(request.app.state.engine) as conn:
            jv = overview.journey_version(conn, staff.org_id, journey_id, number)
            return jv, overview.step_counts(conn, jv, now - length)

    jv, counts = await run_in_threadpool(load)
    return web.render(
        request,
        "journey.html",
        staff=staff,
        jv=jv,
        graph=layout(jv.definition),
        counts=counts,
        period=period_key,
        periods=overview.PERIODS,
        period_label=next(label for key, label, _ in overview.PERIODS if key == period_key),
    )


def _step_number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise NotFound(f"there is no step {text[:20]!r}")
    return int(text)


@router.get("/journeys/{journey_id}/steps/{step_id}", include_in_schema=False)
async def step_page(
    request: Request,
    journey_id: str,
    step_id: str,
    version: str | None = None,
    after: str | None = None,
    staff: Staff = Depends(web.allowed(Permission.READ)),
) -> Response:
    number = overview.parse_version(version)
    step = _step_number(step_id)
    after = (after or "")[:64] or None

    def load() -> tuple[overview.ShownVersion, overview.StepPage]:
        with read_only(request.app.state.engine) as conn:
            jv = overview.journey_version(conn, staff.org_id, journey_id, number)
            return jv, overview.instances_at_step(conn, jv, step, after)

    jv, page = await run_in_threadpool(load)
    # A list of patients' instances is a view of patient data: who saw how many, never which values.
    await run_in_threadpool(
        web.record, request, staff, Action.INSTANCES_SEARCH,
        target_kind="journey", target_ids=(jv.journey_id,), count=len(page.instances),
    )  # fmt: skip
    box = next(b for b in layout(jv.definition).boxes if b.step_id == step)
    return web.render(request, "journey_step.html", staff=staff, jv=jv, step=box, page=page, after=after)
