"""Design: upload or paste a definition → its problems, with their lines → a preview (the
simulator's timeline for sample parameters and replies) → publish as a new version.

Nothing is kept on the server between the steps: each step's form carries the definition's text
(the page puts it back in the text area) and the sample values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

import journeys.catalog.service as catalog
import journeys.console.pages.design_preview as preview
from journeys.accounts import audit
from journeys.accounts.audit import Action
from journeys.accounts.roles import Permission
from journeys.console import web
from journeys.console.pages.uploads import file_bytes, prefixed, size_text, upload_action, zones
from journeys.console.web import FormAction, Staff
from journeys.definitions.dump import definition_yaml
from journeys.definitions.loader import load_definition_text
from journeys.definitions.model import JourneyDefinition
from journeys.definitions.problems import DefinitionError, Problem
from journeys.definitions.values import get_zone
from journeys.errors import Invalid, NotFound
from journeys.store.db import read_only, transaction

router = APIRouter(prefix=web.PREFIX)

MAX_DEFINITION_BYTES = 256 * 1024
design_form = upload_action(Permission.PUBLISH, MAX_DEFINITION_BYTES, "the definition")


@dataclass
class Draft:
    """The definition as given, and what is wrong with it (`definition` None then)."""

    text: str = ""
    definition: JourneyDefinition | None = None
    problems: list[Problem] = field(default_factory=list)
    dropped: bool = False  # too large: not echoed back


async def _draft(action: FormAction) -> Draft:
    data = await file_bytes(action, "file")
    if data:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            return Draft("", None, [Problem("the file is not UTF-8 text", "", line)], dropped=True)
    else:
        text = action.text("definition")
    if len(text.encode("utf-8")) > MAX_DEFINITION_BYTES:
        limit = size_text(MAX_DEFINITION_BYTES)
        return Draft("", None, [Problem(f"the definition is too large (the limit is {limit})")], dropped=True)
    if not text.strip():
        return Draft(text, None, [Problem("paste a definition or choose a file first")])
    try:
        return Draft(text, load_definition_text(text))
    except DefinitionError as exc:
        return Draft(text, None, exc.problems)


def _journeys(request: Request, staff: Staff) -> list[catalog.JourneyVersion]:
    with read_only(request.app.state.engine) as conn:
        return catalog.list_latest(conn, staff.org_id)


def _page(
    request: Request,
    staff: Staff,
    draft: Draft,
    values: dict[str, str],
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    found = _journeys(request, staff)
    defn = draft.definition
    lines = draft.text.splitlines()
    by_line: dict[int, list[Problem]] = {}
    for problem in draft.problems:
        if problem.line is not None:
            by_line.setdefault(problem.line, []).append(problem)
    existing = next((jv for jv in found if defn is not None and jv.name == defn.name), None)
    context.setdefault("sample_problems", [])
    context.setdefault("timeline", None)
    context.setdefault("published", None)
    return web.render(
        request,
        "design.html",
        staff=staff,
        status=status,
        draft=draft,
        excerpt=_excerpt(lines, by_line),
        values=_with_defaults(request, values),
        journeys=found,
        existing=existing,
        replies=preview.reply_choices(defn) if defn else [],
        http_steps=preview.http_steps(defn) if defn else [],
        zones=zones(),
        **context,
    )


def _excerpt(
    lines: list[str], by_line: dict[int, list[Problem]]
) -> list[tuple[int, str, list[Problem]] | None]:
    """The lines around each problem (two either side), numbered; None where lines are left out."""
    keep = sorted({n for line in by_line for n in range(line - 2, line + 3) if 1 <= n <= len(lines)})
    out: list[tuple[int, str, list[Problem]] | None] = []
    for i, n in enumerate(keep):
        if i and n != keep[i - 1] + 1:
            out.append(None)
        out.append((n, lines[n - 1], by_line.get(n, [])))
    return out


def _with_defaults(request: Request, values: dict[str, str]) -> dict[str, str]:
    out = dict(values)
    out.setdefault("tz", "UTC")
    if not out.get("start"):
        zone = get_zone(out["tz"]) or get_zone("UTC")
        out["start"] = request.app.state.clock.now().astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return out


def _values(action: FormAction) -> dict[str, str]:
    fields = ("tz", "start")
    out = {name: action.text(name) for name in fields}
    for prefix in ("param.", "reply.", "reply_text.", "reply_delay.", "http_status.", "http_json."):
        out.update({prefix + k: v for k, v in prefixed(action, prefix).items()})
    return out


@router.get("/design", include_in_schema=False)
async def design_page(
    request: Request,
    staff: Staff = Depends(web.allowed(Permission.PUBLISH)),
) -> Response:
    """The empty form; `?from=ID`: a copy of that journey's latest definition to edit;
    `?published=ID&version=N`: what was just published."""
    source, published = request.query_params.get("from"), request.query_params.get("published")

    def load(journey_id: str) -> catalog.JourneyVersion:
        with read_only(request.app.state.engine) as conn:
            jv = catalog.get_latest(conn, staff.org_id, journey_id)
        if jv is None:
            raise NotFound(f"there is no journey {journey_id!r} in this organisation")
        return jv

    draft = Draft()
    if source:
        jv = await run_in_threadpool(load, source)
        draft = Draft(definition_yaml(jv.definition), jv.definition)
    done = None
    if published:
        jv = await run_in_threadpool(load, published)
        version = request.query_params.get("version", "")
        done = {"name": jv.name, "id": jv.journey_id, "version": version if version.isdigit() else ""}
    return await run_in_threadpool(_page, request, staff, draft, {}, published=done)


@router.post("/design/check", include_in_schema=False)
async def check(request: Request, action: FormAction = Depends(design_form)) -> Response:
    draft = await _draft(action)
    status = 400 if draft.problems else 200
    return await run_in_threadpool(_page, request, action.staff, draft, _values(action), status=status)


@router.post("/design/preview", include_in_schema=False)
async def preview_page(request: Request, action: FormAction = Depends(design_form)) -> Response:
    draft = await _draft(action)
    values = _values(action)
    if draft.definition is None:
        return await run_in_threadpool(_page, request, action.staff, draft, values, status=400)
    defn = draft.definition

    def run() -> Response:
        sample = preview.read_sample(defn, values)
        if sample.problems:
            return _page(request, action.staff, draft, values, status=400, sample_problems=sample.problems)
        try:
            timeline = preview.run_preview(defn, sample)
        except Invalid as exc:
            return _page(request, action.staff, draft, values, status=400, sample_problems=exc.messages)
        return _page(request, action.staff, draft, values, timeline=timeline, zone=sample.tz)

    return await run_in_threadpool(run)


@router.post("/design/publish", include_in_schema=False)
async def publish(request: Request, action: FormAction = Depends(design_form)) -> Response:
    """A new version (of the journey with the definition's name, or a new journey); audited in
    the same transaction."""
    draft = await _draft(action)
    if draft.definition is None:
        return await run_in_threadpool(_page, request, action.staff, draft, _values(action), status=400)
    defn = draft.definition

    def write() -> catalog.JourneyVersion:
        staff = action.staff
        with transaction(request.app.state.engine) as conn:
            jv = catalog.publish(conn, staff.org_id, defn, request.app.state.clock.now())
            entry = web.audit_entry(
                request, staff, Action.JOURNEY_PUBLISH, target_kind="journey", target_ids=(jv.journey_id,)
            )
            audit.record(conn, entry)
        return jv

    jv = await run_in_threadpool(write)
    target = f"{web.PREFIX}/design?published={quote(jv.journey_id, safe='')}&version={jv.version}"
    return RedirectResponse(target, status_code=303)
