"""`journeys demo`: set up the demo (once) and print the tour's commands, true at this hour."""

from __future__ import annotations

import json
import math
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from journeys import demo as demo_service
from journeys.accounts.audit import Action
from journeys.cli.auditing import record_cli
from journeys.cli.common import _engine, _fail, _load_or_exit, _now, _settings, _state
from journeys.store import keys as keys_repo
from journeys.store.db import read_only, transaction


def demo(
    example: Path = typer.Option(
        Path("examples/appointment-reminder.yaml"),
        "--example",
        metavar="FILE",
        help="The journey definition to publish",
    ),
    state_file: Path = typer.Option(
        Path(".demo/demo.json"),
        "--state-file",
        metavar="FILE",
        help="Where the demo token is kept; the tour's request bodies are written beside it",
    ),
    base_url: str = typer.Option(
        None,
        "--base-url",
        metavar="URL",
        help="The server's URL in the printed commands",
        show_default="http://$JOURNEYS_HOST:$JOURNEYS_PORT, else http://127.0.0.1:8080",
    ),
    secret_key_file: Path = typer.Option(
        None,
        "--secret-key-file",
        metavar="FILE",
        help="Without JOURNEYS_SECRET_KEY: the demo's secret key (patient data is stored encrypted "
        "with it), made in FILE on the first run and kept; run the server with "
        "JOURNEYS_SECRET_KEY_FILE=FILE (`make run` does)",
    ),
) -> None:
    """Set up the demo and print what to try.

    Creates a demo org, token and example journey (once), writes the tour's request bodies
    beside --state-file, and prints the tour, true at this hour."""
    settings = _settings()
    now = _now()
    saved = _read_state(state_file)
    definition = _load_or_exit(example)
    key_file = None if settings.secret_key or secret_key_file is None else _demo_key(secret_key_file)
    with transaction(_engine()) as conn:
        setup = demo_service.ensure_demo(conn, definition, saved.get("token"), int(saved.get("runs", 0)), now)
        admin = demo_service.ensure_demo_admin(conn, setup.org_id, _saved_password(saved, setup.org_id), now)
        if admin.created:
            record_cli(conn, setup.org_id, Action.USER_CREATE, "user", (), 1)
    folder = state_file.parent
    folder.mkdir(parents=True, exist_ok=True)
    state = {"orgId": setup.org_id, "token": setup.token, "runs": setup.run, "adminPassword": admin.password}
    _write_private(state_file, state)
    bulk, search = folder / "bulk.json", folder / "search.json"
    _write_private(bulk, demo_service.bulk_body(setup.run, now))
    _write_private(search, demo_service.search_body())
    _write_private(folder / "reschedule.json", demo_service.reschedule_body(setup.run, now))
    base = base_url or f"http://{settings.host}:{settings.port}"
    db_flag = f" --db '{settings.database_url}'" if _state.get("db") else ""
    window = demo_service.window_now(definition, now)
    key_export = "" if key_file is None else f"\n  export JOURNEYS_SECRET_KEY_FILE='{key_file}'"
    typer.echo(_tour(setup, admin, base, bulk, search, db_flag, window, now, key_export))


