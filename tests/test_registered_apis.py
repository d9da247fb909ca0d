"""Registered APIs (issue 14): an http_request step calls a clinic system by name (`api: ehr`,
`path: …`); the worker adds the API's base URL and credentials — an API key (header or query),
basic, bearer, or an OAuth2 token fetched with the client credentials grant, cached and fetched
again after a 401. Credentials are sealed, never printed; the address policy applies."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from support.api import bulk
from support.cli import JOURNEYS, clean_env
from support.keys import strong_key
from support.net import LocalHttpServer
from support.server import Server, Tenant

from journeys.definitions import DefinitionError, load_definition_text

SECRET = "s3cr3t-Credential-0123456789"
CLIENT_SECRET = "client-Secret-9876543210"


class Ehr:
    """A clinic system: /token (OAuth2) and /api/… (JSON), recording every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[int] = []  # statuses for /api/… calls, in order (default 200)
        self.lock = threading.Lock()
        self.tokens = 0
        ehr = self

        class Handler(BaseHTTPRequestHandler):
            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                with ehr.lock:
                    seen = {"path": self.path, "headers": dict(self.headers.items()), "body": raw}
                    ehr.requests.append(seen)
                    if self.path.startswith("/token"):
                        ehr.tokens += 1
                        status, payload = 200, {"access_token": f"tok-{ehr.tokens}", "expires_in": 3600}
                    else:
                        status = ehr.answers.pop(0) if ehr.answers else 200
                        payload = {"data": {"status": "arrived"}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = handle_any

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = LocalHttpServer(Handler)
        self.base = self.server.base_url

    def api_calls(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].startswith("/api")]


JOURNEY = """
name: EHR check
parameters:
  - {name: patientId, identifier: true}
  - {name: ehrStatus, required: false}
frequency_cap: null
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: http_request, method: GET, api: ehr, path: "/api/patients/{{ patientId }}",
         save: {ehrStatus: data.status}, on_failure: 30}
      - {id: 20, type: end, outcome: checked}
      - {id: 30, type: end, outcome: failed}
"""


@pytest.fixture(scope="module")
def srv(database_url: str) -> Iterator[Server]:
    server = Server(database_url, secret_key=strong_key("registered apis"))
    yield server
    server.stop()


@pytest.fixture()
def ehr() -> Iterator[Ehr]:
    fake = Ehr()
    yield fake
    fake.server.stop()


def journeys_cli(srv: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOURNEYS, "--db", srv.settings.database_url, *args],
        env=clean_env(JOURNEYS_SECRET_KEY=srv.settings.secret_key or ""),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def register(srv: Server, org_id: str, base: str, auth: str, *settings: str, name: str = "ehr") -> None:
    sets = [arg for s in settings for arg in ("--set", s)]
    args = ["--org", org_id, "--name", name, "--base-url", base, "--auth", auth, *sets]
    proc = journeys_cli(srv, "api", "set", *args)
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr and CLIENT_SECRET not in proc.stdout + proc.stderr


def query(request: dict[str, Any]) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request["path"]).query)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def run(srv: Server, t: Tenant, patient: str) -> dict[str, Any]:
    """Start the patient's instance, let the worker make the call; the instance as the API shows it."""
    bulk(srv.http, t, [{"parameters": {"patientId": patient}}])
    srv.run_worker()
    body = {"filterSpecification": {"type": "JourneyParameterSpecification", "parameterName": "patientId",
                                    "operator": "equals", "rightOperand": patient}, "includeParameters": True}
    [inst] = srv.http.post(t.url("/search"), json=body, headers=t.headers).json()  # fmt: skip
    return dict(srv.http.get(t.url(f"/{inst['id']}"), headers=t.headers).json())


