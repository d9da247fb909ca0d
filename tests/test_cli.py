"""The `journeys` admin CLI as a stable contract, driven through real subprocesses.

Every test works on its own fresh SQLite file under tmp_path (passed with the global `--db`
option, or with JOURNEYS_DATABASE_URL), and runs the CLI with tmp_path as its working directory
so nothing can land in the repository's ./journeys.db.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.cli import JOURNEYS, clean_env
from support.net import free_port

import journeys.accounts.service as accounts
from journeys.store.db import create_db_engine, transaction
from journeys.store.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "appointment-reminder.yaml"
CLASSIC = ROOT / "tests" / "data" / "classic-reminder.yaml"  # fixed text for the validate tests
SCOPES = "create.journey_instances,read.journey_instances"
TIMEOUT = 60  # seconds, for any single CLI run


ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


# ---------------------------------------------------------------------------- helpers
@dataclass
class Cli:
    """Runs `journeys --db <this file> ...` in `cwd` (with `env` added to a clean environment)."""

    path: Path
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    def at(self, when: datetime) -> None:
        """Every later command and server of this Cli reads `when` as the time now (then ticking),
        through JOURNEYS_CLOCK_OFFSET_SECONDS: the outcome does not depend on the wall clock."""
        offset = (when - datetime.now(UTC)).total_seconds()
        self.env["JOURNEYS_CLOCK_OFFSET_SECONDS"] = f"{offset:.3f}"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def run(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*JOURNEYS, "--db", self.url, *args],
            cwd=self.cwd,
            env=clean_env(**self.env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.run(*args)
        assert proc.returncode == 0, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def json(self, *args: str) -> Any:
        """Run a command that must succeed and print exactly one JSON value on stdout."""
        proc = self.ok(*args)
        return json.loads(proc.stdout)  # raises on anything but a single JSON document

    def org(self, name: str = "Clinic") -> str:
        return str(self.json("org", "create", name, "--json")["id"])

    def token(self, org_id: str, *extra: str) -> dict[str, Any]:
        return dict(
            self.json("token", "create", "--org", org_id, "--name", "t", "--scopes", SCOPES, *extra, "--json")
        )

    def count(self, table: str, org_id: str | None = None) -> int:
        conn = sqlite3.connect(self.path)
        try:
            if org_id is None:
                return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            return int(
                conn.execute(f"SELECT count(*) FROM {table} WHERE org_id = ?", (org_id,)).fetchone()[0]
            )
        finally:
            conn.close()


@pytest.fixture()
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "test.db", tmp_path)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def serve(cli: Cli, port: int | None = None) -> Iterator[ServerProcess]:
    """`journeys --db ... serve --port P` as a subprocess (worker in-process, the default), on a
    free port unless one is given; stdout and stderr go to one log file. Always killed at the end."""
    port = port or free_port()
    log_path = cli.cwd / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*JOURNEYS, "--db", cli.url, "serve", "--port", str(port)],
            cwd=cli.cwd,
            env=clean_env(**cli.env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_healthy(server)
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def wait_healthy(server: ServerProcess, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited with {server.proc.returncode}:\n{server.logs()}")
        try:
            if httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"server did not answer /healthz in {seconds} s:\n{server.logs()}")
        time.sleep(0.1)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def example_text() -> str:
    return CLASSIC.read_text()


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(lines) == 1, needle
    return lines[0]


# ---------------------------------------------------------------------------- init / --db
@pytest.mark.same_on_every_database
def test_init_creates_schema_and_is_idempotent(cli: Cli) -> None:
    assert not cli.path.exists()
    first = cli.run("init")
    assert first.returncode == 0, first.stderr
    assert (first.stdout, first.stderr) == ("database is at the latest schema version\n", "")
    assert cli.path.exists()
    conn = sqlite3.connect(cli.path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        head = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    finally:
        conn.close()
    assert {
        "alembic_version",
        "orgs",
        "api_tokens",
        "journeys",
        "journey_versions",
        "journey_instances",
        "instance_parameters",
        "instance_events",
        "outbox",
    } <= tables
    assert len(head) == 1
    second = cli.run("init")
    assert second.returncode == 0, second.stderr
    conn = sqlite3.connect(cli.path)
    try:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == head
    finally:
        conn.close()
    # --db was used, not the default ./journeys.db
    assert not (cli.cwd / "journeys.db").exists()


@pytest.mark.same_on_every_database
def test_database_url_from_environment(tmp_path: Path) -> None:
    db = tmp_path / "from-env.db"
    env = clean_env(JOURNEYS_DATABASE_URL=f"sqlite:///{db}")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*JOURNEYS, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )

    assert run("init").returncode == 0
    assert db.exists()
    created = run("org", "create", "Env Clinic", "--json")
    assert created.returncode == 0, created.stderr
    org = json.loads(created.stdout)
    assert not (tmp_path / "journeys.db").exists()  # not the default ./journeys.db
    # the same file, seen through --db
    listed = Cli(db, tmp_path).json("org", "list", "--json")
    assert [o["id"] for o in listed] == [org["id"]]
    assert listed[0]["name"] == "Env Clinic"


@pytest.mark.same_on_every_database
def test_db_option_wins_over_environment(tmp_path: Path) -> None:
    env_db = tmp_path / "env.db"
    opt_db = tmp_path / "opt.db"
    proc = subprocess.run(
        [*JOURNEYS, "--db", f"sqlite:///{opt_db}", "org", "create", "Opt Clinic", "--json"],
        cwd=tmp_path,
        env=clean_env(JOURNEYS_DATABASE_URL=f"sqlite:///{env_db}"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    org = json.loads(proc.stdout)
    assert [o["id"] for o in Cli(opt_db, tmp_path).json("org", "list", "--json")] == [org["id"]]
    assert not env_db.exists() or Cli(env_db, tmp_path).count("orgs") == 0


# ---------------------------------------------------------------------------- orgs
@pytest.mark.same_on_every_database
def test_org_create_json_prints_one_object_and_nothing_else(cli: Cli) -> None:
    proc = cli.ok("org", "create", "North Clinic", "--json")
    out = json.loads(proc.stdout)
    assert isinstance(out, dict)
    assert set(out) == {"id", "name"}
    assert out["name"] == "North Clinic"
    assert isinstance(out["id"], str) and out["id"]
    assert proc.stdout.strip() == json.dumps(out)  # one line, one object
    assert cli.count("orgs") == 1
    listed = cli.json("org", "list", "--json")
    assert [(o["id"], o["name"]) for o in listed] == [(out["id"], "North Clinic")]


@pytest.mark.same_on_every_database
def test_org_create_empty_name_fails(cli: Cli) -> None:
    cli.ok("init")
    proc = cli.run("org", "create", "   ", "--json")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "empty" in proc.stderr
    assert cli.count("orgs") == 0


# ---------------------------------------------------------------------------- tokens
@pytest.mark.same_on_every_database
def test_token_create_json_without_expiry(cli: Cli) -> None:
    org = cli.org()
    proc = cli.ok("token", "create", "--org", org, "--name", "lab", "--scopes", SCOPES, "--json")
    tok = json.loads(proc.stdout)
    assert isinstance(tok, dict)
    assert {"id", "token", "scopes", "expiresDateTime"} <= set(tok)
    assert tok["scopes"] == ["create.journey_instances", "read.journey_instances"]
    assert tok["expiresDateTime"] is None
    assert isinstance(tok["token"], str) and len(tok["token"]) >= 32
    assert cli.count("api_tokens", org) == 1
    # the secret is stored only as a hash
    conn = sqlite3.connect(cli.path)
    try:
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert tok["token"] not in dump


@pytest.mark.same_on_every_database
def test_token_create_with_expiry_is_iso_utc(cli: Cli) -> None:
    org = cli.org()
    before = datetime.now(UTC)
    tok = cli.json(
        "token", "create", "--org", org, "--name", "t", "--scopes", "read.journey_instances",
        "--expires-in-days", "7", "--json",
    )  # fmt: skip
    after = datetime.now(UTC)
    assert tok["scopes"] == ["read.journey_instances"]
    expires = tok["expiresDateTime"]
    assert isinstance(expires, str) and ISO_Z.match(expires), expires
    at = datetime.fromisoformat(expires.replace("Z", "+00:00"))
    assert before + timedelta(days=7) - timedelta(seconds=5) <= at <= after + timedelta(days=7, seconds=5)


@pytest.mark.same_on_every_database
def test_token_secrets_differ(cli: Cli) -> None:
    org = cli.org()
    a, b = cli.token(org), cli.token(org)
    assert a["id"] != b["id"]
    assert a["token"] != b["token"]


@pytest.mark.same_on_every_database
def test_token_create_unknown_scope_fails_clearly(cli: Cli) -> None:
    org = cli.org()
    scopes = "create.journey_instances,delete.everything"
    proc = cli.run("token", "create", "--org", org, "--name", "t", "--scopes", scopes, "--json")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "delete.everything" in proc.stderr
    assert "scope" in proc.stderr
    assert cli.count("api_tokens") == 0


@pytest.mark.same_on_every_database
def test_token_create_unknown_org_fails(cli: Cli) -> None:
    cli.ok("init")
    proc = cli.run("token", "create", "--org", "no-such-org", "--name", "t", "--scopes", SCOPES, "--json")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "no-such-org" in proc.stderr
    assert cli.count("api_tokens") == 0


@pytest.mark.same_on_every_database
def test_token_create_non_positive_expiry_fails(cli: Cli) -> None:
    org = cli.org()
    proc = cli.run(
        "token", "create", "--org", org, "--name", "t", "--scopes", SCOPES, "--expires-in-days", "0", "--json"
    )
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert cli.count("api_tokens") == 0


@pytest.mark.same_on_every_database
@pytest.mark.parametrize("days", ["99999999999", "36501"])
def test_token_create_expiry_beyond_a_century_fails_cleanly(cli: Cli, days: str) -> None:
    org = cli.org()
    args = ("--name", "t", "--scopes", SCOPES, "--expires-in-days", days, "--json")
    proc = cli.run("token", "create", "--org", org, *args)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "Traceback" not in proc.stderr and "--expires-in-days" in proc.stderr
    assert cli.count("api_tokens") == 0


@pytest.mark.same_on_every_database
def test_journey_publish_with_nul_in_the_definition_fails_with_its_line(cli: Cli) -> None:
    org = cli.org()
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "name: Appointment Reminder\n", 'name: "Appointment\\0Reminder"\n', 1
    )
    path = cli.cwd / "nul.yaml"
    path.write_text(text, encoding="utf-8")
    proc = cli.run("journey", "publish", str(path), "--org", org)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    line = text.splitlines().index('name: "Appointment\\0Reminder"') + 1
    assert proc.stderr.strip() == f"{path}:{line}: name: must not contain NUL characters (\\u0000)"
    assert cli.count("journeys") == 0


@pytest.mark.same_on_every_database
def test_token_list_never_shows_the_secret(cli: Cli) -> None:
    org = cli.org()
    tok = cli.token(org)
    secret_hash = hashlib.sha256(tok["token"].encode()).hexdigest()

    text = cli.ok("token", "list")
    assert tok["id"] in text.stdout
    assert tok["token"] not in text.stdout + text.stderr
    assert secret_hash not in text.stdout + text.stderr

    proc = cli.ok("token", "list", "--json")
    assert tok["token"] not in proc.stdout + proc.stderr
    assert secret_hash not in proc.stdout + proc.stderr
    listed = json.loads(proc.stdout)
    assert isinstance(listed, list) and len(listed) == 1
    entry = listed[0]
    assert entry["id"] == tok["id"]
    assert entry["orgId"] == org
    assert entry["scopes"] == ["create.journey_instances", "read.journey_instances"]
    assert entry["revokedAt"] is None
    assert "token" not in entry

    # --org filters
    other = cli.org("Other")
    cli.token(other)
    assert [t["id"] for t in cli.json("token", "list", "--org", org, "--json")] == [tok["id"]]


@pytest.mark.same_on_every_database
def test_token_revoke_marks_revoked(cli: Cli) -> None:
    org = cli.org()
    keep, gone = cli.token(org), cli.token(org)
    proc = cli.ok("token", "revoke", gone["id"])
    assert (proc.stdout, proc.stderr) == (f"revoked {gone['id']}\n", "")  # the result, on stdout
    assert gone["token"] not in proc.stdout + proc.stderr
    by_id = {t["id"]: t for t in cli.json("token", "list", "--json")}
    assert by_id[keep["id"]]["revokedAt"] is None
    revoked_at = by_id[gone["id"]]["revokedAt"]
    assert isinstance(revoked_at, str) and ISO_Z.match(revoked_at)
    assert "revoked" in cli.ok("token", "list").stdout


def test_token_list_shows_expired_tokens_as_expired(database_url: str, tmp_path: Path) -> None:
    """An expired token is listed as "expired", not "active" (text), with `state` in --json; a
    revoked one stays "revoked" even once past its expiry. Runs on the suite's database (SQLite
    or PostgreSQL). Tokens issued in 2020 with a 30-day expiry are expired whatever today is."""
    engine = create_db_engine(database_url)
    upgrade(engine)
    issued = datetime(2020, 1, 1, tzinfo=UTC)
    try:
        with transaction(engine) as conn:
            org = accounts.create_org(conn, "Expiry Clinic", issued).id
            expired = accounts.create_token(conn, org, "old", [accounts.SCOPE_READ], issued, 30)
            gone = accounts.create_token(conn, org, "gone", [accounts.SCOPE_READ], issued, 30)
            forever = accounts.create_token(conn, org, "forever", [accounts.SCOPE_READ], issued)
            accounts.revoke_token(conn, gone.id, issued)
    finally:
        engine.dispose()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*JOURNEYS, "--db", database_url, *args],
            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    fresh = json.loads(run("token", "create", "--org", org, "--name", "new", "--expires-in-days", "7",
                           "--json").stdout)  # fmt: skip
    want = {expired.id: "expired", gone.id: "revoked", forever.id: "active", fresh["id"]: "active"}

    lines = run("token", "list", "--org", org).stdout.splitlines()
    assert len(lines) == 4, lines
    for line in lines:
        token_id, _, rest = line.partition("  ")
        assert f"  {want[token_id]}  " in f"  {rest}", line
        assert not {"active", "expired", "revoked"} - {want[token_id]} & set(rest.split()), line

    listed = json.loads(run("token", "list", "--org", org, "--json").stdout)
    assert {t["id"]: t["state"] for t in listed} == want
    old = next(t for t in listed if t["id"] == expired.id)
    assert {"id", "orgId", "name", "scopes", "createdAt", "expiresAt", "revokedAt", "lastUsedAt"} <= set(old)
    assert old["expiresAt"] == "2020-01-31T00:00:00.000000Z" and old["revokedAt"] is None


@pytest.mark.same_on_every_database
def test_token_revoke_unknown_id_fails(cli: Cli) -> None:
    cli.ok("init")
    proc = cli.run("token", "revoke", "no-such-token")
    assert proc.returncode != 0
    assert "no-such-token" in proc.stderr


@pytest.mark.same_on_every_database
def test_revoked_token_is_rejected_by_the_api(cli: Cli) -> None:
    org = cli.org()
    tok = cli.token(org)
    journey = cli.json("journey", "publish", str(EXAMPLE), "--org", org, "--json")
    url = f"/chatbotapi/external/orgs/{org}/journeys/{journey['id']}/instances/search"
    body = {"filterSpecification": {"type": "JourneyStatusSpecification", "status": "InProgress"}}
    headers = {"Authorization": f"Bearer {tok['token']}"}
    with serve(cli) as srv, httpx.Client(base_url=srv.base_url, timeout=30) as http:
        r = http.post(url, json=body, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == []
        cli.ok("token", "revoke", tok["id"])
        r = http.post(url, json=body, headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
    listed = cli.json("token", "list", "--json")
    assert listed[0]["lastUsedAt"] is not None  # the successful call was recorded


# ---------------------------------------------------------------------------- journey validate
@pytest.mark.same_on_every_database
def test_validate_example_ok(cli: Cli) -> None:
    proc = subprocess.run(
        [*JOURNEYS, "journey", "validate", str(EXAMPLE)],
        cwd=cli.cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == f"{EXAMPLE}: ok\n"  # the result on stdout; stderr is for problems
    assert proc.stderr == ""
    assert not cli.path.exists()  # validation needs no database


PROBLEM_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?:(?P<path>[\w\[\].]+): )?(?P<message>.+)$")


def validate(cli: Cli, path: Path) -> tuple[subprocess.CompletedProcess[str], list[re.Match[str]]]:
    """Problems are diagnostics: one per line on stderr, nothing on stdout."""
    proc = cli.run("journey", "validate", str(path))
    lines = proc.stderr.splitlines()
    matches = [PROBLEM_LINE.match(line) for line in lines]
    assert lines and all(matches), proc.stderr
    assert proc.stdout == ""
    return proc, [m for m in matches if m]


@pytest.mark.same_on_every_database
def test_validate_reports_a_template_that_would_build_hundreds_of_megabytes(cli: Cli, tmp_path: Path) -> None:
    """`{{ 'x' * 300000000 }}` passed validation (and `simulate` rendered it): the sandbox
    refuses to build it, so validation reports it at once."""
    old = 'body: "Reminder: {{ patientName }}, your appointment is tomorrow, {{ appointmentDateTime }}."'
    text = replace_once(example_text(), old, "body: \"{{ 'x' * 300000000 }}\"")
    path = write(tmp_path, "huge.yaml", text)
    proc, [problem] = validate(cli, path)
    assert proc.returncode == 1
    assert int(problem["line"]) == line_of(text, "300000000")
    assert problem["message"] == (
        "template builds a value larger than 1,000,000 characters (the limit) at template line 1"
    )
    text = replace_once(example_text(), old, "body: \"{{ patientName * 2000 }}\"")
    proc, [problem] = validate(cli, write(tmp_path, "long.yaml", text))
    assert problem["message"] == "the SMS body renders more than 1,600 characters (the limit)"


@pytest.mark.same_on_every_database
def test_validate_unknown_step_type(cli: Cli, tmp_path: Path) -> None:
    text = replace_once(
        example_text(), "      - id: 20\n        type: wait_until", "      - id: 20\n        type: teleport"
    )
    path = write(tmp_path, "unknown-step.yaml", text)
    proc, problems = validate(cli, path)
    assert proc.returncode == 1
    assert len(problems) == 1, proc.stderr
    p = problems[0]
    assert p["file"] == str(path)
    assert int(p["line"]) == line_of(text, "type: teleport")
    assert p["path"] == "flows[0].steps[1].type"
    assert "teleport" in p["message"]


@pytest.mark.same_on_every_database
def test_validate_send_sms_to_unknown_parameter(cli: Cli, tmp_path: Path) -> None:
    text = replace_once(
        example_text(),
        "        to: phoneNumber\n        frequency_cap: false  # transactional: confirms",
        "        to: mobileNumber\n        frequency_cap: false  # transactional: confirms",
    )
    path = write(tmp_path, "unknown-param.yaml", text)
    proc, problems = validate(cli, path)
    assert proc.returncode == 1
    assert len(problems) == 1, proc.stderr
    p = problems[0]
    assert p["file"] == str(path)
    assert int(p["line"]) == line_of(text, "to: mobileNumber")
    assert p["path"] == "flows[0].steps[0].to"
    assert "mobileNumber" in p["message"]


@pytest.mark.same_on_every_database
def test_validate_yaml_syntax_error(cli: Cli, tmp_path: Path) -> None:
    text = replace_once(example_text(), "name: Appointment Reminder", "name: [Appointment Reminder")
    path = write(tmp_path, "syntax.yaml", text)
    proc, problems = validate(cli, path)
    assert proc.returncode == 1
    assert len(problems) == 1, proc.stderr
    p = problems[0]
    assert p["file"] == str(path)
    # the parser notices one line after the unclosed bracket
    assert int(p["line"]) in (line_of(text, "name: [Appointment"), line_of(text, "description:"))
    assert "YAML" in p["message"]


@pytest.mark.same_on_every_database
def test_validate_reports_every_problem_on_its_own_line(cli: Cli, tmp_path: Path) -> None:
    text = replace_once(
        example_text(),
        "        to: phoneNumber\n        frequency_cap: false  # transactional: confirms",
        "        to: mobileNumber\n        frequency_cap: false  # transactional: confirms",
    )
    text = replace_once(
        text,
        '        to: phoneNumber\n        body: "Reminder:',
        '        to: cellNumber\n        body: "Reminder:',
    )
    path = write(tmp_path, "two.yaml", text)
    proc, problems = validate(cli, path)
    assert proc.returncode == 1
    assert len(problems) == 2, proc.stderr
    by_line = {int(p["line"]): p for p in problems}
    assert "mobileNumber" in by_line[line_of(text, "to: mobileNumber")]["message"]
    assert by_line[line_of(text, "to: mobileNumber")]["path"] == "flows[0].steps[0].to"
    assert "cellNumber" in by_line[line_of(text, "to: cellNumber")]["message"]
    assert by_line[line_of(text, "to: cellNumber")]["path"] == "flows[0].steps[2].to"


@pytest.mark.same_on_every_database
def test_validate_reports_shape_and_reference_problems_in_one_run(cli: Cli, tmp_path: Path) -> None:
    """An unknown step type (step 20) does not hide a reference to an unknown parameter elsewhere;
    step 110's `next: 20`, naming the step that failed, is not reported as unknown."""
    text = replace_once(
        example_text(), "      - id: 20\n        type: wait_until", "      - id: 20\n        type: teleport"
    )
    text = replace_once(
        text,
        '        to: phoneNumber\n        body: "Reminder:',
        '        to: cellNumber\n        body: "Reminder:',
    )
    text = replace_once(text, "        next: 30\n", "        next: 20\n")
    path = write(tmp_path, "both.yaml", text)
    proc, problems = validate(cli, path)
    assert proc.returncode == 1
    assert [(int(p["line"]), p["path"]) for p in problems] == [
        (line_of(text, "type: teleport"), "flows[0].steps[1].type"),
        (line_of(text, "to: cellNumber"), "flows[0].steps[2].to"),
    ], proc.stderr
    assert "unknown step type 'teleport'" in problems[0]["message"]
    assert "no parameter named 'cellNumber'" in problems[1]["message"]


