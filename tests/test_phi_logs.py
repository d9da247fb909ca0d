"""No patient data and no secret in any log line, third-party loggers and error texts included.

The most honest capture: a real `journeys serve` subprocess at JOURNEYS_LOG_LEVEL=DEBUG, its
stdout and stderr in one file, runs every step type (send_sms, send_email, http_request with the
patient's name and phone in a templated URL's query — and one to a refused address, wait,
wait_until, wait_for_reply with a reply, branch, set_parameters, goto, end) through every
channel (the fake Twilio, a real aiosmtpd SMTP server with AUTH), takes signed inbound Twilio
replies (a matched one, an unmatched one, STOP, a forged one), a rejected trigger, and delivers
event webhooks (one with `user:pass@` in its URL, one whose endpoint fails). Every value is
distinctive; afterwards none of them, nor any token, key, password or webhook secret, is in
the log. The database is a fresh one (SQLite, or PostgreSQL with JOURNEYS_TEST_DATABASE)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from support.cli import JOURNEYS
from support.databases import own_database
from support.fake_twilio import FakeTwilio
from support.keys import strong_key
from support.net import LocalHttpServer, free_port
from support.smtp import Mailbox, authenticator
from twilio.request_validator import RequestValidator

from journeys.logs import ScrubFilter, scrub

# ---------------------------------------------------------------- the distinctive values
SECRET_KEY = "sk-Phi-Guard-4471-secret-key-" + strong_key("phi-logs")  # a 72-character key
ACCOUNT_SID = "AC" + "9f8e7d6c5b4a3210" * 2
AUTH_TOKEN = "twilio-tok-Qv83Lp20zz"
FROM = "+13125550199"
SMTP_USER, SMTP_PASSWORD = "smtp-user-Wk42", "smtp-pass-Ru77Hq"
HOOK_SECRET = "whsec-Phi-9c1d7e3a5b"
HOOK_USER, HOOK_PASSWORD = "hook-user-Tj5", "hook-pass-Mz88Xc"

ANN = {
    "key": "APPT-QX-77123",
    "patientName": "Zebulon Quixwright",
    "phone": "(312) 555-0187",
    "email": "zebulon.quixwright@patients.example",
    "visitAt": "2020-01-06 09:00",
}
BEA = {
    "key": "APPT-QX-88456",
    "patientName": "Ysolde Brackenridge",
    "phone": "+1 312 555 0166",
    "email": "ysolde.brackenridge@patients.example",
    "visitAt": "2020-01-06 09:30",
}
REPLY = "Confirm Xylophone"
EHR_ANSWER = "Vermilion-Ocelot"
NOTE = "Kumquat-Lantern"
UNMATCHED = ("+13125550143", "Is Hortensia Pemberton-Vale coming?")
REFUSED = {"patientName": "Marguerite Oxenford", "phone": "+13125550178"}

PHI = [
    "Zebulon", "Quixwright", "APPT-QX-77123", "77123", "3125550187", "555-0187", "555 0187",
    "zebulon.quixwright", "patients.example",
    "Ysolde", "Brackenridge", "APPT-QX-88456", "88456", "3125550166", "555 0166", "555-0166",
    "Xylophone", "Vermilion", "Ocelot", "Kumquat", "Lantern",
    "3125550143", "Hortensia", "Pemberton", "Marguerite", "Oxenford", "3125550178",
]  # fmt: skip
SECRETS = [
    SECRET_KEY, AUTH_TOKEN, SMTP_USER, SMTP_PASSWORD, HOOK_SECRET, HOOK_USER, HOOK_PASSWORD,
    "Qv83Lp20zz", "Ru77Hq", "Mz88Xc", ACCOUNT_SID,
]  # fmt: skip

JOURNEY = """
name: PHI probe
send_window: null
frequency_cap: null
parameters:
  - {name: key, identifier: true}
  - {name: patientName}
  - {name: phone, type: phone}
  - {name: email, type: email}
  - {name: visitAt, type: datetime}
  - {name: ehrStatus, required: false}
  - {name: note, required: false}
  - {name: lastReply, required: false}
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: wait_until, parameter: visitAt, before: 1d, if_past: run_now}
      - id: 20
        type: send_sms
        to: phone
        body: "Hi {{ patientName }}, reply CONFIRM XYLOPHONE for {{ key }}"
      - id: 30
        type: http_request
        method: POST
        url: "EHR/patients/{{ key }}?name={{ patientName }}&phone={{ phone }}&email={{ email }}"
        headers: {X-Patient: "{{ patientName }}"}
        body: {name: "{{ patientName }}", phone: "{{ phone }}"}
        timeout: 5s
        save: {ehrStatus: data.status}
        on_failure: 900
      - id: 35
        type: http_request
        method: GET
        url: "http://169.254.169.254/latest/meta-data?name={{ patientName }}&phone={{ phone }}"
        timeout: 5s
        on_failure: 40
      - {id: 40, type: set_parameters, values: {note: "Kumquat-Lantern for {{ patientName }}"}}
      - id: 50
        type: send_email
        to: email
        subject: "For {{ patientName }}"
        body: "Hi {{ patientName }}, the EHR says {{ ehrStatus }}. {{ note }}"
      - {id: 60, type: wait, duration: 1s}
      - id: 70
        type: wait_for_reply
        to: phone
        timeout: 1d
        save_reply_to: lastReply
        replies: [{outcome: confirmed, match: ["confirm xylophone"], next: 80}]
        on_other: 900
        on_timeout: 900
      - id: 80
        type: branch
        cases: [{when: {parameter: ehrStatus, equals: Vermilion-Ocelot}, next: 90}]
        else: 900
      - {id: 90, type: goto, target: 100}
      - id: 100
        type: send_sms
        to: phone
        body: "Thanks {{ patientName }}, we got {{ lastReply }}"
      - {id: 110, type: end, outcome: confirmed}
      - {id: 900, type: end, outcome: trouble}
