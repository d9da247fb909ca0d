"""The `journeys` command line (thin: parses, calls services, prints)."""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer

import journeys.accounts.service as accounts
import journeys.catalog.service as catalog
from journeys import __version__, logs
from journeys.accounts.audit import Action
from journeys.api.schemas import created_token_json, journey_json, org_json, token_json
from journeys.cli.apis import api_app
from journeys.cli.auditing import audit_app, record_cli
from journeys.cli.channels import channel_app, webhook_app
from journeys.cli.common import (
    _engine,
    _fail,
    _load_or_exit,
    _now,
    _print_json,
    _settings,
    _state,
    definition_file_argument,
    json_option,
    limit_option,
    new_app,
    org_filter_option,
    org_option,
)
from journeys.cli.csv_trigger import trigger_csv
from journeys.cli.demo import demo
from journeys.cli.fhir import fhir_app
from journeys.cli.hl7 import hl7_app
from journeys.cli.keys import encrypt_existing, keys_app
from journeys.cli.ops import cancel, optout_app, replies, reply
from journeys.cli.retention import erase, org_retention, purge
from journeys.cli.simulate import simulate
from journeys.cli.users import user_app
from journeys.clock import iso_z
from journeys.config import Settings
from journeys.store.db import read_only, transaction

app = new_app("journeys: a self-hostable patient-journey engine.")
org_app = new_app("Organisations.")
token_app = new_app("API tokens.")
journey_app = new_app("Journey definitions.")
app.add_typer(org_app, name="org")
app.add_typer(channel_app, name="channel")
app.add_typer(token_app, name="token")
app.add_typer(journey_app, name="journey")
app.add_typer(webhook_app, name="webhook")
app.add_typer(optout_app, name="optout")
app.add_typer(user_app, name="user")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(api_app, name="api")
app.add_typer(hl7_app, name="hl7")
app.add_typer(fhir_app, name="fhir")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"journeys {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    db: str = typer.Option(
        None,
        "--db",
        metavar="URL",
        help="Database URL: sqlite:///FILE or postgresql://USER@HOST:PORT/DB",
        show_default="$JOURNEYS_DATABASE_URL, else sqlite:///./journeys.db",
    ),
    version: bool = typer.Option(
        False, "--version", "-V", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    _state["db"] = db


@app.command()
def init() -> None:
    """Create or migrate the database schema to the latest version."""
    engine = _engine()
    engine.dispose()
    typer.echo("database is at the latest schema version")


# ------------------------------------------------------------------ orgs
@org_app.command("create")
def org_create(
    name: str = typer.Argument(..., metavar="NAME", help="The organisation's name"),
    as_json: bool = json_option(),
) -> None:
    """Create an organisation."""
    with transaction(_engine()) as conn:
        org = accounts.create_org(conn, name, _now())
        record_cli(conn, org.id, Action.ORG_CREATE, "org", (org.id,))
    if as_json:
        _print_json(org_json(org))
    else:
        typer.echo(f"created org {org.id} ({org.name})")


@org_app.command("list")
def org_list(as_json: bool = json_option("Print one JSON array instead of text")) -> None:
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
    org: str = org_option(),
    name: str = typer.Option(..., "--name", metavar="TEXT", help="A label for the token"),
    scopes: str = typer.Option(
        f"{accounts.SCOPE_CREATE},{accounts.SCOPE_READ}",
        "--scopes",
        metavar="SCOPES",
        help="Comma-separated scopes",
    ),
    expires_in_days: int = typer.Option(
        None, "--expires-in-days", metavar="N", help="Expire after N days", show_default="never"
    ),
    as_json: bool = json_option(),
) -> None:
    """Create an API token.

    The secret is printed once and stored only as a hash."""
    engine = _engine()
    parsed = accounts.parse_scopes(scopes)
    with transaction(engine) as conn:
        tok = accounts.create_token(conn, org, name, parsed, _now(), expires_in_days)
        record_cli(conn, org, Action.TOKEN_CREATE, "token", (tok.id,))
    if as_json:
        _print_json(created_token_json(tok))
    else:
        typer.echo(
            f"token id: {tok.id}\nscopes:   {' '.join(parsed)}\nexpires:  {iso_z(tok.expires_at) or 'never'}"
        )
        typer.echo(f"secret (shown only now): {tok.token}")


