"""The `journeys` command line (thin: parses, calls services, prints)."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from journeys import accounts, catalog, logs
from journeys.cli_channels import channel_app, webhook_app
from journeys.cli_common import _engine, _fail, _now, _print_json, _settings, _state
from journeys.clock import SystemClock, iso_z
from journeys.config import Settings
from journeys.definitions import DefinitionError, load_definition_file
from journeys.store.db import read_only, transaction

app = typer.Typer(
    help="journeys: a self-hostable patient-journey engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold patient data or secrets
)
org_app = typer.Typer(help="Organisations.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
journey_app = typer.Typer(help="Journey definitions.", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(channel_app, name="channel")
app.add_typer(token_app, name="token")
app.add_typer(journey_app, name="journey")
app.add_typer(webhook_app, name="webhook")


@app.callback()
def main_callback(
    db: str = typer.Option(
        None, "--db", help="Database URL (default: $JOURNEYS_DATABASE_URL or sqlite:///./journeys.db)"
    ),
) -> None:
    _state["db"] = db


@app.command()
def init() -> None:
    """Create or migrate the database schema to the latest version."""
    engine = _engine()
    engine.dispose()
    typer.echo("database is at the latest schema version", err=True)


# ------------------------------------------------------------------ orgs
@org_app.command("create")
def org_create(
    name: str, as_json: bool = typer.Option(False, "--json", help="Print one JSON object")
) -> None:
    """Create an organisation."""
    engine = _engine()
    try:
        with transaction(engine) as conn:
            org = accounts.create_org(conn, name, _now())
    except accounts.AccountError as exc:
        _fail(str(exc))
    if as_json:
        _print_json(org)
    else:
        typer.echo(f"created org {org['id']} ({org['name']})")


@org_app.command("list")
def org_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List organisations."""
    from journeys.store import accounts as repo

    with read_only(_engine()) as conn:
        rows = [
            {"id": r["org_id"], "name": r["name"], "createdAt": r["created_at"]} for r in repo.list_orgs(conn)
        ]
    if as_json:
        _print_json(rows)
    else:
        for r in rows:
            typer.echo(f"{r['id']}  {r['name']}")