"""


# ---------------------------------------------------------------- small real servers
class Endpoint:
    """An HTTP endpoint on 127.0.0.1: the EHR (answers POSTs with JSON) or a webhook receiver
    (answers the challenge; POSTs with 200, or 500 when `failing`). Records every request."""

    def __init__(self, answer: dict[str, Any] | None = None, failing: bool = False) -> None:
        self.requests: list[dict[str, Any]] = []
        ep = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                ep.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                code = parse_qs(urlsplit(self.path).query).get("challengeCode", [""])[0]
                self._reply(
                    200, hmac.new(HOOK_SECRET.encode(), code.encode(), hashlib.sha256).hexdigest().encode()
                )

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ep.requests.append(
                    {"method": "POST", "path": self.path, "headers": dict(self.headers), "raw": raw}
                )
                if failing:
                    return self._reply(500, b'{"error": "down"}')
                self._reply(200, json.dumps(answer or {}).encode())

        self._server = LocalHttpServer(Handler)
        self.base = self._server.base_url

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture()
def db_url(tmp_path: Path) -> Iterator[str]:
    with own_database(tmp_path, "phi.db") as url:
        yield url


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
    env.update(PYTHONUNBUFFERED="1", JOURNEYS_SECRET_KEY=SECRET_KEY, **extra)
    return env


def cli(db: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [*JOURNEYS, "--db", db, *args], env=base_env(), cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def wait_for(what: str, check: Callable[[], bool], logs: Callable[[], str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds} s\n{logs()}")
        time.sleep(0.1)


@dataclass
class Outside:
    """The world outside the server, all real and local: Twilio, an SMTP relay, the EHR, and the
    clinic's webhook endpoints (one of them failing every delivery)."""

    fake: FakeTwilio
    mailbox: Mailbox
    smtp: Controller
    smtp_port: int
    ehr: Endpoint
    hook: Endpoint
    broken_hook: Endpoint


@pytest.fixture()
def outside() -> Iterator[Outside]:
    smtp_port, mailbox = free_port(), Mailbox()
    smtp = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=smtp_port,
        authenticator=authenticator(SMTP_USER, SMTP_PASSWORD),
        auth_required=True,
        auth_require_tls=False,
    )
    smtp.start()
    world = Outside(
        FakeTwilio(ACCOUNT_SID, AUTH_TOKEN).start(),
        mailbox,
        smtp,
        smtp_port,
        Endpoint(answer={"data": {"status": EHR_ANSWER}}),
        Endpoint(),
        Endpoint(failing=True),
    )
    yield world
    world.fake.stop()
    smtp.stop()
    for endpoint in (world.ehr, world.hook, world.broken_hook):
        endpoint.stop()


