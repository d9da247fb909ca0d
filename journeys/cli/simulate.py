"""`journeys simulate`: preview a journey on a simulated clock (docs/simulate.md)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer

from journeys.cli.common import (
    _fail,
    _load_or_exit,
    _now,
    _print_json,
    definition_file_argument,
    json_option,
)
from journeys.definitions.model import JourneyDefinition
from journeys.definitions.values import datetime_problem, get_zone

_REPLY = typer.Option(
    [],
    "--reply",
    metavar="STEP_ID=TEXT[@DELAY]",
    help="What the patient texts back to that wait_for_reply step, DELAY (default 5m) after it "
    "starts waiting; repeatable",
    show_default=False,
)
_HTTP = typer.Option(
    [],
    "--http",
    metavar="STEP_ID=STATUS[:JSON]",
    help="The answer of that http_request step's call; repeatable (a step without one gets 200 and {})",
    show_default=False,
)


def simulate(
    file: Path = definition_file_argument(),
    params: str = typer.Option(
        "{}", "--params", metavar="JSON", help="The instance's parameters, a JSON object"
    ),
    tz: str = typer.Option("UTC", "--tz", metavar="ZONE", help="The instance's IANA time zone"),
    start: str = typer.Option(
        None,
        "--start",
        metavar="'YYYY-MM-DD HH:MM'",
        help="Local start time, in --tz",
        show_default="now",
    ),
    reply: list[str] = _REPLY,
    http: list[str] = _HTTP,
    horizon_days: int = typer.Option(
        400,
        "--horizon-days",
        metavar="N",
        min=1,
        max=36_600,
        help="Stop when the next thing to do is more than N days after the start",
    ),
    as_json: bool = json_option("Print one JSON array of events instead of text"),
) -> None:
    """Preview a journey on a simulated clock.

    Runs one instance of the definition in FILE and prints its timeline; no database is used and
    nothing is sent (docs/simulate.md)."""
    from journeys.engine.simulate import simulate as run_simulation
    from journeys.engine.simulate_options import check_steps, parse_http_answers, parse_replies

    definition = _load_or_exit(file)
    zone = get_zone(tz)
    if zone is None:
        _fail(f"--tz: {tz!r} is not an IANA time zone")
    canonical = _parameters(definition, params, zone)
    begin, problem = (_now(), None) if start is None else datetime_problem(start, zone)
    if begin is None:
        _fail(f"--start: {start!r} {problem} (use 'YYYY-MM-DD HH:MM', local to --tz)")
    replies, answers = parse_replies(reply), parse_http_answers(http)
    check_steps(definition, replies, answers)
    timeline = run_simulation(
        definition, canonical, tz, begin, replies=replies, http=answers, horizon=timedelta(days=horizon_days)
    )
    if as_json:
        _print_json(timeline)
    else:
        _print_timeline(timeline, zone)


def _parameters(definition: JourneyDefinition, params: str, zone: ZoneInfo) -> dict[str, str]:
    """--params checked as a trigger checks an instance's: canonical values, or every problem
    (one per line) and exit 1."""
    from journeys.instances.trigger import validate_parameters

    try:
        given = json.loads(params)
    except ValueError:
        _fail("--params: not valid JSON")
    if not isinstance(given, dict):
        _fail("--params: must be a JSON object")
    canonical, problems = validate_parameters(definition, given, zone)
    if problems:
        for problem in problems:
            typer.echo(f"--params: {problem}", err=True)
        raise typer.Exit(1)
    return canonical


def _print_timeline(timeline: list[dict[str, Any]], zone: ZoneInfo) -> None:
    for ev in timeline:
        local = datetime.fromisoformat(ev["time"].replace("Z", "+00:00")).astimezone(zone)
        where = f"{ev['flowId']}/{ev['stepId']}" if ev["stepId"] is not None else f"{ev['flowId']}"
        detail = {k: v for k, v in ev["detail"].items() if k != "messageId"}
        extra = " ".join(f"{k}={v}" for k, v in detail.items())
        typer.echo(
            f"{local:%a %Y-%m-%d %H:%M %Z} ({ev['time']})  {where:<16} {ev['type']:<18} {extra}".rstrip()
        )
        if "body" in ev:
            subject = f" [{ev['subject']}]" if "subject" in ev else ""
            typer.echo(f"        -> {ev['channel']} to {ev['to']}{subject}: {ev['body']}")