# ------------------------------------------------------------------ tokens
@token_app.command("create")
def token_create(
    org: str = typer.Option(..., "--org", help="Org id"),
    name: str = typer.Option(..., "--name", help="A label for the token"),
    scopes: str = typer.Option(
        f"{accounts.SCOPE_CREATE},{accounts.SCOPE_READ}", "--scopes", help="Comma-separated scopes"
    ),
    expires_in_days: int = typer.Option(None, "--expires-in-days", help="Expire after N days"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create an API token. The secret is printed once and stored only as a hash."""
    engine = _engine()
    try:
        parsed = accounts.parse_scopes(scopes)
        with transaction(engine) as conn:
            tok = accounts.create_token(conn, org, name, parsed, _now(), expires_in_days)
    except accounts.AccountError as exc:
        _fail(str(exc))
    if as_json:
        _print_json(tok)
    else:
        typer.echo(
            f"token id: {tok['id']}\nscopes:   {' '.join(parsed)}\n"
            f"expires:  {iso_z(tok['expiresDateTime']) or 'never'}"  # type: ignore[arg-type]
        )
        typer.echo(f"secret (shown only now): {tok['token']}")


@token_app.command("list")
def token_list(org: str = typer.Option(None, "--org"), as_json: bool = typer.Option(False, "--json")) -> None:
    """List tokens (never their secrets)."""
    with read_only(_engine()) as conn:
        rows = accounts.list_tokens(conn, org)
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        state = "revoked" if r["revokedAt"] else "active"
        typer.echo(
            f"{r['id']}  org={r['orgId']}  {r['name']}  [{' '.join(r['scopes'])}]  {state}  "  # type: ignore[arg-type]
            f"last used {iso_z(r['lastUsedAt']) or 'never'}"  # type: ignore[arg-type]
        )  # type: ignore[arg-type]


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token at once."""
    engine = _engine()
    try:
        with transaction(engine) as conn:
            accounts.revoke_token(conn, token_id, _now())
    except accounts.AccountError as exc:
        _fail(str(exc))
    typer.echo(f"revoked {token_id}", err=True)


# ------------------------------------------------------------------ journeys
@journey_app.command("validate")
def journey_validate(file: Path) -> None:
    """Validate a definition file: exit 0, or 1 with each problem on its own line."""
    try:
        load_definition_file(file)
    except DefinitionError as exc:
        for p in exc.problems:
            typer.echo(p.format(str(file)))
        raise typer.Exit(1) from None
    typer.echo(f"{file}: ok", err=True)


def _load_or_exit(file: Path) -> Any:
    """Load a definition, or print its problems (FILE:LINE: path: message) on stderr and exit 1."""
    try:
        return load_definition_file(file)
    except DefinitionError as exc:
        for p in exc.problems:
            typer.echo(p.format(str(file)), err=True)
        raise typer.Exit(1) from None


@journey_app.command("publish")
def journey_publish(
    file: Path,
    org: str = typer.Option(..., "--org", help="Org id"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Publish a definition as a new version of the org's journey with that name."""
    definition = _load_or_exit(file)
    engine = _engine()
    with transaction(engine) as conn:
        from journeys.store import accounts as repo

        if repo.get_org(conn, org) is None:
            _fail(f"unknown org {org}")
        out = catalog.publish(conn, org, definition, _now())
    out.pop("parameters", None)
    if as_json:
        _print_json(out)
    else:
        typer.echo(f"published {out['name']} version {out['version']} as chatBotId {out['id']}")


@journey_app.command("list")
def journey_list(
    org: str = typer.Option(..., "--org"), as_json: bool = typer.Option(False, "--json")
) -> None:
    """List the org's journeys (latest versions)."""
    with read_only(_engine()) as conn:
        rows = [catalog.describe(jv) for jv in catalog.list_latest(conn, org)]
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['id']}  {r['name']}  v{r['version']}")


@journey_app.command("schema")
def journey_schema() -> None:
    """Print the JSON Schema of the definition format."""
    from journeys.definitions.schema import definition_json_schema

    typer.echo(json.dumps(definition_json_schema(), indent=2))


# ------------------------------------------------------------------ messages
@app.command()
def messages(
    org: str = typer.Option(None, "--org"),
    instance: str = typer.Option(None, "--instance"),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List messages in the outbox, newest first (shows message text: for operators only)."""
    from journeys.store.messages import list_messages

    with read_only(_engine()) as conn:
        rows = list_messages(conn, org, instance, limit)
    out = [
        {
            "id": r["message_id"],
            "orgId": r["org_id"],
            "instanceId": r["instance_id"],
            "stepId": r["step_id"],
            "channel": r["channel"],
            "to": r["to_address"],
            "body": r["body"],
            "status": r["status"],
            "createdDateTime": r["created_at"],
            "sentDateTime": r["sent_at"],
        }
        for r in rows
    ]
    if as_json:
        _print_json(out)
        return
    if not out:
        typer.echo("no messages", err=True)
    for m in out:
        typer.echo(
            f"{iso_z(m['createdDateTime'])}  {m['status']:<8} {m['channel']} to {m['to']}  "  # type: ignore[arg-type]
            f"(instance {m['instanceId']}, step {m['stepId']})"
        )  # type: ignore[arg-type]
        typer.echo(f"    {m['body']}")


@app.command()
def reply(
    org: str = typer.Option(..., "--org", help="Org id"),
    from_: str = typer.Option(..., "--from", help="The patient's phone number"),
    body: str = typer.Option(..., "--body", help="The reply text"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Inject an inbound SMS reply, as if the patient had texted it."""
    from journeys.engine.replies import ReplyError, receive_reply

    engine = _engine()
    try:
        with transaction(engine) as conn:
            result = receive_reply(conn, org, from_, body, _now(), "cli")
    except ReplyError as exc:
        _fail("; ".join(exc.errors))
    out = {"id": result.message_id, "matched": result.matched, "instanceId": result.instance_id}
    if as_json:
        _print_json(out)
    elif result.matched:
        typer.echo(f"reply handed to instance {result.instance_id}")
    else:
        typer.echo("no instance of this org is waiting for a reply from that number; stored as unmatched")


@app.command()
def simulate(
    file: Path,
    params: str = typer.Option("{}", "--params", help="The instance's parameters, a JSON object"),
    tz: str = typer.Option("UTC", "--tz", help="The instance's IANA time zone"),
    start: str = typer.Option(None, "--start", help="Local start time 'YYYY-MM-DD HH:MM' (default: now)"),
    reply: list[str] = typer.Option(
        [],
        "--reply",
        help="STEP_ID=TEXT[@DELAY]: the patient's reply to that wait_for_reply step (repeatable)",
    ),
    http: list[str] = typer.Option([], "--http", help="STEP_ID=STATUS[:JSON]: an http_request step's answer"),
    horizon_days: int = typer.Option(400, "--horizon-days", min=1),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array of events"),
) -> None:
    """Preview a journey: run one instance on a simulated clock (no database, nothing sent)."""
    from journeys.definitions.model import parse_duration
    from journeys.definitions.values import get_zone, parse_datetime
    from journeys.engine.simulate import Reply, SimulationError
    from journeys.engine.simulate import simulate as run_simulation
    from journeys.engine.trigger import validate_parameters

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
    begin = _now() if start is None else parse_datetime(start, zone)  # type: ignore[arg-type]
    if begin is None:
        _fail("--start: use 'YYYY-MM-DD HH:MM' (local to --tz)")
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
        if not sep or not key.strip().isdigit():
            _fail(f"--reply {item!r}: use STEP_ID=TEXT[@DELAY], e.g. 30=C or 30=R@2h")
        r = Reply(text) if delay is None else Reply(text, delay)
        replies.setdefault(int(key), []).append(r)
    answers: dict[int, dict[str, Any]] = {}
    for item in http:
        key, sep, rest = item.partition("=")
        status_text, _, body_text = rest.partition(":")
        if not sep or not key.strip().isdigit() or not status_text.isdigit():
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


@app.command()
def replies(
    org: str = typer.Option(..., "--org", help="Org id"),
    unmatched: bool = typer.Option(False, "--unmatched", help="Only replies no instance was waiting for"),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List inbound SMS replies, newest first (shows message text: for staff)."""
    from journeys.engine.replies import list_replies

    with read_only(_engine()) as conn:
        rows = list_replies(conn, org, unmatched, limit)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        typer.echo("no replies", err=True)
    for r in rows:
        where = f"instance {r['instanceId']}" if r["matched"] else "UNMATCHED"
        typer.echo(f"{r['receivedDateTime']}  from {r['from']}  {where}: {r['body']}")


# ------------------------------------------------------------------ running
def _configure_logging(settings: Settings) -> None:
    """Text, or one JSON object per line (JOURNEYS_LOG_FORMAT=json): journeys.logs."""
    logs.configure(settings.log_level, settings.log_format)


@app.command()
def serve(
    host: str = typer.Option(None, "--host"),
    port: int = typer.Option(None, "--port"),
    no_worker: bool = typer.Option(False, "--no-worker", help="API only; run workers separately"),
) -> None:
    """Run the API server (with the worker in the same process unless --no-worker)."""
    import uvicorn

    from journeys.api.app import create_app
    from journeys.api.server import GracefulServer

    settings = _settings()
    _configure_logging(settings)
    application = create_app(settings, run_worker=not no_worker and settings.worker_enabled)
    # uvicorn's access log stays off (paths carry ids): journeys.access writes one line per
    # request with the route template instead. log_config=None: uvicorn logs through ours.
    config = uvicorn.Config(
        application,
        host=host or settings.host,
        port=port or settings.port,
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
    )
    GracefulServer(config).run()


@app.command()
def workers(as_json: bool = typer.Option(False, "--json")) -> None:
    """List worker processes from their heartbeats (stale ones have stopped or died)."""
    from journeys.store.work import list_workers

    with read_only(_engine()) as conn:
        rows = [
            {
                "id": r["worker_id"],
                "hostname": r["hostname"],
                "pid": r["pid"],
                "startedDateTime": r["started_at"],
                "lastSeenDateTime": r["last_seen_at"],
                "stoppedDateTime": r["stopped_at"],
                "batches": r["batches"],
                "steps": r["steps"],
            }
            for r in list_workers(conn)
        ]
    if as_json:
        _print_json(rows)
        return
    now = _now()
    for r in rows:
        seen = r["lastSeenDateTime"]
        state = (
            "stopped"
            if r["stoppedDateTime"]
            else ("alive" if (now - seen).total_seconds() < 30 else "silent")
        )
        typer.echo(
            f"{r['id']}  {state:<7} last seen {iso_z(seen)}  batches {r['batches']}  steps {r['steps']}"
        )


@app.command()
def worker() -> None:
    """Run a worker only (no HTTP)."""
    import signal
    import threading

    from journeys.engine.worker import Worker

    settings = _settings()
    _configure_logging(settings)
    engine = _engine()
    from journeys.channels.dispatch import Dispatcher, check_secret_key

    check_secret_key(engine, settings)
    clock = SystemClock()
    w = Worker(
        engine,
        clock,
        batch_size=settings.worker_batch_size,
        poll_interval=settings.worker_poll_interval,
        lease=timedelta(seconds=settings.worker_lease_seconds),
        dispatcher=Dispatcher(engine, clock, settings, batch_size=settings.send_batch_size),
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    w.start()
    done.wait()
    w.stop()


@app.command()
def demo(
    example: Path = typer.Option(Path("examples/appointment-reminder.yaml"), "--example"),
    state_file: Path = typer.Option(
        Path(".demo/demo.json"), "--state-file", help="Where the demo token is kept"
    ),
    base_url: str = typer.Option(None, "--base-url"),
) -> None:
    """Set up a demo org, token and example journey (once), and print what to try."""
    settings = _settings()
    engine = _engine()
    now = _now()
    saved: dict[str, Any] = {}
    if state_file.exists():
        try:
            saved = json.loads(state_file.read_text())
        except ValueError:
            saved = {}
    with transaction(engine) as conn:
        from journeys.store import accounts as repo

        principal = accounts.authenticate(conn, saved.get("token", ""), now) if saved.get("token") else None
        if principal is None or repo.get_org(conn, principal.org_id) is None:
            org = repo.find_org_by_name(conn, "Demo Clinic")
            org_id = org["org_id"] if org else accounts.create_org(conn, "Demo Clinic", now)["id"]
            tok = accounts.create_token(
                conn, org_id, "demo", [accounts.SCOPE_CREATE, accounts.SCOPE_READ], now
            )
            saved = {"orgId": org_id, "token": tok["token"]}
        org_id = saved["orgId"]
        definition = load_definition_file(example)
        existing = [jv for jv in catalog.list_latest(conn, org_id) if jv.name == definition.name]
        jv_out = catalog.describe(existing[0]) if existing else catalog.publish(conn, org_id, definition, now)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(saved))
    os.chmod(state_file, 0o600)
    base = base_url or f"http://{settings.host}:{settings.port}"
    api = f"{base}/chatbotapi/external/orgs/{org_id}/journeys/{jv_out['id']}/instances"
    day = (now + timedelta(days=2)).astimezone(UTC).strftime("%Y-%m-%d")
    body = {
        "flowId": None,
        "timeZone": "America/Chicago",
        "instances": [
            {
                "parameters": {
                    "patientId": "100000",
                    "patientName": "John Smith",
                    "appointmentId": "40-XYZ-11123",
                    "appointmentDateTime": f"{day} 08:00:00",
                    "phoneNumber": "+15555550100",
                }
            },
            {
                "parameters": {
                    "patientId": "100001",
                    "patientName": "Jane Green",
                    "appointmentId": "92-XBX-11934",
                    "appointmentDateTime": f"{day} 08:30:00",
                }
            },
        ],
    }
    search = {
        "filterSpecification": {
            "type": "AndSpecification",
            "specifications": [
                {
                    "type": "JourneyParameterSpecification",
                    "parameterName": "patientName",
                    "operator": "equals",
                    "rightOperand": "John Smith",
                }
            ],
        },
        "includeParameters": True,
    }
    db_flag = f" --db '{settings.database_url}'" if _state.get("db") else ""
    typer.echo(
        f"""
journeys demo
  org id      {org_id}
  token       {saved["token"]}
  chatBotId   {jv_out["id"]}   ({jv_out["name"]} v{jv_out["version"]})
  server      {base}   (API docs: {base}/docs)

Trigger the journey for two patients (the seed's example, appointments in two days):

curl -sS -i -X POST '{api}/bulk' \\
  -H 'Authorization: Bearer {saved["token"]}' -H 'Content-Type: application/json' \\
  -d '{json.dumps(body)}'

Find John's instance:

curl -sS -X POST '{api}/search' \\
  -H 'Authorization: Bearer {saved["token"]}' -H 'Content-Type: application/json' \\
  -d '{json.dumps(search)}'

See the texts the journey queued (the demo's SMS provider is the database outbox):

  .venv/bin/journeys{db_flag} messages

Cancel an instance: curl -X DELETE '{api}/<id>/execution' -H 'Authorization: Bearer {saved["token"]}'
"""
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)


if __name__ == "__main__":
    main()