def _demo_key(path: Path) -> Path:
    """The demo's secret key file (its absolute path): made with a new key the first time,
    unless the database already holds data encrypted with a key that file held once."""
    path = path.resolve()
    if path.is_dir():
        _fail(f"--secret-key-file: {path} is a directory")
    if path.exists():
        return path
    with read_only(_engine()) as conn:
        if keys_repo.count_by_kek(conn):
            _fail(
                f"the database holds patient data encrypted with a key that is no longer in {path}: "
                "set JOURNEYS_SECRET_KEY to it, or start afresh with a new database"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    except OSError as exc:
        _fail(f"--secret-key-file: cannot write {path}: {exc.strerror or type(exc).__name__}")
    return path


def _saved_password(saved: dict[str, Any], org_id: str) -> str | None:
    password = saved.get("adminPassword")
    return password if isinstance(password, str) and saved.get("orgId") == org_id else None


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_private(path: Path, value: Any) -> None:
    """Write JSON readable only by the user (the state holds the token; the bodies hold demo PHI)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(value, f, indent=None if path.name.endswith("demo.json") else 2)
    os.chmod(path, 0o600)


def _when_texts_go(window: demo_service.WindowNow | None, now: datetime) -> str:
    if window is None:
        return "The journey has no send window: the worker sends the booking text at once."
    hours = f"{window.start}-{window.end}"
    local = f"It is {window.local:%H:%M} in Chicago"
    if window.opens_at is None:
        return (
            f"{local}, inside the send window ({hours}, the hours texts may go out):\n"
            "   the worker sends John's booking text at once."
        )
    minutes = math.ceil((window.opens_at - now).total_seconds() / 60)
    return (
        f"{local}, outside the send window ({hours}, the hours texts may go out):\n"
        f"   John's booking text is held until {window.start} (in {minutes // 60} h {minutes % 60} min);"
        " `journeys messages`\n   shows it as held, with that time, and step 3 works once it has gone."
    )


def _heading(setup: demo_service.DemoSetup, admin: demo_service.DemoLogin, base: str) -> str:
    return f"""
journeys demo
  org id      {setup.org_id}
  token       {setup.token}
  chatBotId   {setup.journey_id}   ({setup.journey_name} v{setup.version})
  server      {base}   (API docs: {base}/docs)

The staff console: {base}/console/login?org={setup.org_id}
  sign in as  {admin.email}
  password    {admin.password}
  (an admin: journeys, patients, messages, replies, opt-outs, design, users and the audit log)
"""


def _tour(
    setup: demo_service.DemoSetup,
    admin: demo_service.DemoLogin,
    base: str,
    bulk: Path,
    search: Path,
    db_flag: str,
    window: demo_service.WindowNow | None,
    now: datetime,
    key_export: str = "",
) -> str:
    api = f"{base}/chatbotapi/external/orgs/{setup.org_id}/journeys/{setup.journey_id}/instances"
    day = datetime.fromisoformat(demo_service.demo_day(now))
    auth = '-H "Authorization: Bearer $TOKEN"'
    json_type = "-H 'Content-Type: application/json'"
    return _heading(setup, admin, base) + f"""
Then, to drive it from the API as a scheduling system would, in another terminal, in this directory:

  export ORG='{setup.org_id}' TOKEN='{setup.token}'{key_export}
  export API='{api}'

1. Start the journey for two patients booked on {day:%A, %B} {day.day} at 10:00 and 10:30,
   America/Chicago ({bulk}; every run writes new appointment ids):

  curl -sS -i -X POST "$API/bulk" {auth} {json_type} -d @{bulk}

   {_when_texts_go(window, now)}

2. See the texts (the demo's SMS provider is the database outbox; nothing leaves this machine):

  .venv/bin/journeys{db_flag} messages

3. Answer as John: the text asks "Reply C to confirm or R to reschedule".

  .venv/bin/journeys{db_flag} reply --org "$ORG" --from {demo_service.JOHN_PHONE} --body C

   The journey thanks him (see step 2 again) and reminds him the day before at 10:00.
   The console's Find a patient and Messages pages show the same.

4. Find John's instances (lastStepExecuted shows where each is), then one's whole timeline:

  curl -sS -X POST "$API/search" {auth} {json_type} -d @{search}
  curl -sS "$API/<id>" {auth}

5. Move John's appointment a day later, to 11:00 (the journey's `rescheduled` subflow, found
   by his appointmentId): he is told the new time, and the reminder is planned again.

  curl -sS -i -X POST "$API/bulk" {auth} {json_type} -d @{bulk.parent / "reschedule.json"}

6. Cancel one; nothing more is sent:

  curl -sS -i -X DELETE "$API/<id>/execution" {auth}

7. Feed appointments straight from the scheduling system, as its interface engine would
   (HL7 v2 SIU over MLLP; each message is acknowledged once committed, docs/feeds.md):

  .venv/bin/journeys hl7 listen --mapping examples/feeds/appointment-reminder.hl7.yaml &
  .venv/bin/journeys hl7 send examples/feeds/siu/v2.5.1-epic-s12.hl7 examples/feeds/siu/v2.5.1-epic-s13.hl7
"""