def set_up(db: str, cwd: Path, world: Outside) -> tuple[str, str, str, list[str]]:
    """Through the CLI: an org, a token, both providers, the journey. Returns (org, token,
    chatBotId, what the channel commands printed)."""
    org = json.loads(cli(db, cwd, "org", "create", "Clinic", "--json").stdout)["id"]
    token = json.loads(cli(db, cwd, "token", "create", "--org", org, "--name", "t", "--json").stdout)["token"]
    printed = []
    for args in (
        ["--channel", "sms", "--provider", "twilio", "--set", f"account_sid={ACCOUNT_SID}",
         "--set", f"auth_token={AUTH_TOKEN}", "--set", f"from={FROM}"],
        ["--channel", "email", "--provider", "smtp", "--set", "host=127.0.0.1",
         "--set", f"port={world.smtp_port}", "--set", "security=none", "--set", f"username={SMTP_USER}",
         "--set", f"password={SMTP_PASSWORD}", "--set", "from_address=clinic@clinic.example"],
    ):  # fmt: skip
        p = cli(db, cwd, "channel", "set", "--org", org, *args)
        printed.append(p.stdout + p.stderr)
    definition = cwd / "probe.yaml"
    definition.write_text(JOURNEY.replace("EHR", world.ehr.base))
    journey = json.loads(cli(db, cwd, "journey", "publish", str(definition), "--org", org, "--json").stdout)
    return org, token, str(journey["id"]), printed


@dataclass
class Served:
    """A running `journeys serve` (DEBUG, everything it prints in `log_path`) and a client."""

    proc: subprocess.Popen[bytes]
    base: str
    log_path: Path
    http: httpx.Client
    org: str
    headers: dict[str, str]
    api: str
    ids: dict[str, str] = field(default_factory=dict)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, what: str, check: Callable[[], bool]) -> None:
        wait_for(what, check, self.logs)

    def bulk(self, *params: dict[str, str]) -> int:
        body = {
            "flowId": None,
            "timeZone": "America/Chicago",
            "instances": [{"parameters": p} for p in params],
        }
        return self.http.post(f"{self.api}/bulk", json=body, headers=self.headers).status_code

    def instance(self, key: str) -> dict[str, Any]:
        if key not in self.ids:
            found = self.http.post(
                f"{self.api}/search", json={"includeParameters": True}, headers=self.headers
            )
            self.ids.update({i["parameters"]["key"]: i["id"] for i in found.json()})
        return dict(self.http.get(f"{self.api}/{self.ids[key]}", headers=self.headers).json())

    def events(self, key: str) -> list[str]:
        return [e["type"] for e in self.instance(key)["events"]]

    def inbound(self, from_: str, body: str, token: str = AUTH_TOKEN) -> int:
        """An SMS to the clinic, posted and signed as Twilio does."""
        url = f"{self.base}/channels/twilio/{self.org}/inbound"
        params = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": ACCOUNT_SID,
            "From": from_,
            "To": FROM,
            "Body": body,
            "NumMedia": "0",
        }
        signature = RequestValidator(token).compute_signature(url, params)
        return self.http.post(url, data=params, headers={"X-Twilio-Signature": signature}).status_code