@pytest.mark.parametrize(
    ("auth", "settings", "check"),
    [
        ("api_key", [f"key={SECRET}"], lambda r: r["headers"]["X-API-Key"] == SECRET),
        ("api_key", [f"key={SECRET}", "header=X-Clinic"], lambda r: r["headers"]["X-Clinic"] == SECRET),
        ("api_key", [f"key={SECRET}", "query=apikey"], lambda r: query(r) == {"apikey": [SECRET]}),
        ("basic", ["username=clinic", f"password={SECRET}"],
         lambda r: r["headers"]["Authorization"] == "Basic " + b64(f"clinic:{SECRET}")),
        ("bearer", [f"token={SECRET}"], lambda r: r["headers"]["Authorization"] == f"Bearer {SECRET}"),
        ("none", [], lambda r: "Authorization" not in r["headers"]),
    ],
)  # fmt: skip
def test_each_kind_of_authentication_reaches_the_api(
    srv: Server, ehr: Ehr, auth: str, settings: list[str], check: Any
) -> None:
    t = srv.tenant(JOURNEY)
    register(srv, t.org_id, ehr.base, auth, *settings)
    inst = run(srv, t, "P-1")
    assert inst["parameters"]["ehrStatus"] == "arrived", inst
    [call] = ehr.api_calls()
    assert urlsplit(call["path"]).path == "/api/patients/P-1" and check(call), call


def test_an_oauth2_token_is_fetched_once_reused_and_fetched_again_after_a_401(srv: Server, ehr: Ehr) -> None:
    t = srv.tenant(JOURNEY)
    register(srv, t.org_id, ehr.base + "/", "oauth2", f"token_url={ehr.base}/token", "client_id=journeys",
             f"client_secret={CLIENT_SECRET}", "scope=patient.read")  # fmt: skip
    assert run(srv, t, "P-1")["parameters"]["ehrStatus"] == "arrived"
    assert run(srv, t, "P-2")["parameters"]["ehrStatus"] == "arrived"
    token_requests = [r for r in ehr.requests if r["path"] == "/token"]
    assert len(token_requests) == 1  # cached
    [grant] = token_requests
    assert parse_qs(grant["body"]) == {"grant_type": ["client_credentials"], "scope": ["patient.read"]}
    basic = base64.b64encode(f"journeys:{CLIENT_SECRET}".encode()).decode()
    assert grant["headers"]["Authorization"] == f"Basic {basic}"
    assert [c["headers"]["Authorization"] for c in ehr.api_calls()] == ["Bearer tok-1", "Bearer tok-1"]

    ehr.answers.append(401)  # the API no longer takes the token: that call fails, the next fetches anew
    assert run(srv, t, "P-3")["parameters"].get("ehrStatus") is None
    assert run(srv, t, "P-4")["parameters"]["ehrStatus"] == "arrived"
    assert ehr.api_calls()[-1]["headers"]["Authorization"] == "Bearer tok-2"


def test_a_call_that_cannot_be_made_fails_the_step_saying_why(srv: Server, ehr: Ehr) -> None:
    t = srv.tenant(JOURNEY)
    inst = run(srv, t, "P-1")  # no API named ehr
    [failed] = [e for e in inst["events"] if e["type"] == "http_failed"]
    assert "registered API ehr does not exist" in json.dumps(failed)
    closed = Server(srv.settings.database_url, secret_key=srv.settings.secret_key, outbound_allow="")
    try:  # a server whose address policy refuses loopback: the registered API is refused too
        t2 = closed.tenant(JOURNEY)
        register(closed, t2.org_id, ehr.base, "bearer", f"token={SECRET}")
        inst = run(closed, t2, "P-1")
        assert "the address is not allowed" in json.dumps(inst["events"])
        assert ehr.api_calls() == []
    finally:
        closed.stop()


