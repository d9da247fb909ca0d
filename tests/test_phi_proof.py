"""The proof of issue 14: distinctive patient data stored through every path — a bulk trigger, a
subflow, a reply (saved to a parameter), an http_request result (saved), an email, a STOP and a
staff opt-out with a note, webhooks — appears nowhere in the raw database (the SQLite file with
its WAL; a `pg_dump` of the PostgreSQL database) nor in any log line, while search by equals, in
and startsWith still finds it. Then an erasure and a purge leave nothing of those patients:
neither their sealed values nor the blind indexes that stood for them."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.api import bulk
from support.cli import JOURNEYS, clean_env
from support.databases import on_postgresql, own_database
from support.keys import strong_key
from support.net import LocalHttpServer
from support.receivers import WebhookReceiver
from support.server import START, Server, Tenant

from journeys.keys.phi import OrgPhi

KEY = strong_key("the proof")
NAME, NEW_NAME = "Zebulon Quixote-Marchetti", "Ysolde Vantongeren"
PHONE, PHONE_DIGITS = "+13125550199", "3125550199"
EMAIL = "zebulon.quixote@example.org"
REPLY = "Quetzalcoatl confirms"
EHR_NOTE = "Fibonacci-Wallaby allergy"
STAFF_NOTE = "Mr Quixote-Marchetti asked at the desk"
OTHER_NAME, OTHER_PHONE = "Hieronymus Bosch-Pelletier", "+13125550177"
HOOK_SECRET = "hook-secret-0123456789abcdef"
DISTINCT = [NAME, NEW_NAME, "Zebulon", "Ysolde", "Quixote", "Vantongeren", PHONE_DIGITS, "555-0199", EMAIL,
            "zebulon.quixote", REPLY, "Quetzalcoatl", EHR_NOTE, "Fibonacci", STAFF_NOTE, OTHER_NAME,
            "Hieronymus", "5550177"]  # fmt: skip

DEFINITION = """
name: Proof
parameters:
  - {name: patientId, identifier: true}
  - {name: patientName, search: prefix}
  - {name: phoneNumber, type: phone}
  - {name: email, type: email, required: false}
  - {name: answer, required: false}
  - {name: ehrNote, required: false}
frequency_cap: null
send_window: null
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: send_sms, to: phoneNumber, body: "Hi {{ patientName }}, reply C"}
      - {id: 15, type: send_email, to: email, subject: "For {{ patientName }}", body: "Dear {{patientName}}"}
      - id: 20
        type: wait_for_reply
        to: phoneNumber
        timeout: 2d
        save_reply_to: answer
        replies:
          - {outcome: confirmed, next: 30}
        on_other: 30
        on_timeout: 30
      - {id: 30, type: http_request, url: "EHR/notes/{{ patientId }}", save: {ehrNote: data.note},
         on_failure: 40}
      - {id: 40, type: end}
  - id: changed
    name: Changed
    steps:
      - {id: 100, type: send_sms, to: phoneNumber, body: "{{ patientName }}: your details changed"}
      - {id: 110, type: wait, duration: 1d}
      - {id: 120, type: end}
"""


class Ehr:
    """Answers every request with the patient's note."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                data = json.dumps({"data": {"note": EHR_NOTE}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = LocalHttpServer(Handler)