@contextmanager
def serving(db: str, cwd: Path, world: Outside, org: str, token: str, journey: str) -> Iterator[Served]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = base_env(
        JOURNEYS_LOG_LEVEL="DEBUG",
        JOURNEYS_TWILIO_API_BASE=world.fake.url,
        JOURNEYS_PUBLIC_BASE_URL=base,
        JOURNEYS_OUTBOUND_ALLOW="127.0.0.1/32",
        JOURNEYS_WORKER_POLL_INTERVAL="0.2",
    )
    log_path = cwd / "server.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [*JOURNEYS, "--db", db, "serve", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(timeout=30) as http:
            api = f"{base}/chatbotapi/external/orgs/{org}/journeys/{journey}/instances"
            served = Served(proc, base, log_path, http, org, {"Authorization": f"Bearer {token}"}, api)
            served.wait_for("the server answers /healthz", lambda: _healthy(http, base))
            yield served
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# ---------------------------------------------------------------- the test
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_debug_level_server_logs_no_patient_data_and_no_secret(
    db_url: str, tmp_path: Path, outside: Outside
) -> None:
    org, token, journey, printed = set_up(db_url, tmp_path, outside)
    with serving(db_url, tmp_path, outside, org, token, journey) as srv:
        # Event webhooks: credentials in one URL; the other endpoint fails every delivery.
        creds_url = (
            outside.hook.base.replace("http://", f"http://{HOOK_USER}:{HOOK_PASSWORD}@") + "/hooks?k=v"
        )
        for url in (creds_url, outside.broken_hook.base + "/hooks"):
            body = {"url": url, "secret": HOOK_SECRET, "eventTypes": ["*"]}
            r = srv.http.post(f"{srv.base}/api/orgs/{org}/webhooks", json=body, headers=srv.headers)
            assert r.status_code == 201, r.text
            assert HOOK_PASSWORD not in r.text and HOOK_USER not in r.text
        # Two patients (the first SMS is refused by Twilio for good: an error path that logs),
        # and a trigger rejected for a bad value.
        outside.fake.reject_next(1, status=400, code=21211)
        assert srv.bulk(ANN, BEA) == 204
        assert srv.bulk({**ANN, **REFUSED, "key": "APPT-QX-99999", "visitAt": "2020-13-45 99:00"}) == 400
        for key in (ANN["key"], BEA["key"]):
            srv.wait_for(f"{key} waits for a reply", lambda k=key: "waiting_for_reply" in srv.events(k))
        # Inbound SMS: the reply, an unmatched one, STOP, a forged one.
        assert srv.inbound("+13125550187", REPLY) == 200
        assert srv.inbound(*UNMATCHED) == 200
        assert srv.inbound("+13125550166", "STOP") == 200
        assert srv.inbound("+13125550178", "Marguerite Oxenford here", token="forged") == 403
        srv.wait_for(
            "the reply completes Ann's journey", lambda: srv.instance(ANN["key"])["status"] == "Completed"
        )
        srv.wait_for("Bea is opted out", lambda: "opted_out" in srv.events(BEA["key"]))
        ann = srv.instance(ANN["key"])["parameters"]
        assert ann["ehrStatus"] == EHR_ANSWER and ann["lastReply"] == REPLY and ann["note"].startswith(NOTE)
        # Everything went out through the real channels.
        fake = outside.fake
        sms = [r.form.get("Body", "") for r in fake.requests if r.path == fake.messages_path]
        assert any("Thanks Zebulon Quixwright" in b for b in sms), sms
        srv.wait_for("both emails reach the SMTP server", lambda: len(outside.mailbox.raw) == 2)
        [ehr_call, *_] = outside.ehr.posts()
        assert "name=Zebulon" in ehr_call["path"] and "555-0187" in ehr_call["path"]
        hook = outside.hook
        srv.wait_for(
            "opted_out reaches the webhook", lambda: any(b"opted_out" in p["raw"] for p in hook.posts())
        )
        assert all(p["headers"]["Authorization"].startswith("Basic ") for p in hook.posts())
        assert outside.broken_hook.posts(), "the failing endpoint was tried"
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=20) == 0, srv.logs()
        text = srv.logs()

    # The capture is real and at DEBUG: the worker's batch lines are there; httpx's are not.
    assert "DEBUG journeys.worker: batch" in text, text
    assert "Uvicorn running on" in text and "worker stopped" in text
    assert "HTTP Request:" not in text
    # an error path ran
    assert "WARNING journeys.messaging.providers.twilio: twilio: HTTP 400 (code 21211)" in text
    for value in [*PHI, *SECRETS, token]:
        assert value not in text, f"{value!r} is in the server's log:\n{text}"
    for output in printed:
        for value in [*SECRETS, token]:
            assert value not in output


def _healthy(http: httpx.Client, base: str) -> bool:
    try:
        return http.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# ---------------------------------------------------------------- the guard's parts
@pytest.mark.same_on_every_database
def test_scrub_cuts_urls_to_their_origin() -> None:
    line = (
        "POST https://user:pa55@ehr.example:8443/patients/APPT-1?name=Zebulon%20Q&phone=312 "
        "then http://[::1]:9/x#frag, postgresql://postgres:pw@db:5432/journeys and http://h/"
    )
    assert scrub(line) == (
        "POST https://***@ehr.example:8443/*** then http://[::1]:9/*** "
        "postgresql://***@db:5432/*** and http://h"
    )
    assert scrub("no url here: Zebulon") == "no url here: Zebulon"


@pytest.mark.same_on_every_database
def test_the_filter_scrubs_messages_and_withholds_exception_messages() -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler.addFilter(ScrubFilter())
    logger = logging.getLogger("test_phi_logs.guard")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("calling %s", "https://u:p@ehr.example/x?name=Zebulon")
        try:
            try:
                raise ValueError(f"{ANN['patientName']} {ANN['phone']}")  # (the source line is shown)
            except ValueError as exc:
                raise RuntimeError(f"for https://ehr.example/?phone={ANN['phone']}") from exc
        except RuntimeError:
            logger.exception("step failed")
    finally:
        logger.removeHandler(handler)
    assert records[0] == "test_phi_logs.guard: calling https://***@ehr.example/***"
    assert "step failed" in records[1] and "Traceback" in records[1]
    assert "ValueError (message withheld" in records[1] and "RuntimeError (message withheld" in records[1]
    for value in ("Zebulon", "Quixwright", "555-0187", "u:p"):
        assert value not in "\n".join(records)
