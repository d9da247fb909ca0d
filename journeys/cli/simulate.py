"""`journeys simulate`: preview a journey on a simulated clock (docs/simulate.md)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from journeys.cli.common import (
    _fail,
    _is_ascii_int,
    _load_or_exit,
    _now,
    _print_json,
    definition_file_argument,
    json_option,
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
    reply: list[str] = typer.Option(
        [],
        "--reply",
        metavar="STEP_ID=TEXT[@DELAY]",
        help="What the patient texts back to that wait_for_reply step, DELAY (default 5m) after it "
        "starts waiting; repeatable",
        show_default=False,
    ),
    http: list[str] = typer.Option(
        [],
        "--http",
        metavar="STEP_ID=STATUS[:JSON]",
        help="The answer of that http_request step's call; repeatable (a step without one gets 200 "
        "and {})",
        show_default=False,
    ),
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
    from journeys.definitions.model import parse_duration
    from journeys.definitions.values import datetime_problem, get_zone
    from journeys.engine.simulate import Reply, SimulationError
    from journeys.engine.simulate import simulate as run_simulation
    from journeys.instances.trigger import validate_parameters

    definition = _load_or_exit(file)
    zone = get_zone(tz)
    if zone is None:
        _fail(f"--tz: {tz!r} is not an IANA time zone")
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
    begin, problem = (_now(), None) if start is None else datetime_problem(start, zone)  # type: ignore
    if begin is None:
        _fail(f"--start: {start!r} {problem} (use 'YYYY-MM-DD HH:MM', local to --tz)")
    replies: dict[int, list[Reply]] = {}
    for item in reply:
        key, sep, text = item.partition("=")
        delay = None
        if "@" in text:
            text, _, delay_text = text.rpartition("@")
            try:
                delay = parse_duration(delay_text)
            except ValueError as exc:
                _fail(f"--reply {item!r}: {exc}")
        if not sep or not _is_ascii_int(key.strip()):
            _fail(f"--reply {item!r}: use STEP_ID=TEXT[@DELAY], e.g. 30=C or 30=R@2h")
        r = Reply(text) if delay is None else Reply(text, delay)
        replies.setdefault(int(key), []).append(r)
    answers: dict[int, dict[str, Any]] = {}
    for item in http:
        key, sep, rest = item.partition("=")
        status_text, _, body_text = rest.partition(":")
        if not sep or not _is_ascii_int(key.strip()) or not _is_ascii_int(status_text):
            _fail(f"--http {item!r}: use STEP_ID=STATUS[:JSON], e.g. 40=200:'{{\"ok\": true}}'")
        try:
            answers[int(key)] = {
                "status": int(status_text),
                "json": json.loads(body_text) if body_text else {},
            }
        except ValueError:
            _fail(f"--http {item!r}: the body is not valid JSON")
    kinds = {step.id: step.type for flow in definition.flows for step in flow.steps}
    for option, given_steps, kind in (
        ("--reply", replies, "wait_for_reply"),
        ("--http", answers, "http_request"),
    ):
        for step_id in given_steps:
            if kinds.get(step_id) != kind:
                have = ", ".join(str(i) for i, k in kinds.items() if k == kind) or "none"
                _fail(f"{option}: step {step_id} is not a {kind} step ({kind} steps: {have})")
    try:
        timeline = run_simulation(
            definition,
            canonical,
            tz,
            begin,
            replies=replies,
            http=answers,
            horizon=timedelta(days=horizon_days),
        )
    except SimulationError as exc:
        _fail(str(exc))
    if as_json:
        _print_json(timeline)
        return
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
