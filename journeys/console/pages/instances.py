"""Find a patient (search a journey's instances with the API's filters) and the instance page
(parameters, status, timeline) with its actions: cancel, and start a subflow. HTTP only: the
API's parser and services do the work; each search, view and action is audited."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

import journeys.catalog.service as catalog
from journeys.accounts import audit
from journeys.accounts.audit import Action
from journeys.accounts.roles import Permission
from journeys.catalog.service import JourneyVersion
from journeys.console import web
from journeys.console.search_form import DATE_FIELD_LABELS, OPERATOR_LABELS, TAKES, SearchForm
from journeys.console.web import FormAction, Staff
from journeys.errors import Invalid, NotFound
from journeys.instances import service as instance_service
from journeys.instances.detail import InstanceDetail, instance_detail, start_subflow
from journeys.instances.search import SearchError, parse_search
from journeys.instances.trigger import ConcurrentChange
from journeys.store.db import read_only, transaction
from journeys.store.tables import STATUSES

router = APIRouter(prefix=web.PREFIX)
SUBFLOW_ATTEMPTS = 3  # as the API: a subflow trigger that lost a race is tried again
NOTICES = {"cancelled": "The instance was cancelled.", "subflow": "The subflow was started."}
PARAM = "p."  # the subflow form's parameter fields: p.<name>


def _journey(conn: Connection, org_id: str, journey_id: str) -> JourneyVersion:
    jv = catalog.get_latest(conn, org_id, journey_id)
    if jv is None:
        raise NotFound(f"journey {journey_id} not found")
    return jv


# ---------------------------------------------------------------------------- find a patient
@dataclass(frozen=True)
class Found:
    """A search result as the page lists it."""

    instance_id: str
    status: str
    parameters: dict[str, str]
    created_at: datetime
    last_event_at: datetime | None
    last_flow_name: str | None
    last_step_id: int | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Found:
        return cls(
            row["instance_id"],
            row["status"],
            row["parameters"],
            row["created_at"],
            row["last_event_at"],
            row["last_flow_name"],
            row["last_step_id"],
        )


@router.get("/instances", include_in_schema=False)
async def find_page(request: Request, staff: Staff = Depends(web.allowed(Permission.READ))) -> Response:
    form = SearchForm.from_query(request.query_params)
    state = request.app.state

    def work() -> tuple[dict[str, Any], int]:
        with read_only(state.engine) as conn:
            journeys = catalog.list_latest(conn, staff.org_id)
            if form.journey_id:
                chosen: JourneyVersion | None = _journey(conn, staff.org_id, form.journey_id)
            else:
                chosen = journeys[0] if journeys else None
            context: dict[str, Any] = {"journeys": journeys, "chosen": chosen, "problems": [], "rows": None}
            if chosen is None or not form.submitted:
                return context, 200
            built = form.body()
            try:
                if built.problems:
                    raise SearchError(list(built.problems))
                known = {p.name for p in chosen.definition.parameters}
                settings = state.settings
                query = parse_search(
                    built.body, known, settings.search_default_take, settings.search_max_take
                )
                phi = state.vault.org(staff.org_id)
                rows = instance_service.search(conn, chosen, replace(query, take=query.take + 1), phi)
            except Invalid as exc:  # SearchError, or a condition encrypted values cannot answer
                context["problems"] = [built.explain(m) for m in exc.messages]
                return context, 400
        context.update(
            rows=[Found.of(r) for r in rows[: query.take]],
            more=len(rows) > query.take,
            skip=query.skip,
            take=query.take,
        )
        web.record(
            request, staff, Action.INSTANCES_SEARCH,
            target_kind="journey", target_ids=(chosen.journey_id,), count=len(context["rows"]),
        )  # fmt: skip
        return context, 200

    context, status = await run_in_threadpool(work)
    return web.render(
        request,
        "instances.html",
        staff=staff,
        status=status,
        form=form,
        statuses=STATUSES,
        operators=OPERATOR_LABELS,
        date_fields=DATE_FIELD_LABELS,
        takes=TAKES,
        **context,
    )


@router.get("/instances/conditions", include_in_schema=False)
async def conditions(
    request: Request, journey: str = "", staff: Staff = Depends(web.allowed(Permission.READ))
) -> Response:
    """The condition rows for another journey's parameters (htmx swaps them in when the journey
    select changes)."""

    def load() -> JourneyVersion:
        with read_only(request.app.state.engine) as conn:
            return _journey(conn, staff.org_id, journey)

    chosen = await run_in_threadpool(load)
    form = SearchForm(journey_id=chosen.journey_id)
    return web.render(
        request, "instance_conditions.html", staff=staff, form=form, chosen=chosen, operators=OPERATOR_LABELS
    )


# ---------------------------------------------------------------------------- the instance page
def _instance_page(
    request: Request,
    staff: Staff,
    journey_id: str,
    instance_id: str,
    *,
    status: int = 200,
    problems: list[str] | None = None,
    values: dict[str, str] | None = None,
    flow: str = "",
) -> Response:
    """Load and render the instance page (called in a thread), and audit the view."""
    state = request.app.state
    with read_only(state.engine) as conn:
        jv = _journey(conn, staff.org_id, journey_id)
        detail = instance_detail(conn, jv, instance_id, state.clock.now(), state.vault.org(staff.org_id))
    web.record(request, staff, Action.INSTANCE_VIEW, target_kind="instance", target_ids=(instance_id,))
    return web.render(
        request,
        "instance.html",
        staff=staff,
        status=status,
        d=detail,
        notice=NOTICES.get(request.query_params.get("done", "")),
        problems=problems or [],
        values=values or {},
        flow=flow,
        titles=EVENT_TITLES,
    )


@router.get("/instances/{journey_id}/{instance_id}", include_in_schema=False)
async def instance_page(
    request: Request, journey_id: str, instance_id: str, staff: Staff = Depends(web.allowed(Permission.READ))
) -> Response:
    return await run_in_threadpool(_instance_page, request, staff, journey_id, instance_id)


def _back(journey_id: str, instance_id: str, done: str) -> Response:
    path = f"{web.PREFIX}/instances/{quote(journey_id, safe='')}/{quote(instance_id, safe='')}"
    return RedirectResponse(f"{path}?done={done}", status_code=303)


@router.post("/instances/{journey_id}/{instance_id}/cancel", include_in_schema=False)
async def cancel(
    request: Request,
    journey_id: str,
    instance_id: str,
    action: FormAction = Depends(web.form_action(Permission.CANCEL)),
) -> Response:
    state = request.app.state

    def work() -> None:
        with transaction(state.engine) as conn:
            jv = _journey(conn, action.staff.org_id, journey_id)
            done = instance_service.cancel(conn, jv, instance_id, state.clock.now, by="console")
            entry = web.audit_entry(
                request, action.staff, Action.INSTANCES_CANCEL,
                target_kind="instance", target_ids=(instance_id,), count=int(done),
            )  # fmt: skip
            audit.record(conn, entry)

    await run_in_threadpool(work)
    return _back(journey_id, instance_id, "cancelled")


@router.post("/instances/{journey_id}/{instance_id}/subflow", include_in_schema=False)
async def subflow(
    request: Request,
    journey_id: str,
    instance_id: str,
    action: FormAction = Depends(web.form_action(Permission.TRIGGER)),
) -> Response:
    state = request.app.state
    flow = action.text("flow")
    given = {k[len(PARAM) :]: action.text(k) for k in action.form if k.startswith(PARAM)}

    def work() -> None:
        phi = state.vault.org(action.staff.org_id)  # before the transaction (journeys.keys.phi)
        for attempt in range(SUBFLOW_ATTEMPTS):
            try:
                with transaction(state.engine) as conn:
                    jv = _journey(conn, action.staff.org_id, journey_id)
                    start_subflow(conn, jv, instance_id, flow, given, state.clock.now(), phi)
                    entry = web.audit_entry(
                        request, action.staff, Action.INSTANCES_TRIGGER,
                        target_kind="instance", target_ids=(instance_id,), count=1,
                    )  # fmt: skip
                    audit.record(conn, entry)
                return
            except ConcurrentChange:
                if attempt == SUBFLOW_ATTEMPTS - 1:
                    raise

    try:
        await run_in_threadpool(work)
    except Invalid as exc:
        return await run_in_threadpool(
            _instance_page, request, action.staff, journey_id, instance_id,
            status=400, problems=exc.messages, values=given, flow=flow,
        )  # fmt: skip
    state.wake_worker()
    return _back(journey_id, instance_id, "subflow")


# What each kind of timeline event is called on the page (others: the kind, in words).
EVENT_TITLES = {
    "started": "Started",
    "subflow_started": "Subflow started",
    "sms_queued": "Text message written",
    "email_queued": "Email written",
    "sms_sent": "Text message sent",
    "email_sent": "Email sent",
    "sms_retry": "Text message not sent yet: will retry",
    "email_retry": "Email not sent yet: will retry",
    "sms_failed": "Text message failed",
    "email_failed": "Email failed",
    "sms_status": "Delivery status",
    "sms_dropped": "Text message dropped",
    "email_dropped": "Email dropped",
    "sms_skipped": "Text message skipped",
    "email_skipped": "Email skipped",
    "sms_capped": "Text message not sent: frequency cap",
    "sms_deferred": "Text message deferred by the frequency cap",
    "send_held": "Send held",
    "wait": "Waiting",
    "wait_skipped": "Wait skipped: its time had passed",
    "waiting_for_reply": "Waiting for a reply",
    "reply_arrived": "Reply arrived",
    "reply_received": "Reply read",
    "reply_skipped": "Reply step skipped",
    "reply_timeout": "No reply in time",
    "branch": "Branch",
    "goto": "Go to",
    "set_parameters": "Parameters set",
    "http_request": "HTTP request",
    "http_failed": "HTTP request failed",
    "opted_out": "Patient opted out",
    "cancelled": "Cancelled",
    "completed": "Completed",
    "end": "Ended",
    "failed": "Failed",
}

__all__ = ["InstanceDetail", "router"]