@token_app.command("list")
def token_list(
    org: str = org_filter_option("Only this org's tokens"),
    as_json: bool = json_option("Print one JSON array instead of text"),
) -> None:
    """List tokens (never their secrets)."""
    with read_only(_engine()) as conn:
        tokens = accounts.list_tokens(conn, org, _now())
    if as_json:
        _print_json([token_json(t) for t in tokens])
        return
    for t in tokens:
        typer.echo(
            f"{t.id}  org={t.org_id}  {t.name}  [{' '.join(t.scopes)}]  {t.state}  "
            f"last used {iso_z(t.last_used_at) or 'never'}"
        )


@token_app.command("revoke")
def token_revoke(
    token_id: str = typer.Argument(..., metavar="TOKEN_ID", help="The token's id (journeys token list)"),
) -> None:
    """Revoke a token at once."""
    with transaction(_engine()) as conn:
        accounts.revoke_token(conn, token_id, _now())
        tokens = accounts.list_tokens(conn, None, _now())
        org_id = next(t.org_id for t in tokens if t.id == token_id)
        record_cli(conn, org_id, Action.TOKEN_REVOKE, "token", (token_id,))
    typer.echo(f"revoked {token_id}")


# ------------------------------------------------------------------ journeys
@journey_app.command("validate")
def journey_validate(file: Path = definition_file_argument()) -> None:
    """Validate a journey definition file.

    Prints "FILE: ok" on stdout, or exits 1 with every problem on stderr, one per line:
    FILE:LINE: path: message."""
    _load_or_exit(file)
    typer.echo(f"{file}: ok")


@journey_app.command("publish")
def journey_publish(
    file: Path = definition_file_argument(),
    org: str = org_option(),
    as_json: bool = json_option(),
) -> None:
    """Publish a definition as a new version of the org's journey with that name."""
    definition = _load_or_exit(file)
    engine = _engine()
    with transaction(engine) as conn:
        from journeys.store import accounts as repo

        if repo.get_org(conn, org) is None:
            _fail(f"unknown org {org}")
        jv = catalog.publish(conn, org, definition, _now())
        record_cli(conn, org, Action.JOURNEY_PUBLISH, "journey", (jv.journey_id,))
    if as_json:
        out = journey_json(jv)
        out.pop("parameters", None)
        _print_json(out)
    else:
        typer.echo(f"published {jv.name} version {jv.version} as chatBotId {jv.journey_id}")


@journey_app.command("list")
def journey_list(
    org: str = org_option(), as_json: bool = json_option("Print one JSON array instead of text")
) -> None:
    """List the org's journeys (latest versions)."""
    with read_only(_engine()) as conn:
        versions = catalog.list_latest(conn, org)
    if as_json:
        _print_json([journey_json(jv) for jv in versions])
        return
    for jv in versions:
        typer.echo(f"{jv.journey_id}  {jv.name}  v{jv.version}")


@journey_app.command("schema")
def journey_schema() -> None:
    """Print the JSON Schema of the definition format."""
    from journeys.definitions.schema import definition_json_schema

    typer.echo(json.dumps(definition_json_schema(), indent=2))


# ------------------------------------------------------------------ messages
@app.command()
def messages(
    org: str = org_filter_option("Only this org's messages"),
    instance: str = typer.Option(
        None, "--instance", metavar="INSTANCE_ID", help="Only this instance's messages"
    ),
    limit: int = limit_option("At most N messages, newest first"),
    as_json: bool = json_option("Print one JSON array instead of text"),
) -> None:
    """List outgoing messages, newest first.

    Sent, queued, failed and dropped messages, and sends held at their step (send window,
    frequency cap) with the time they will go. Shows message text: for staff."""
    from journeys.messaging.outgoing import list_outgoing

    now = _now()
    engine = _engine()
    with read_only(engine) as conn:
        rows = list_outgoing(conn, now, org, instance, limit, phi_of=_settings().vault(engine).org)
    if as_json:
        _print_json([m.wire() for m in rows])
        return
    if not rows:
        typer.echo("no messages", err=True)
    for m in rows:
        typer.echo(
            f"{iso_z(m.created_at)}  {m.status:<8} {m.channel} to {m.to or '(no address)'}  "
            f"(instance {m.instance_id}, step {m.step_id})"
        )
        if m.goes_at is not None:
            why = f": {m.reason}" if m.reason else ""
            typer.echo(f"    goes at {_local(m.goes_at, m.time_zone)} ({_from_now(m.goes_at, now)}){why}")
        elif m.reason:
            typer.echo(f"    {m.status}: {m.reason}")
        if m.body is not None:
            typer.echo(f"    {m.body}")


