"""`journeys encrypt-existing` (issue 14): a deployment that ran without JOURNEYS_SECRET_KEY sets
one and encrypts what it stored before, in place and in batches. Afterwards the raw rows hold
none of the patients' values, and everything still works with the key: search (equals and
prefix), subflows by identifier, replies to a waiting instance, opt-outs, message texts."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.api import bulk
from support.cli import JOURNEYS, clean_env
from support.databases import own_database
from support.keys import strong_key
from support.server import Server, Tenant

from journeys.lifecycle import encrypt as existing

KEY = strong_key("encrypt existing")
NAME = "Zebulon Quixote-Marchetti"
OTHER = "Abigail Fairweather"
PHONE, OTHER_PHONE, STOPPED = "+13125550199", "+13125550177", "+13125550155"
REPLY = "Quetzalcoatl says maybe"
NOTE = "asked at the desk, Mrs Fairweather"
VALUES = [NAME, OTHER, "5550199", "5550177", "5550155", REPLY, NOTE, "Quetzalcoatl"]
DEFINITION = """
name: Plain Reminder
parameters:
  - {name: appointmentId, identifier: true}
  - {name: patientName, search: prefix}
  - {name: phoneNumber, type: phone}
  - {name: answer, required: false}
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: send_sms, to: phoneNumber, frequency_cap: false, body: "Hi {{ patientName }}: reply C"}
      - id: 20
        type: wait_for_reply
        to: phoneNumber
        timeout: 2d
        save_reply_to: answer
        replies:
          - {outcome: confirmed, next: 30}
        on_other: 40
        on_timeout: 40
      - {id: 30, type: end, outcome: confirmed}
      - {id: 40, type: wait, duration: 1d}
      - {id: 50, type: end, outcome: other}
  - id: changed
    name: Changed
    steps:
      - {id: 100, type: wait, duration: 1d}
      - {id: 110, type: end}
"""


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[str]:
    with own_database(tmp_path) as url:
        yield url


def journeys(db: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOURNEYS, "--db", db, *args], env=clean_env(**env), capture_output=True, text=True, timeout=120
    )


def stored_plain(db: str) -> Tenant:
    """An org whose patient data was stored without a key: two instances (one answered, its
    reply saved to a parameter), their texts, an unmatched inbound message, an opt-out."""
    srv = Server(db)
    try:
        t = srv.tenant(DEFINITION)
        people = [("P-1", NAME, PHONE), ("P-2", OTHER, OTHER_PHONE)]
        bulk(srv.http, t, [{"parameters": {"appointmentId": a, "patientName": n, "phoneNumber": p}}
                           for a, n, p in people])  # fmt: skip
        srv.run_worker()
        for sender, text in ((OTHER_PHONE, REPLY), ("+13125550166", "wrong number, Quetzalcoatl")):
            r = srv.http.post(f"/api/orgs/{t.org_id}/replies", json={"from": sender, "body": text},
                              headers=t.headers)  # fmt: skip
            assert r.status_code == 200, r.text
        r = srv.http.post(f"/api/orgs/{t.org_id}/opt-outs", json={"phone": STOPPED, "reason": NOTE},
                          headers=t.headers)  # fmt: skip
        assert r.status_code == 201, r.text
        srv.run_worker()
        assert NAME in raw(srv.engine, t.org_id)  # stored plain, as before this issue
    finally:
        srv.stop()
    return t


def raw(engine: sa.Engine, org_id: str) -> str:
    """Every stored column of the org's patient data, as text."""
    tables = ["journey_instances", "instance_parameters", "outbox", "inbound_messages", "sms_consent"]
    with engine.connect() as conn:
        rows = [r for t in tables for r in conn.execute(sa.text(f"SELECT * FROM {t} WHERE org_id = :o"),
                                                        {"o": org_id})]  # fmt: skip
    return "\n".join(repr(tuple(r)) for r in rows)