def test_the_command_line_lists_and_removes_apis_and_never_shows_credentials(srv: Server, ehr: Ehr) -> None:
    t = srv.tenant(JOURNEY)
    register(srv, t.org_id, ehr.base, "bearer", f"token={SECRET}")
    listed = journeys_cli(srv, "api", "list", "--org", t.org_id, "--json")
    assert listed.returncode == 0, listed.stderr
    shown = [(a["name"], a["baseUrl"], a["auth"]) for a in json.loads(listed.stdout)]
    assert shown == [("ehr", ehr.base, "bearer")] and SECRET not in listed.stdout
    with srv.engine.connect() as conn:
        q = sa.text("SELECT * FROM org_apis WHERE org_id = :o")
        stored = repr(conn.execute(q, {"o": t.org_id}).all())
    assert SECRET not in stored  # sealed
    removed = journeys_cli(srv, "api", "remove", "--org", t.org_id, "--name", "ehr")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(journeys_cli(srv, "api", "list", "--org", t.org_id, "--json").stdout) == []
    log = journeys_cli(srv, "audit", "export", "--org", t.org_id, "--json").stdout
    actions = [json.loads(line)["action"] for line in log.splitlines()]
    assert "api.set" in actions and "api.remove" in actions


def test_bad_registrations_are_refused_clearly_and_store_nothing(srv: Server) -> None:
    t = srv.tenant(JOURNEY)
    org = ["api", "set", "--org", t.org_id]
    base = [*org, "--name", "ehr", "--base-url", "https://ehr.example/api"]
    oauth = ["--set", "token_url=nope", "--set", "client_id=c", "--set", "client_secret=s"]
    cases = [
        ([*org, "--name", "EHR!", "--base-url", "https://x.example"], "name:"),
        ([*org, "--name", "ehr", "--base-url", "ftp://x.example"], "base URL: must be"),
        ([*org, "--name", "ehr", "--base-url", "https://u:p@x.example"], "credentials"),
        ([*base, "--auth", "kerberos"], "auth: must be one of"),
        ([*base, "--auth", "bearer"], "token: required for bearer"),
        ([*base, "--auth", "bearer", "--set", f"token={SECRET}", "--set", "colour=blue"], "colour: unknown"),
        ([*base, "--auth", "api_key", "--set", "key=k", "--set", "header=X", "--set", "query=q"], "give one"),
        ([*base, "--auth", "oauth2", *oauth], "token_url: must be"),
        ([*base, "--auth", "bearer", "--set", "novalue"], "use KEY=VALUE"),
        (["api", "set", "--org", "nowhere", "--name", "ehr", "--base-url", "https://x.example"], "nowhere"),
        (["api", "remove", "--org", t.org_id, "--name", "ehr"], "has no registered API ehr"),
    ]
    for args, message in cases:
        proc = journeys_cli(srv, *args)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
        assert SECRET not in proc.stderr and "Traceback" not in proc.stderr
    args = [*JOURNEYS, "--db", srv.settings.database_url, *base, "--auth", "bearer", "--set", "token=x"]
    keyless = subprocess.run(args, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert keyless.returncode == 1 and "JOURNEYS_SECRET_KEY" in keyless.stderr
    assert json.loads(journeys_cli(srv, "api", "list", "--org", t.org_id, "--json").stdout) == []


def one_step(fields: str) -> str:
    return f"""
name: One step
parameters:
  - {{name: x}}
flows:
  - id: main
    name: Main
    steps:
      - {{id: 10, type: http_request, {fields}}}
      - {{id: 20, type: end}}
"""


@pytest.mark.same_on_every_database
def test_a_step_names_either_a_url_or_an_api_with_a_path() -> None:
    bad = {
        'url: "https://x.example", api: ehr': "give either 'url' or 'api'",
        "method: GET": "give either 'url' or 'api'",
        'url: "https://x.example", path: "/a"': "'path' goes with 'api'",
        'api: ehr, path: "patients"': "the path must start with /",
        'api: "EHR"': "api",
    }
    for fields, message in bad.items():
        with pytest.raises(DefinitionError) as caught:
            load_definition_text(one_step(fields))
        assert message in str(caught.value), (fields, str(caught.value))
    assert load_definition_text(one_step('api: ehr, path: "/a/{{ x }}"'))
    assert load_definition_text(one_step("api: ehr"))  # the base URL itself