@pytest.mark.same_on_every_database
def test_validate_missing_file_fails(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    proc = cli.run("journey", "validate", str(missing))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == f"{missing}: cannot read file: No such file or directory\n"


@pytest.mark.same_on_every_database
def test_demo_with_a_missing_or_invalid_example_fails_clearly(cli: Cli, tmp_path: Path) -> None:
    state = ["--state-file", str(tmp_path / "demo" / "demo.json")]
    missing = tmp_path / "nope.yaml"
    proc = cli.run("demo", "--example", str(missing), *state)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"{missing}: cannot read file: No such file or directory\n"
    bad = write(tmp_path, "bad.yaml", example_text().replace("type: wait_until", "type: teleport", 1))
    proc = cli.run("demo", "--example", str(bad), *state)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert "unknown step type 'teleport'" in proc.stderr and "Traceback" not in proc.stderr
    assert not cli.path.exists() and not (tmp_path / "demo").exists()  # nothing set up


@pytest.mark.same_on_every_database
def test_a_demo_key_file_that_cannot_be_made_or_was_lost_fails_clearly(cli: Cli, tmp_path: Path) -> None:
    state = ["--example", str(EXAMPLE), "--state-file", str(tmp_path / "demo" / "demo.json")]
    folder = tmp_path / "a-folder"
    folder.mkdir()
    proc = cli.run("demo", *state, "--secret-key-file", str(folder))
    assert proc.returncode == 1 and f"--secret-key-file: {folder} is a directory" in proc.stderr
    key = tmp_path / "keys" / "secret-key"
    cli.ok("demo", *state, "--secret-key-file", str(key))
    cli.env["JOURNEYS_SECRET_KEY_FILE"] = str(key)
    org = cli.json("org", "list", "--json")[0]["id"]
    cli.ok("optout", "add", "--org", org, "--phone", "+13125550100")  # patient data: the org's key is made
    del cli.env["JOURNEYS_SECRET_KEY_FILE"]
    key.unlink()  # the key is lost: the demo does not make another over the encrypted data
    proc = cli.run("demo", *state, "--secret-key-file", str(key))
    assert proc.returncode == 1 and "encrypted with a key that is no longer in" in proc.stderr
    assert not key.exists() and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------- journey publish
EXPECTED_FLOWS = [
    {"id": "main", "name": "Main Flow", "main": True},
    {"id": "rescheduled", "name": "Appointment Rescheduled", "main": False},
    {"id": "no-show", "name": "Missed Appointment", "main": False},
]


@pytest.mark.same_on_every_database
def test_publish_then_republish(cli: Cli) -> None:
    org = cli.org()
    proc = cli.ok("journey", "publish", str(EXAMPLE), "--org", org, "--json")
    first = json.loads(proc.stdout)
    assert isinstance(first, dict)
    assert set(first) == {"id", "name", "version", "flows"}
    assert first["name"] == "Appointment Reminder"
    assert first["version"] == 1
    assert first["flows"] == EXPECTED_FLOWS
    assert cli.count("journeys", org) == 1
    assert cli.count("journey_versions", org) == 1

    second = cli.json("journey", "publish", str(EXAMPLE), "--org", org, "--json")
    assert second == {**first, "version": 2}
    assert cli.count("journeys", org) == 1
    assert cli.count("journey_versions", org) == 2

    listed = cli.json("journey", "list", "--org", org, "--json")
    assert [(j["id"], j["version"]) for j in listed] == [(first["id"], 2)]

    # another org gets its own chatBotId, at version 1
    other = cli.org("Other")
    theirs = cli.json("journey", "publish", str(EXAMPLE), "--org", other, "--json")
    assert theirs["id"] != first["id"]
    assert theirs["version"] == 1


@pytest.mark.same_on_every_database
def test_publish_invalid_file_stores_nothing(cli: Cli, tmp_path: Path) -> None:
    org = cli.org()
    text = replace_once(
        example_text(), "      - id: 20\n        type: wait_until", "      - id: 20\n        type: teleport"
    )
    path = write(tmp_path, "bad.yaml", text)
    proc = cli.run("journey", "publish", str(path), "--org", org, "--json")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert f"{path}:{line_of(text, 'type: teleport')}: " in proc.stderr
    assert cli.count("journeys", org) == 0
    assert cli.count("journey_versions", org) == 0
    assert cli.json("journey", "list", "--org", org, "--json") == []


@pytest.mark.same_on_every_database
def test_publish_unknown_org_fails(cli: Cli) -> None:
    cli.ok("init")
    proc = cli.run("journey", "publish", str(EXAMPLE), "--org", "no-such-org", "--json")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "no-such-org" in proc.stderr
    assert cli.count("journeys") == 0
    assert cli.count("journey_versions") == 0


# ---------------------------------------------------------------------------- messages / help
@pytest.mark.same_on_every_database
def test_messages_empty_on_fresh_database(cli: Cli) -> None:
    assert cli.json("messages", "--json") == []


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    "args",
    [
        [],
        ["init"],
        ["org"],
        ["org", "create"],
        ["org", "list"],
        ["token"],
        ["token", "create"],
        ["token", "list"],
        ["token", "revoke"],
        ["journey"],
        ["journey", "validate"],
        ["journey", "publish"],
        ["journey", "list"],
        ["messages"],
        ["serve"],
        ["worker"],
        ["demo"],
    ],
    ids=lambda a: " ".join(a) or "journeys",
)
def test_help(args: list[str], tmp_path: Path) -> None:
    proc = subprocess.run(
        [*JOURNEYS, *args, "--help"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # --help touches no database


# ---------------------------------------------------------------------------- demo + serve, end to end
PHI = ["John Smith", "Jane Green", "+15555550100", "5555550100", "Maria Lopez", "+15555550199", "5555550199"]


def run_demo(cli: Cli, state: Path, base_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ("--example", str(EXAMPLE), "--state-file", str(state), "--base-url", base_url, *extra)
    return cli.ok("demo", *args)


@dataclass
class Tour:
    """What `journeys demo` printed: the exported variables and the tour's requests."""

    env: dict[str, str]
    bulk_url: str
    bulk_body: dict[str, Any]
    search_url: str
    search_body: dict[str, Any]
    headers: dict[str, str]


def parse_tour(output: str, cwd: Path) -> Tour:
    """The printed `export` lines and `curl … -d @FILE` commands, resolved as a shell would."""
    env: dict[str, str] = {}
    for line in re.findall(r"^\s*export (.+)$", output, re.M):
        env.update(re.findall(r"(\w+)='([^']*)'", line))
    requests = {}
    for endpoint in ("bulk", "search"):
        m = re.search(
            r'curl -sS (?:-i )?-X POST "\$API/' + endpoint + r'" -H "Authorization: Bearer \$TOKEN" '
            r"-H 'Content-Type: application/json' -d @(\S+)$",
            output,
            re.M,
        )
        assert m, f"no {endpoint} curl in:\n{output}"
        requests[endpoint] = (f"{env['API']}/{endpoint}", json.loads((cwd / m[1]).read_text()))
    return Tour(
        env,
        *requests["bulk"],
        *requests["search"],
        headers={"Authorization": f"Bearer {env['TOKEN']}"},
    )


# 10:00 and 03:30 on a Monday/Tuesday in Chicago (CST), whatever the wall clock says.
DAYTIME = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)
NIGHT = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)


def wait_for(what: str, check: Any, seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.2)


@pytest.mark.same_on_every_database
def test_demo_then_serve_end_to_end(cli: Cli, tmp_path: Path) -> None:
    cli.at(DAYTIME)
    state = tmp_path / "demo.json"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    key_file = tmp_path / "keys" / "secret-key"  # as `make run`: the demo's key, made once
    out = run_demo(cli, state, base, "--secret-key-file", str(key_file)).stdout
    key = key_file.read_text()
    assert oct(key_file.stat().st_mode & 0o777) == oct(0o600) and len(key.strip()) >= 43

    saved = json.loads(state.read_text())
    token, org = saved["token"], saved["orgId"]
    for private in (state, *(tmp_path / f"{n}.json" for n in ("bulk", "search", "reschedule"))):
        assert oct(private.stat().st_mode & 0o777) == oct(0o600)
    chat_bot = re.search(r"chatBotId\s+(\S+)", out)
    assert chat_bot, out
    chat_bot_id = chat_bot[1]
    assert token in out
    assert org in out
    tour = parse_tour(out, tmp_path)
    api = f"{base}/chatbotapi/external/orgs/{org}/journeys/{chat_bot_id}/instances"
    assert tour.env == {"ORG": org, "TOKEN": token, "API": api, "JOURNEYS_SECRET_KEY_FILE": str(key_file)}
    cli.env["JOURNEYS_SECRET_KEY_FILE"] = tour.env["JOURNEYS_SECRET_KEY_FILE"]  # the tour's commands
    assert tour.headers == {"Authorization": f"Bearer {token}"}
    # appointments the day after tomorrow (Chicago), inside the window: sent at once
    assert "Wednesday, November 4 at 10:00 and 10:30" in out
    assert "It is 10:00 in Chicago, inside the send window (08:00-21:00" in out
    assert "sends John's booking text at once" in out
    days = {i["parameters"]["appointmentDateTime"][:10] for i in tour.bulk_body["instances"]}
    assert days == {"2026-11-04"}

    journeys = cli.json("journey", "list", "--org", org, "--json")
    assert [(j["id"], j["name"], j["version"]) for j in journeys] == [
        (chat_bot_id, "Appointment Reminder", 1)
    ]

    console = re.search(r"The staff console: (\S+)\n  sign in as  (\S+)\n  password    (\S+)", out)
    assert console, out
    console_url, admin_email, admin_password = console[1], console[2], console[3]
    assert console_url == f"{base}/console/login?org={org}"
    assert saved["adminPassword"] == admin_password

    # running demo again creates nothing, prints the same token and login, and new appointment ids
    again_out = run_demo(cli, state, base, "--secret-key-file", str(key_file)).stdout
    again = parse_tour(again_out, tmp_path)
    assert key_file.read_text() == key  # kept
    assert f"password    {admin_password}\n" in again_out
    assert again.env["TOKEN"] == token
    assert json.loads(state.read_text())["token"] == token
    assert [o["id"] for o in cli.json("org", "list", "--json")] == [org]
    assert [(j["id"], j["version"]) for j in cli.json("journey", "list", "--org", org, "--json")] == [
        (chat_bot_id, 1)
    ]
    assert cli.count("api_tokens") == 1
    assert cli.count("journey_versions") == 1
    ids = [{i["parameters"]["appointmentId"] for i in t.bulk_body["instances"]} for t in (tour, again)]
    assert len(ids[0]) == 2 and not ids[0] & ids[1]

    with_phone = [i for i in tour.bulk_body["instances"] if i["parameters"].get("phoneNumber")]
    assert len(with_phone) == 1
    phone = with_phone[0]["parameters"]["phoneNumber"]
    name = with_phone[0]["parameters"]["patientName"]
    assert phone in PHI and name in PHI

    with serve(cli, port) as srv, httpx.Client(timeout=30) as http:
        # the printed console login works, and the console lists the demo journey
        with httpx.Client(timeout=30) as browser:
            form = browser.get(console_url)
            assert form.status_code == 200, form.text
            login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
            assert login_csrf, form.text
            fields = {"org": org, "email": admin_email, "password": admin_password}
            fields["login_csrf"] = login_csrf[1]
            signed_in = browser.post(f"{base}/console/login", data=fields, follow_redirects=True)
            assert signed_in.status_code == 200, signed_in.text
            assert "Appointment Reminder" in signed_in.text and admin_email in signed_in.text
        # the printed bulk curl's request, as the shell would send it
        r = http.post(tour.bulk_url, content=json.dumps(tour.bulk_body), headers=tour.headers)
        assert r.status_code == 204, r.text
        # the second run's curl works too (no "an active instance already exists")
        r = http.post(again.bulk_url, content=json.dumps(again.bulk_body), headers=again.headers)
        assert r.status_code == 204, r.text
        # a rejected request carrying PHI (must not reach the logs either)
        bad = {
            "flowId": None,
            "timeZone": "America/Chicago",
            "instances": [
                {
                    "parameters": {
                        "patientId": "100002",
                        "patientName": "Maria Lopez",
                        "appointmentId": "77-ABC-00001",
                        "appointmentDateTime": "2023-13-01 08:00:00",
                        "phoneNumber": "+15555550199",
                    }
                }
            ],
        }
        r = http.post(tour.bulk_url, json=bad, headers=tour.headers)
        assert r.status_code == 400, r.text
        assert any("appointmentDateTime" in e for e in r.json())

        # the printed search curl finds John's instances (one per run)
        r = http.post(tour.search_url, json=tour.search_body, headers=tour.headers)
        assert r.status_code == 200, r.text
        found = r.json()
        assert len(found) == 2
        assert {f["parameters"]["phoneNumber"] for f in found} == {phone}
        first = [f for f in found if f["parameters"]["appointmentId"] in ids[0]]
        instance_id = first[0]["id"]

        def sent_to(instance: str) -> list[dict[str, Any]]:
            msgs = cli.json("messages", "--instance", instance, "--json")
            return [m for m in msgs if m["status"] == "sent"]

        sent = wait_for(f"the booking text of {instance_id}\n{srv.logs()}", lambda: sent_to(instance_id))
        msg = sent[0]
        assert msg["to"] == phone
        assert msg["body"] == (
            f"Hi {name}, your appointment is booked for Wednesday, November 4 at 10:00 AM. "
            "Reply C to confirm or R to reschedule."
        )
        assert msg["stepId"] == 10
        assert msg["orgId"] == org
        assert msg["channel"] == "sms"
        assert ISO_Z.match(msg["sentDateTime"])
        # only the patients with a phone number got a text
        wait_for("both runs' texts", lambda: len(cli.json("messages", "--json")) == 2)
        assert cli.json("messages", "--org", org, "--instance", instance_id, "--json") == [msg]
        text = cli.ok("messages").stdout
        assert phone in text and instance_id in text

        # the tour's reply: John answers C, the newest waiting instance thanks him
        reply = cli.json("reply", "--org", org, "--from", phone, "--body", "C", "--json")
        assert reply["matched"] is True
        thanks = wait_for(
            "the thank-you",
            lambda: [m for m in sent_to(reply["instanceId"]) if m["stepId"] == 16],
        )
        assert thanks[0]["body"] == f"Thank you, {name}: your appointment is confirmed."

        # the step ran: lastStepExecuted is set, and the timeline says what happened
        r = http.get(f"{api}/{reply['instanceId']}", headers=tour.headers)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["lastStepExecuted"]["flowName"] == "Main Flow"
        kinds = [e["type"] for e in got["events"]]
        assert kinds[kinds.index("reply_received") :][:3] == ["reply_received", "sms_queued", "wait"]

        # the tour's reschedule: the second run's John moves to Thursday 11:00
        m = re.search(r'curl -sS -i -X POST "\$API/bulk" .* -d @(\S+reschedule\.json)$', out, re.M)
        assert m, out
        moved = json.loads((tmp_path / "reschedule.json").read_text())
        assert moved["flowId"] == "rescheduled"
        r = http.post(again.bulk_url, content=json.dumps(moved), headers=again.headers)
        assert r.status_code == 204, r.text
        johns = {f["parameters"]["appointmentId"]: f["id"] for f in found}
        second_john = johns[moved["instances"][0]["parameters"]["appointmentId"]]
        told = wait_for("the new time", lambda: [m for m in sent_to(second_john) if m["stepId"] == 105])
        assert told[0]["body"] == f"{name}, your appointment has moved to Thursday, November 5 at 11:00 AM."

        # graceful shutdown on SIGTERM
        srv.proc.send_signal(signal.SIGTERM)
        try:
            code = srv.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server did not exit within 10 s of SIGTERM:\n{srv.logs()}")
        assert code == 0, srv.logs()
        assert "worker stopped" in srv.logs()
        assert "Traceback" not in srv.logs()

    logs = srv.logs()
    assert logs.strip(), "expected the server to log something"
    for secret in [*PHI, token, admin_password, key.strip()]:
        assert secret not in logs, f"{secret!r} appears in the server logs:\n{logs}"
    stored = b"".join(p.read_bytes() for p in tmp_path.glob(f"{cli.path.name}*"))  # with the WAL
    assert name.encode() not in stored and phone.encode() not in stored  # stored encrypted
    del cli.env["JOURNEYS_SECRET_KEY_FILE"]  # without the key, nothing is read as plain text
    keyless = cli.run("messages", "--json")
    assert keyless.returncode == 1 and "stored encrypted: set JOURNEYS_SECRET_KEY" in keyless.stderr


@pytest.mark.same_on_every_database
def test_demo_at_night_holds_the_text_and_says_when_it_goes(cli: Cli, tmp_path: Path) -> None:
    """03:30 in Chicago: the tour says the text waits for the send window, and `journeys
    messages` shows it held with the time it will go (08:00 local)."""
    cli.at(NIGHT)
    port = free_port()
    out = run_demo(cli, tmp_path / "demo.json", f"http://127.0.0.1:{port}").stdout
    assert "It is 03:30 in Chicago, outside the send window (08:00-21:00" in out
    assert "held until 08:00 (in 4 h 30 min)" in out
    tour = parse_tour(out, tmp_path)
    with serve(cli, port), httpx.Client(timeout=30) as http:
        r = http.post(tour.bulk_url, content=json.dumps(tour.bulk_body), headers=tour.headers)
        assert r.status_code == 204, r.text
        held = wait_for("the held text", lambda: cli.json("messages", "--json"))
    assert [(m["status"], m["stepId"], m["goesDateTime"], m["reason"]) for m in held] == [
        ("held", 10, "2026-11-03T14:00:00.000000Z", "outside the send window")
    ]
    assert held[0]["body"].startswith("Hi John Smith, your appointment is booked for Thursday, November 5")
    text = cli.ok("messages").stdout
    assert "held     sms to +15555550100" in text
    goes = "goes at Tue 2026-11-03 08:00 CST (2026-11-03T14:00:00Z) (in 4 h 30 min): outside the send window"
    assert goes in text
    # nothing waits for a reply yet: a reply now is stored for staff, not lost
    reply = cli.json("reply", "--org", tour.env["ORG"], "--from", "+15555550100", "--body", "C", "--json")
    assert reply["matched"] is False


REPLY_JOURNEY = """
name: Ask
frequency_cap: null
send_window: null
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
  - {name: answer, required: false}
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: send_sms, to: phone, body: "Reply C to confirm"}
      - id: 20
        type: wait_for_reply
        to: phone
        timeout: 1d
        save_reply_to: answer
        replies: [{outcome: confirmed, next: 30}]
      - {id: 25, type: end, outcome: other}
      - {id: 30, type: end, outcome: confirmed}
"""


@pytest.mark.same_on_every_database
def test_reply_command_hands_the_reply_to_the_waiting_instance(cli: Cli, tmp_path: Path) -> None:
    org = cli.org()
    secret = cli.token(org)["token"]
    bot = cli.json(
        "journey", "publish", str(write(tmp_path, "ask.yaml", REPLY_JOURNEY)), "--org", org, "--json"
    )["id"]
    # Nobody waits yet: stored as unmatched.
    out = cli.json("reply", "--org", org, "--from", "(555) 555-0100", "--body", "C", "--json")
    assert out["matched"] is False and out["instanceId"] is None
    assert cli.count("inbound_messages", org) == 1
    with serve(cli) as server:
        base = f"{server.base_url}/chatbotapi/external/orgs/{org}/journeys/{bot}/instances"
        headers = {"Authorization": f"Bearer {secret}"}
        body = {"timeZone": "UTC", "instances": [{"parameters": {"key": "k1", "phone": "+15555550100"}}]}
        assert httpx.post(f"{base}/bulk", json=body, headers=headers).status_code == 204
        deadline = time.monotonic() + 15
        while cli.count("outbox", org) == 0:
            assert time.monotonic() < deadline, "the worker never sent the question"
            time.sleep(0.1)
        time.sleep(0.3)  # the instance is now waiting for the reply
        out = cli.json("reply", "--org", org, "--from", "5555550100", "--body", " yes ", "--json")
        assert out["matched"] is True and out["instanceId"]
        deadline = time.monotonic() + 15
        while True:
            got = httpx.get(f"{base}/{out['instanceId']}", headers=headers).json()
            if got["status"] == "Completed":
                break
            assert time.monotonic() < deadline, got
            time.sleep(0.1)
        assert got["parameters"]["answer"] == " yes "
        assert [e["detail"] for e in got["events"] if e["type"] == "reply_received"] == [
            {"outcome": "confirmed"}
        ]


@pytest.mark.same_on_every_database
def test_reply_command_rejects_bad_input(cli: Cli) -> None:
    org = cli.org()
    proc = cli.run("reply", "--org", org, "--from", "not a number", "--body", "C")
    assert proc.returncode != 0
    assert "from: must be a phone number" in proc.stderr
    proc = cli.run("reply", "--org", org, "--from", "+15555550100", "--body", "x" * 1601)
    assert proc.returncode != 0
    assert "body: at most 1600 characters" in proc.stderr
    assert cli.count("inbound_messages", org) == 0