def search(srv: Server, t: Tenant, name: str, operator: str, operand: str) -> list[str]:
    spec = {"type": "JourneyParameterSpecification", "parameterName": name, "operator": operator,
            "rightOperand": operand}  # fmt: skip
    r = srv.http.post(t.url("/search"), json={"filterSpecification": spec, "includeParameters": True},
                      headers=t.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    return sorted(i["parameters"]["appointmentId"] for i in r.json())


def test_encrypting_existing_data_in_place(db: str) -> None:
    t = stored_plain(db)
    proc = journeys(db, "encrypt-existing", "--batch-size", "1", "--json", JOURNEYS_SECRET_KEY=KEY)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    [report] = [o for o in out["orgs"] if o["org"] == t.org_id]
    assert report["sealed"] == {"instances": 2, "messages": 2, "replies": 2, "opt-outs": 1}
    assert out["done"] is True and not any(report["remaining"].values())
    assert f"org {t.org_id}: instances 1 of 2 sealed" in proc.stderr  # progress, batch by batch
    assert not any(v in proc.stderr + proc.stdout for v in VALUES)

    srv = Server(db, secret_key=KEY)
    try:
        stored = raw(srv.engine, t.org_id)
        assert not [v for v in VALUES if v in stored], "a value is still stored plain"
        assert search(srv, t, "patientName", "equals", NAME) == ["P-1"]
        assert search(srv, t, "patientName", "startsWith", "Abig") == ["P-2"]
        assert search(srv, t, "answer", "equals", REPLY) == ["P-2"]
        # P-1 still waits for its reply: found by the blind index of its number
        r = srv.http.post(f"/api/orgs/{t.org_id}/replies", json={"from": PHONE, "body": "C"},
                          headers=t.headers)  # fmt: skip
        assert r.status_code == 200 and r.json()["matched"] is True, r.text
        # a subflow finds P-2 by its identifier (and its changed name is searchable); starting
        # P-2 again is refused: its active instance is found by the same key
        changed = {"appointmentId": "P-2", "patientName": "Ursula"}
        bulk(srv.http, t, [{"parameters": changed}], flowId="changed")
        assert search(srv, t, "patientName", "startsWith", "Urs") == ["P-2"]
        params = {"appointmentId": "P-2", "patientName": OTHER, "phoneNumber": PHONE}
        main = {"flowId": None, "timeZone": "America/Chicago", "instances": [{"parameters": params}]}
        again = srv.http.post(t.url("/bulk"), json=main, headers=t.headers)
        assert again.status_code == 400 and "an active instance already exists" in again.text
        listed = srv.http.get(f"/api/orgs/{t.org_id}/opt-outs", headers=t.headers).json()
        assert [(o["phone"], o["reason"]) for o in listed] == [(STOPPED, NOTE)]
        texts = journeys(db, "messages", "--org", t.org_id, "--json", JOURNEYS_SECRET_KEY=KEY)
        assert texts.returncode == 0, texts.stderr
        shown = {(m["to"], m["body"]) for m in json.loads(texts.stdout)}
        assert (PHONE, f"Hi {NAME}: reply C") in shown
        replies = srv.http.get(f"/api/orgs/{t.org_id}/replies", headers=t.headers).json()
        assert (OTHER_PHONE, REPLY) in {(r["from"], r["body"]) for r in replies}
    finally:
        srv.stop()

    again = journeys(db, "encrypt-existing", "--org", t.org_id, "--json", JOURNEYS_SECRET_KEY=KEY)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["orgs"][0]["sealed"] == dict.fromkeys(existing.KINDS, 0)
    keyless = journeys(db, "messages", "--org", t.org_id)
    assert keyless.returncode == 1 and "is stored encrypted" in keyless.stderr


def test_a_stopped_run_goes_on_where_it_was(db: str) -> None:
    t = stored_plain(db)
    srv = Server(db, secret_key=KEY)  # a server with the key runs meanwhile
    try:
        phi = srv.worker.vault.org(t.org_id)
        with srv.engine.begin() as conn:  # the first batch of a run that was then stopped
            first = existing.encrypt_batch(conn, phi, "instances", "", 1)
        assert (first.read, first.sealed) == (1, 1)
        with srv.engine.connect() as conn:
            assert existing.remaining(conn, t.org_id)["instances"] == 1
        proc = journeys(db, "encrypt-existing", "--org", t.org_id, "--json", JOURNEYS_SECRET_KEY=KEY)
        assert proc.returncode == 0, proc.stderr
        [report] = json.loads(proc.stdout)["orgs"]
        assert report["sealed"]["instances"] == 1 and report["remaining"]["instances"] == 0
        assert search(srv, t, "patientName", "equals", OTHER) == ["P-2"]
        assert search(srv, t, "patientName", "equals", NAME) == ["P-1"]
    finally:
        srv.stop()


def test_bad_runs_are_refused_clearly_and_change_nothing(db: str) -> None:
    t = stored_plain(db)
    key = {"JOURNEYS_SECRET_KEY": KEY}
    cases: list[tuple[list[str], dict[str, Any], int, str]] = [
        (["encrypt-existing"], {}, 1, "JOURNEYS_SECRET_KEY is not set"),
        (["encrypt-existing", "--org", "no-such-org"], key, 1, "unknown org no-such-org"),
        (["encrypt-existing", "--batch-size", "0"], key, 2, "--batch-size"),
        (["encrypt-existing"], {"JOURNEYS_SECRET_KEY": "too-short"}, 1, "JOURNEYS_SECRET_KEY"),
    ]
    for args, env, code, message in cases:
        proc = journeys(db, *args, **env)
        assert proc.returncode == code and message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    srv = Server(db)
    try:
        assert NAME in raw(srv.engine, t.org_id)  # still plain: nothing was changed
    finally:
        srv.stop()
