"""`journeys trigger --csv FILE`: start a journey for every row of a spreadsheet.

Thin: the file is read and mapped, and each chunk triggered, by `journeys.instances.csv_import`
(which hands every chunk to the bulk trigger: the API's rules and messages)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from journeys.accounts.audit import Action
from journeys.cli.auditing import record_cli
from journeys.cli.common import _engine, _fail, _now, _print_json, _settings, json_option, org_option


def trigger_csv(
    org: str = org_option(),
    journey: str = typer.Option(
        ..., "--journey", metavar="ID", help="The journey's id (the API's chatBotId)"
    ),
    csv_file: Path = typer.Option(..., "--csv", metavar="FILE", help="A UTF-8 CSV file with a header row"),
    tz: str = typer.Option(
        ..., "--tz", metavar="ZONE", help="The rows' time zone (IANA, e.g. America/Chicago)"
    ),
    mapping: list[str] = typer.Option(
        [],
        "--map",
        metavar="COLUMN=PARAMETER",
        help="Read PARAMETER from COLUMN; repeatable",
        show_default=False,
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate every row; write nothing"),
    report: Path = typer.Option(
        None, "--report", metavar="FILE", help="Write the rejected rows to FILE (CSV)"
    ),
    as_json: bool = json_option(),
) -> None:
    """Start a journey for every row of a CSV file (one instance a row).

    Rows with problems are rejected (listed, not triggered); the others are triggered in batches
    of up to 10,000. Exit 0 when every row was triggered, 1 when a row was rejected or a problem
    stopped the run, 2 for a usage error (file, org, journey, --tz, --map)."""
    import journeys.catalog.service as catalog
    from journeys.definitions.values import get_zone
    from journeys.instances.csv_import import CsvProblem, read_rows

    if get_zone(tz) is None:
        _fail(f"--tz {tz!r} is not an IANA time zone (e.g. America/Chicago or UTC)", 2)
    overrides = [_split_map(m) for m in mapping]
    try:
        data = csv_file.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {csv_file}: {exc.strerror}", 2)
    engine = _engine()
    from journeys.store.db import read_only

    with read_only(engine) as conn:
        jv = catalog.get_latest(conn, org, journey)
    if jv is None:
        _fail(f"unknown journey {journey} of org {org}", 2)
    try:
        rows = read_rows(data, jv.definition, overrides)
    except CsvProblem as exc:
        _fail(f"{csv_file}: {exc}", 2)
    if not rows:
        _fail(f"{csv_file}: no rows after the header", 2)
    outcome = _run(engine, jv, rows, tz, dry_run)
    _output(outcome, dry_run, as_json, report)
    if outcome["rejected"] or outcome["stopped"]:
        raise typer.Exit(1)


def _split_map(text: str) -> tuple[str, str]:
    col, sep, param = text.partition("=")
    if not sep or not col.strip() or not param.strip():
        _fail(f"--map {text!r}: use COLUMN=PARAMETER", 2)
    return col.strip(), param.strip()


def _run(engine: Any, jv: Any, rows: Sequence[Any], tz: str, dry_run: bool) -> dict[str, Any]:
    """Trigger chunk by chunk, each chunk in its own transaction (a failing chunk writes nothing
    and stops the run; the chunks before it stay triggered). A dry run: one transaction for
    every chunk (so a later chunk sees an earlier one's identifiers), rolled back."""
    from sqlalchemy.exc import IntegrityError

    from journeys.errors import Invalid
    from journeys.instances.csv_import import chunks, trigger_chunk

    now = _now()
    phi = _settings().vault(engine).org(jv.org_id)  # before any transaction (journeys.keys.phi)
    out: dict[str, Any] = {"triggered": 0, "rejected": [], "batchIds": [], "stopped": None}
    with _progress(len(rows)) as advance, engine.connect() as conn:
        outer = conn.begin() if dry_run else None
        for chunk in chunks(rows):
            tx = None if dry_run else conn.begin()
            try:
                result = trigger_chunk(conn, jv, chunk, tz, now, phi)
                if tx is not None and result.triggered:
                    record_cli(
                        conn,
                        jv.org_id,
                        Action.INSTANCES_TRIGGER,
                        "batch",
                        (str(result.batch_id),),
                        result.triggered,
                    )
                    tx.commit()
            except (Invalid, IntegrityError) as exc:
                if tx is not None:
                    tx.rollback()
                why = (
                    "; ".join(exc.messages)
                    if isinstance(exc, Invalid)
                    else "an identifier was taken meanwhile"
                )
                out["stopped"] = f"rows from line {chunk[0].line} on were not triggered: {why}"
                break
            if tx is not None and tx.is_active:
                tx.rollback()  # nothing to write in this chunk
            out["triggered"] += result.triggered
            out["rejected"].extend({"row": r.line, "problems": list(r.messages)} for r in result.rejected)
            if result.batch_id and not dry_run:
                out["batchIds"].append(result.batch_id)
            advance(len(chunk))
        if outer is not None:
            outer.rollback()
    return out


@contextmanager
def _progress(total: int) -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal (rich, imported only then)."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("triggering", total=total)
        yield lambda n: bar.advance(task, n)


def _output(out: dict[str, Any], dry_run: bool, as_json: bool, report: Path | None) -> None:
    if report is not None:
        with report.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["row", "problem"])
            for r in out["rejected"]:
                for problem in r["problems"]:
                    w.writerow([r["row"], problem])
    if as_json:
        _print_json({"dryRun": dry_run, **out})
        return
    for r in out["rejected"]:
        for problem in r["problems"]:
            typer.echo(f"row {r['row']}: {problem}", err=True)
    if out["stopped"]:
        typer.echo(f"error: {out['stopped']}", err=True)
    verb = "would trigger" if dry_run else "triggered"
    typer.echo(f"{verb} {out['triggered']}, rejected {len(out['rejected'])}")
