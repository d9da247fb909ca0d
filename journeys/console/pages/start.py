"""Start from a spreadsheet: upload a CSV, choose the journey, map its columns to the journey's
parameters and the rows' time zone, preview every row's problems (a dry run of the bulk trigger:
the API's messages, by line), then start the rows in chunks of up to 10,000 with a progress line
per chunk, and download a report of the rejected rows (line numbers and messages only).

The file is never stored: each step (columns, preview, start) is sent the file again by the
page's file input, which keeps it (the columns and the preview are fetched with htmx, so the page
and its file input stay). Reading and triggering are journeys.instances.csv_import's, which the
CLI's `journeys trigger --csv` uses too."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

import journeys.catalog.service as catalog
from journeys.accounts import audit
from journeys.accounts.audit import Action
from journeys.accounts.roles import Permission
from journeys.console import web
from journeys.console.pages.uploads import file_bytes, prefixed, size_text, upload_action, zones
from journeys.console.web import FormAction, Staff
from journeys.definitions.values import get_zone
from journeys.errors import Invalid
from journeys.instances import csv_import
from journeys.instances.csv_import import ChunkResult, CsvProblem, CsvRow, Rejected
from journeys.store.db import read_only, rolled_back, transaction

router = APIRouter(prefix=web.PREFIX)

MAX_CSV_BYTES = 10 * 1024 * 1024
MAX_REPORT_BYTES = 20 * 1024 * 1024
SHOWN = 200  # rejected rows listed on the page (the report has them all)
SPLIT = "<!-- progress -->"
csv_form = upload_action(Permission.TRIGGER, MAX_CSV_BYTES, "the file")
report_form = upload_action(Permission.TRIGGER, MAX_REPORT_BYTES, "the report")


@dataclass(frozen=True)
class Upload:
    """A step's input: the journey, the file's bytes (this request's only) and its header."""

    jv: catalog.JourneyVersion
    data: bytes
    header: list[str]


@dataclass(frozen=True)
class Outcome:
    rows: int
    triggered: int
    rejected: tuple[Rejected, ...]
    batches: tuple[str, ...] = ()
    stopped: str | None = None


@router.get("/start", include_in_schema=False)
async def start_page(request: Request, staff: Staff = Depends(web.allowed(Permission.TRIGGER))) -> Response:
    def load() -> list[catalog.JourneyVersion]:
        with read_only(request.app.state.engine) as conn:
            return catalog.list_latest(conn, staff.org_id)

    found = await run_in_threadpool(load)
    chosen = request.query_params.get("journey", "")
    return web.render(
        request, "start.html", staff=staff, journeys=found, chosen=chosen, zones=zones(), limit=MAX_CSV_BYTES
    )


async def _upload(request: Request, action: FormAction) -> Upload:
    """The journey and the file, or Invalid naming what is wrong (nothing is read further)."""
    journey_id = action.text("journey").strip()
    if not journey_id:
        raise Invalid("choose a journey")

    def load() -> catalog.JourneyVersion | None:
        with read_only(request.app.state.engine) as conn:
            return catalog.get_latest(conn, action.staff.org_id, journey_id)

    jv = await run_in_threadpool(load)
    if jv is None:
        raise Invalid(f"there is no journey {journey_id!r} in this organisation")
    data = await file_bytes(action, "file")
    if not data:
        raise Invalid("choose a CSV file (a spreadsheet saved as CSV, UTF-8, with a header row)")
    if len(data) > MAX_CSV_BYTES:
        raise Invalid(f"the file is too large: the limit is {size_text(MAX_CSV_BYTES)}; split it")
    try:
        header = csv_import.read_header(data)
    except CsvProblem as exc:
        raise Invalid(f"this is not a CSV file we can read: {exc}") from None
    return Upload(jv, data, header)


def _zone(action: FormAction) -> str:
    tz = action.text("tz").strip()
    if not tz:
        raise Invalid("choose the rows' time zone (e.g. America/Chicago)")
    if get_zone(tz) is None:
        raise Invalid(f"time zone: {tz!r} is not an IANA time zone (e.g. America/Chicago or UTC)")
    return tz


def _rows(up: Upload, action: FormAction) -> list[CsvRow]:
    """The rows under the chosen mapping (the form's map.PARAMETER fields; without any, the
    columns named like the parameters)."""
    given = prefixed(action, "map.")
    chosen = (
        {p: c for p, c in given.items() if c} if given else csv_import.same_named(up.header, up.jv.definition)
    )
    try:
        rows = csv_import.read_rows(up.data, up.jv.definition, chosen=chosen)
    except CsvProblem as exc:
        raise Invalid(str(exc)) from None
    if not rows:
        raise Invalid("the file has no rows after the header")
    return rows


def _fragment(template: str, request: Request, staff: Staff, status: int = 200, **context: Any) -> Response:
    return web.render(request, template, staff=staff, status=status, **context)


def _problem(request: Request, staff: Staff, exc: Invalid) -> Response:
    return _fragment("start_problems.html", request, staff, status=400, messages=exc.messages)


@router.post("/start/columns", include_in_schema=False)
async def columns(request: Request, action: FormAction = Depends(csv_form)) -> Response:
    """The mapping: a select per parameter, set to the column with its name where there is one."""
    try:
        up = await _upload(request, action)
    except Invalid as exc:
        return _problem(request, action.staff, exc)
    defaults = csv_import.same_named(up.header, up.jv.definition)
    return _fragment(
        "start_columns.html", request, action.staff, jv=up.jv, header=up.header, defaults=defaults
    )


@router.post("/start/preview", include_in_schema=False)
async def preview(request: Request, action: FormAction = Depends(csv_form)) -> Response:
    """Every row checked by the bulk trigger in a transaction that is rolled back."""
    try:
        up = await _upload(request, action)
        tz = _zone(action)
        rows = _rows(up, action)
    except Invalid as exc:
        return _problem(request, action.staff, exc)

    def dry_run() -> Outcome:
        now = request.app.state.clock.now()
        phi = request.app.state.vault.org(action.staff.org_id)
        results: list[ChunkResult] = []
        with rolled_back(request.app.state.engine) as conn:
            for chunk in csv_import.chunks(rows):
                results.append(csv_import.trigger_chunk(conn, up.jv, chunk, tz, now, phi))
        # the preview tells which identifiers are already active: recorded as a search
        web.record(
            request, action.staff, Action.INSTANCES_SEARCH, target_kind="journey",
            target_ids=(up.jv.journey_id,), count=len(rows),
        )  # fmt: skip
        return Outcome(
            len(rows), sum(r.triggered for r in results), tuple(x for r in results for x in r.rejected)
        )

    try:
        outcome = await run_in_threadpool(dry_run)
    except Invalid as exc:
        return _problem(request, action.staff, exc)
    return _fragment(
        "start_preview.html", request, action.staff, jv=up.jv, outcome=outcome, **_report(outcome)
    )


def _report(outcome: Outcome) -> dict[str, Any]:
    shown = outcome.rejected[:SHOWN]
    data = json.dumps([[r.line, list(r.messages)] for r in outcome.rejected], separators=(",", ":"))
    return {"shown": shown, "report": data}


@router.post("/start/trigger", include_in_schema=False)
async def start(request: Request, action: FormAction = Depends(csv_form)) -> Response:
    """Start the rows chunk by chunk, each chunk in its own transaction with its audit entry; the
    page is streamed, a progress line per chunk. Bad input: 400 before anything is started."""
    up = await _upload(request, action)
    tz = _zone(action)
    rows = _rows(up, action)
    return StreamingResponse(_run(request, action.staff, up, tz, rows), media_type="text/html; charset=utf-8")


def _page_parts(request: Request, staff: Staff, **context: Any) -> tuple[str, str]:
    page = web.templates().get_template("start_run.html")
    body = page.render(request=request, staff=staff, Permission=Permission, **context)
    head, _, tail = body.partition(SPLIT)
    return head, tail


def _trigger(request: Request, staff: Staff, up: Upload, tz: str, chunk: Sequence[CsvRow]) -> ChunkResult:
    state = request.app.state
    phi = state.vault.org(staff.org_id)  # before the transaction (journeys.keys.phi)
    with transaction(state.engine) as conn:
        result = csv_import.trigger_chunk(conn, up.jv, chunk, tz, state.clock.now(), phi)
        if result.triggered:
            entry = web.audit_entry(
                request,
                staff,
                Action.INSTANCES_TRIGGER,
                target_kind="batch",
                target_ids=(str(result.batch_id),),
                count=result.triggered,
            )
            audit.record(conn, entry)
    return result


async def _run(request: Request, staff: Staff, up: Upload, tz: str, rows: list[CsvRow]) -> AsyncIterator[str]:
    parts = csv_import.chunks(rows)
    head, _ = _page_parts(request, staff, jv=up.jv, rows=len(rows), chunks=len(parts), outcome=None)
    yield head
    triggered, stopped = 0, None
    rejected: list[Rejected] = []
    batches: list[str] = []
    for number, chunk in enumerate(parts, 1):
        try:
            result = await run_in_threadpool(_trigger, request, staff, up, tz, chunk)
        except (Invalid, DBAPIError) as exc:  # that chunk wrote nothing; the ones before stay
            why = _why(exc)
            stopped = f"the rows from line {chunk[0].line} on were not started: {why}"
            break
        triggered += result.triggered
        rejected.extend(result.rejected)
        batches.extend([result.batch_id] if result.batch_id else [])
        yield _progress_line(number, len(parts), chunk, result)
    outcome = Outcome(len(rows), triggered, tuple(rejected), tuple(batches), stopped)
    _, tail = _page_parts(
        request, staff, jv=up.jv, rows=len(rows), chunks=len(parts), outcome=outcome, **_report(outcome)
    )
    yield tail


def _why(exc: Exception) -> str:
    if isinstance(exc, Invalid):
        return "; ".join(exc.messages)
    if isinstance(exc, IntegrityError):
        return "an identifier was taken meanwhile"
    return "the database did not answer; start the remaining rows again later"


def _progress_line(number: int, total: int, chunk: Sequence[CsvRow], result: ChunkResult) -> str:
    template = web.templates().get_template("start_progress.html")
    return template.render(
        number=number, total=total, first=chunk[0].line, last=chunk[-1].line, result=result
    )


@router.post("/start/report", include_in_schema=False)
async def report(request: Request, action: FormAction = Depends(report_form)) -> Response:
    """The rejected rows as CSV (row, problem): what the page was given back, line numbers and
    messages only; nothing is looked up or kept."""
    rows = _read_report(action.text("report"))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["row", "problem"])
    for line, messages in rows:
        for message in messages:
            writer.writerow([line, _cell(message)])
    headers = {"Content-Disposition": 'attachment; filename="rejected-rows.csv"'}
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


def _read_report(text: str) -> list[tuple[int, list[str]]]:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    ok = isinstance(data, list) and all(
        isinstance(item, list)
        and len(item) == 2
        and isinstance(item[0], int)
        and isinstance(item[1], list)
        and all(isinstance(m, str) for m in item[1])
        for item in data
    )
    if not ok:
        raise Invalid("the report could not be read; preview or start the rows again")
    return [(int(line), list(messages)) for line, messages in data]


def _cell(text: str) -> str:
    """A spreadsheet does not run a cell that starts like a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