def _local(when: datetime, zone_name: str | None) -> str:
    from journeys.definitions.values import get_zone

    zone = get_zone(zone_name) if zone_name else None
    utc = f"{when.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    return f"{when.astimezone(zone):%a %Y-%m-%d %H:%M %Z} ({utc})" if zone else utc


def _from_now(when: datetime, now: datetime) -> str:
    minutes = math.ceil((when - now).total_seconds() / 60)
    if minutes <= 0:
        return "due now"
    hours, rest = divmod(minutes, 60)
    return f"in {hours} h {rest} min" if hours else f"in {rest} min"


# Staff operations (journeys/cli/ops.py): patients' replies, bulk cancel; `optout` is a group.
app.command("reply")(reply)
app.command("replies")(replies)
app.command("cancel")(cancel)
app.command("trigger")(trigger_csv)


# ------------------------------------------------------------------ running
def _configure_logging(settings: Settings) -> None:
    """Text, or one JSON object per line (JOURNEYS_LOG_FORMAT=json): journeys.logs."""
    logs.configure(settings.log_level, settings.log_format)


@app.command()
def serve(
    host: str = typer.Option(
        None,
        "--host",
        metavar="HOST",
        help="The address to listen on",
        show_default="$JOURNEYS_HOST, else 127.0.0.1",
    ),
    port: int = typer.Option(
        None,
        "--port",
        metavar="PORT",
        min=1,
        max=65535,
        help="The TCP port to listen on",
        show_default="$JOURNEYS_PORT, else 8080",
    ),
    no_worker: bool = typer.Option(False, "--no-worker", help="API only; run workers separately"),
    tls_cert: Path | None = typer.Option(
        None, "--tls-cert", metavar="FILE", help="Serve HTTPS with this certificate (PEM, chain included)"
    ),
    tls_key: Path | None = typer.Option(
        None, "--tls-key", metavar="FILE", help="The certificate's private key (PEM)"
    ),
) -> None:
    """Run the API server.

    The worker runs in the same process unless --no-worker. SIGTERM or SIGINT finish the requests
    in flight (and the worker's batch), then exit 0. With --tls-cert and --tls-key it serves HTTPS
    (and sends Strict-Transport-Security), for deployments without a TLS proxy."""
    import uvicorn

    from journeys.api.app import create_app
    from journeys.api.server import GracefulServer, check_tls

    tls = check_tls(tls_cert, tls_key)  # both or neither; readable and matching, else a clear error
    settings = _settings()
    _configure_logging(settings)
    application = create_app(settings, run_worker=not no_worker and settings.worker_enabled)
    # uvicorn's access log stays off (paths carry ids): journeys.access writes one line per
    # request with the route template instead. log_config=None: uvicorn logs through ours (the
    # guarded handler that _configure_logging set; its own config would add unguarded handlers).
    config = uvicorn.Config(
        application,
        host=host or settings.host,
        port=port or settings.port,
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        ssl_certfile=tls.cert if tls else None,
        ssl_keyfile=tls.key if tls else None,
    )
    GracefulServer(config).run()


@app.command()
def workers(as_json: bool = json_option("Print one JSON array instead of text")) -> None:
    """List worker processes from their heartbeats.

    alive: seen in the last 30 s; silent: not seen since (it died or hangs); stopped: it exited."""
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
    """Run a worker only (no HTTP).

    SIGTERM or SIGINT finish the batch in progress, then exit 0."""
    import signal
    import threading

    from journeys.wiring import build_worker

    settings = _settings()
    _configure_logging(settings)
    w = build_worker(_engine(), settings, settings.clock())
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    w.start()
    done.wait()
    w.stop()


app.command()(simulate)
app.command()(demo)
app.command("encrypt-existing")(encrypt_existing)
app.command()(purge)
app.command()(erase)
org_app.command("retention")(org_retention)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)


if __name__ == "__main__":
    main()