class Captured(logging.Handler):
    """Every log record of the process, formatted with its arguments."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture()
def logs() -> Iterator[Captured]:
    handler = Captured()
    root = logging.getLogger()
    names = ("", "journeys", "httpx", "httpcore", "uvicorn")
    levels = {name: logging.getLogger(name).level for name in names}
    root.addHandler(handler)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def raw_database(url: str, tmp_path: Path) -> bytes:
    """The database as someone holding its files (or a dump) would read it."""
    if not on_postgresql():
        path = Path(sa.engine.make_url(url).database or "")
        files = (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
        return b"".join(p.read_bytes() for p in files if p.exists())
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pg_dump is needed for the proof on PostgreSQL")
        pytest.skip("pg_dump is not installed")
    u = sa.engine.make_url(url)
    proc = subprocess.run(
        [pg_dump, "-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres",
         "--no-owner", u.database or ""], capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def found_in(blob: bytes, values: list[str]) -> list[str]:
    return [v for v in values if v.encode() in blob or v.lower().encode() in blob]


def search(srv: Server, t: Tenant, operator: str, operand: Any, name: str = "patientName") -> list[str]:
    spec = {"type": "JourneyParameterSpecification", "parameterName": name, "operator": operator,
            "rightOperand": operand}  # fmt: skip
    r = srv.http.post(t.url("/search"), json={"filterSpecification": spec}, headers=t.headers)
    assert r.status_code == 200, r.text
    return sorted(i["id"] for i in r.json())


def stored_traces(srv: Server, phi: OrgPhi, instance_ids: list[str], values: dict[str, str]) -> list[str]:
    """What stood for the patients in the database: their instances' sealed parameters and
    state, and the blind indexes of their values (and of the prefixes of their names)."""
    traces = [phi.blind(name.lower(), v) for name, v in values.items()]
    traces += [phi.blind(f"patientname~{k}", values["patientName"][:k]) for k in range(1, 13)]
    with srv.engine.connect() as conn:
        for instance_id in instance_ids:
            q = "SELECT parameters, state FROM journey_instances WHERE org_id = :o AND instance_id = :i"
            row = conn.execute(sa.text(q), {"o": phi.org_id, "i": instance_id}).one()
            traces += [v for v in row if v and v.startswith("~")]
    return traces


def reply(srv: Server, t: Tenant, phone: str, text: str) -> Any:
    body = {"from": phone, "body": text}
    return srv.http.post(f"/api/orgs/{t.org_id}/replies", json=body, headers=t.headers)


def proven(srv: Server, t: Tenant, ehr: Ehr, rec: WebhookReceiver) -> tuple[str, str]:
    """Patient data through every path; the ids of the patient's and the other patient's instances."""
    hook = {"url": rec.url, "secret": HOOK_SECRET, "eventTypes": ["*"]}
    assert srv.http.post(f"/api/orgs/{t.org_id}/webhooks", json=hook, headers=t.headers).status_code == 201
    people = [
        {"patientId": "P-1", "patientName": NAME, "phoneNumber": PHONE, "email": EMAIL},
        {"patientId": "P-2", "patientName": OTHER_NAME, "phoneNumber": OTHER_PHONE},
    ]
    bulk(srv.http, t, [{"parameters": p} for p in people])
    srv.run_worker()  # the texts and the email; waiting for replies
    for phone, text in ((PHONE, REPLY), (OTHER_PHONE, "C")):
        r = reply(srv, t, phone, text)
        assert r.status_code == 200 and r.json()["matched"], r.text
    srv.run_worker()  # the answers saved, the EHR called, its note saved: both ended
    bulk(srv.http, t, [{"parameters": {"patientId": "P-1", "patientName": NEW_NAME, "phoneNumber": PHONE,
                                       "email": EMAIL}}])  # fmt: skip
    srv.run_worker()  # a new instance (the first ended), its text
    bulk(srv.http, t, [{"parameters": {"patientId": "P-1", "patientName": NEW_NAME}}], flowId="changed")
    srv.run_worker()  # the subflow's text
    r = reply(srv, t, PHONE, "STOP")
    assert r.status_code == 200, r.text
    r = srv.http.post(f"/api/orgs/{t.org_id}/opt-outs", json={"phone": OTHER_PHONE, "reason": STAFF_NOTE},
                      headers=t.headers)  # fmt: skip
    assert r.status_code == 201, r.text
    srv.run_worker()
    assert rec.ok_events(), "the webhooks were delivered"
    renamed = search(srv, t, "equals", NEW_NAME)
    [first] = [i for i in search(srv, t, "equals", "P-1", "patientId") if i not in renamed]
    [other] = search(srv, t, "equals", "P-2", "patientId")
    return first, other


def test_patient_data_is_nowhere_in_the_database_or_the_logs(tmp_path: Path, logs: Captured) -> None:
    ehr, rec = Ehr(), WebhookReceiver(HOOK_SECRET)
    with own_database(tmp_path) as url:
        srv = Server(url, secret_key=KEY)
        try:
            definition = DEFINITION.replace("EHR", ehr.server.base_url)
            t = srv.tenant(definition)
            first, other = proven(srv, t, ehr, rec)
            phi = srv.worker.vault.org(t.org_id)
            inst = srv.http.get(t.url(f"/{first}"), headers=t.headers).json()
            assert inst["parameters"]["answer"] == REPLY and inst["parameters"]["ehrNote"] == EHR_NOTE

            # searches find them: equals, in, startsWith
            [current] = search(srv, t, "equals", NEW_NAME)
            assert search(srv, t, "in", [NEW_NAME, "nobody"]) == [current]
            assert search(srv, t, "startsWith", "Ysol") == [current]
            assert search(srv, t, "equals", REPLY, "answer") == [first]
            assert search(srv, t, "equals", EHR_NOTE, "ehrNote") == sorted([first, other])

            blob = raw_database(url, tmp_path)
            assert found_in(blob, DISTINCT) == [], "patient data stored plain"
            assert found_in("\n".join(logs.lines).encode(), DISTINCT) == [], "patient data in a log line"
            assert found_in(json.dumps(rec.ok_events()).encode(), DISTINCT) == [], "patient data in a webhook"

            # erase the patient, purge the other's ended instance: nothing of them is left
            patient = {"patientId": "P-1", "patientName": NEW_NAME, "phoneNumber": PHONE, "email": EMAIL}
            ids = search(srv, t, "equals", "P-1", "patientId")
            traces = stored_traces(srv, phi, ids, patient)
            traces += stored_traces(srv, phi, [first], {"patientName": NAME, "answer": REPLY})
            other_traces = stored_traces(srv, phi, [other], {"patientId": "P-2", "patientName": OTHER_NAME})
            assert found_in(raw_database(url, tmp_path), traces[:3]) == traces[:3]  # the check can see them
        finally:
            srv.stop()
        env = {"JOURNEYS_SECRET_KEY": KEY}
        args = [*JOURNEYS, "--db", url, "erase", "--org", t.org_id, "--param", "patientId=P-1"]
        erase = subprocess.run(args, env=clean_env(**env), capture_output=True, text=True, timeout=120)
        assert erase.returncode == 0, erase.stderr
        later = START + timedelta(days=400)
        offset = f"{(later - datetime.now(UTC)).total_seconds():.3f}"
        purge = subprocess.run([*JOURNEYS, "--db", url, "purge", "--org", t.org_id],
                               env=clean_env(JOURNEYS_CLOCK_OFFSET_SECONDS=offset, **env),
                               capture_output=True, text=True, timeout=120)  # fmt: skip
        assert purge.returncode == 0, purge.stderr
        blob = raw_database(url, tmp_path)
        assert found_in(blob, traces) == [], "an erased patient's sealed values or blind indexes are left"
        assert found_in(blob, other_traces) == [], "a purged instance's sealed values or blind indexes left"
    ehr.server.stop()
    rec.stop()
