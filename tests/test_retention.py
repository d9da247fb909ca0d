"""Retention and erasure (issue 14): ended instances past their retention (the journey's, else
the org's, else 365 days) are reduced to tombstones by the worker's sweep and by `journeys purge`;
`journeys erase` erases one patient's data on request, keeping a STOP honoured. A tombstone
keeps ids, journey, status, dates and steps; nothing of the patient is left in the database."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.api import bulk, param_equals
from support.cli import JOURNEYS, clean_env
from support.databases import own_database
from support.keys import strong_key
from support.server import START, Server, Tenant

from journeys.definitions import DefinitionError, load_definition_text

KEY = strong_key("retention")
NAME, OTHER = "Zebulon Quixote-Marchetti", "Abigail Fairweather"
PHONE, OTHER_PHONE = "+13125550199", "+13125550177"
REPLY = "Quetzalcoatl says yes"


def definition(name: str, retention: str = "") -> str:
    return f"""
name: {name}
{retention}
parameters:
  - {{name: patientId, identifier: true}}
  - {{name: patientName, search: prefix}}
  - {{name: phoneNumber, type: phone}}
  - {{name: answer, required: false}}
flows:
  - id: main
    name: Main
    steps:
      - {{id: 10, type: send_sms, to: phoneNumber, frequency_cap: false, body: "Hi {{{{ patientName }}}}"}}
      - id: 20
        type: wait_for_reply
        to: phoneNumber
        timeout: 1d
        save_reply_to: answer
        replies:
          - {{outcome: confirmed, next: 30}}
        on_other: 30
        on_timeout: 30
      - {{id: 30, type: end}}
"""


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[str]:
    with own_database(tmp_path) as url:
        yield url


def journeys(db: str, *args: str, at: datetime | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """The command line at `at` (the servers' clock is START, whatever the wall clock says)."""
    offset = ((at or START) - datetime.now(UTC)).total_seconds()
    env = {"JOURNEYS_CLOCK_OFFSET_SECONDS": f"{offset:.3f}", **env}
    return subprocess.run(
        [*JOURNEYS, "--db", db, *args], env=clean_env(**env), capture_output=True, text=True, timeout=120
    )


def ok_json(db: str, *args: str, **kw: Any) -> Any:
    proc = journeys(db, *args, "--json", **kw)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def audit_log(db: str, org_id: str) -> list[dict[str, Any]]:
    proc = journeys(db, "audit", "export", "--org", org_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def start_and_answer(srv: Server, t: Tenant, patient: str, name: str, phone: str) -> str:
    """Start the patient's instance, let it text them, answer, and let it end; its id."""
    bulk(srv.http, t, [{"parameters": {"patientId": patient, "patientName": name, "phoneNumber": phone}}])
    srv.run_worker()
    r = srv.http.post(f"/api/orgs/{t.org_id}/replies", json={"from": phone, "body": REPLY}, headers=t.headers)
    assert r.status_code == 200 and r.json()["matched"], r.text
    instance_id = str(r.json()["instanceId"])
    srv.run_worker()
    assert srv.http.get(t.url(f"/{instance_id}"), headers=t.headers).json()["status"] == "Completed"
    return instance_id


def data_of(srv: Server, org_id: str, instance_id: str) -> dict[str, list[Any]]:
    """The instance's rows in each table that holds patient data."""
    queries = {
        "instance": "SELECT parameters, state, identifier_key, waiting_reply_phone, purged_at "
        "FROM journey_instances",
        "parameters": "SELECT name, value FROM instance_parameters",
        "messages": "SELECT message_id FROM outbox",
        "replies": "SELECT message_id FROM inbound_messages",
        "details": "SELECT detail FROM instance_events",
    }
    with srv.engine.connect() as conn:
        return {
            k: [tuple(r) for r in conn.execute(sa.text(f"{q} WHERE org_id = :o AND instance_id = :i"),
                                               {"o": org_id, "i": instance_id})]
            for k, q in queries.items()
        }  # fmt: skip


def is_tombstone(data: dict[str, list[Any]]) -> bool:
    [(parameters, state, key, waiting, purged_at)] = data["instance"]
    return (
        (parameters, state, key, waiting) == ("{}", "{}", None, None)
        and purged_at is not None
        and not data["parameters"] and not data["messages"] and not data["replies"]
        and {d for (d,) in data["details"]} == {"{}"}
    )


def found(srv: Server, t: Tenant, name: str, value: str) -> list[str]:
    body = {"filterSpecification": param_equals(name, value)}
    r = srv.http.post(t.url("/search"), json=body, headers=t.headers)
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()]


def test_the_worker_reduces_ended_instances_past_their_retention_to_tombstones(db: str) -> None:
    srv = Server(db, secret_key=KEY, retention_purge=True)
    try:
        year = srv.tenant(definition("Kept a year"))
        month = Tenant(year.org_id, year.token, str(srv.publish(year.org_id, definition("Kept a month",
                       "retention_days: 30"))["id"]), year.headers)  # fmt: skip
        kept = start_and_answer(srv, year, "P-1", NAME, PHONE)
        short = start_and_answer(srv, month, "P-2", OTHER, OTHER_PHONE)
        ended = srv.clock.now()

        srv.clock.set(ended + timedelta(days=29))
        srv.run_worker()
        assert not is_tombstone(data_of(srv, year.org_id, short))  # 29 days: kept

        srv.clock.set(ended + timedelta(days=31))
        srv.run_worker()
        assert is_tombstone(data_of(srv, year.org_id, short))
        assert not is_tombstone(data_of(srv, year.org_id, kept))
        assert found(srv, year, "patientName", NAME) == [kept]
        assert found(srv, month, "patientName", OTHER) == []
        tomb = srv.http.get(month.url(f"/{short}"), headers=month.headers).json()
        assert (tomb["id"], tomb["status"], tomb["parameters"]) == (short, "Completed", {})
        assert [e["type"] for e in tomb["events"]][:2] == ["started", "sms_queued"]  # the steps stay

        srv.clock.set(ended + timedelta(days=366))
        srv.run_worker()
        assert is_tombstone(data_of(srv, year.org_id, kept))
    finally:
        srv.stop()


def test_purge_by_hand_counts_then_erases_with_the_orgs_retention(db: str) -> None:
    srv = Server(db)  # data stored plain: the purge erases it just the same
    try:
        t = srv.tenant(definition("Reminder"))
        instance_id = start_and_answer(srv, t, "P-1", NAME, PHONE)
    finally:
        srv.stop()
    assert ok_json(db, "org", "retention", "--org", t.org_id)["retentionDays"] == 365
    set_to = ok_json(db, "org", "retention", "--org", t.org_id, "--days", "10")
    assert (set_to["retentionDays"], set_to["default"], set_to["journeys"][0]["from"]) == (10, False, "org")

    later = START + timedelta(days=11)
    dry = ok_json(db, "purge", "--org", t.org_id, "--dry-run", at=later)
    assert [(j["purgeable"], j["retentionDays"]) for j in dry["journeys"]] == [(1, 10)]
    assert ok_json(db, "purge", "--org", t.org_id, "--dry-run", at=START + timedelta(days=9))["journeys"][0][
        "purgeable"] == 0  # fmt: skip
    done = ok_json(db, "purge", "--org", t.org_id, at=later)
    assert done["journeys"][0]["purged"] == 1
    assert ok_json(db, "purge", "--org", t.org_id, at=later)["journeys"][0]["purged"] == 0  # nothing left
    srv = Server(db)
    try:
        assert is_tombstone(data_of(srv, t.org_id, instance_id))
        with srv.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM journey_instances WHERE org_id = :o"), {"o": t.org_id})
            assert not [r for r in rows if NAME in repr(tuple(r)) or "5550199" in repr(tuple(r))]
    finally:
        srv.stop()
    actions = [e["action"] for e in audit_log(db, t.org_id)]
    assert "retention.purge" in actions and "org.retention" in actions
    back = ok_json(db, "org", "retention", "--org", t.org_id, "--days", "default")
    assert (back["retentionDays"], back["default"]) == (365, True)


def test_erasing_a_patient_leaves_nothing_of_them_and_keeps_their_stop(db: str) -> None:
    srv = Server(db, secret_key=KEY)
    try:
        t = srv.tenant(definition("Reminder"))
        first = start_and_answer(srv, t, "P-1", NAME, PHONE)
        for body in ("who is this? Quetzalcoatl", "STOP"):  # a text no instance waits for; opted out
            r = srv.http.post(f"/api/orgs/{t.org_id}/replies", json={"from": PHONE, "body": body},
                              headers=t.headers)  # fmt: skip
            assert r.status_code == 200 and not r.json().get("matched"), r.text
        bulk(srv.http, t, [{"parameters": {"patientId": "P-1", "patientName": NAME, "phoneNumber": PHONE}}])
        srv.run_worker()  # a second, active instance, waiting for a reply
        [waiting] = [i for i in found(srv, t, "patientId", "P-1") if i != first]
        other = start_and_answer(srv, t, "P-2", OTHER, OTHER_PHONE)

        proc = journeys(db, "erase", "--org", t.org_id, "--param", "patientId=P-1", "--json",
                        JOURNEYS_SECRET_KEY=KEY)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        erased = json.loads(proc.stdout)
        assert sorted(erased["instances"]) == sorted([first, waiting])
        assert (erased["messages"], erased["replies"], erased["optOuts"]) == (1, 3, 1)  # 2nd: not texted
        assert NAME not in proc.stdout + proc.stderr and PHONE not in proc.stdout + proc.stderr

        for instance_id in (first, waiting):
            assert is_tombstone(data_of(srv, t.org_id, instance_id))
        assert srv.http.get(t.url(f"/{waiting}"), headers=t.headers).json()["status"] == "Cancelled"
        phi = srv.worker.vault.org(t.org_id)
        with srv.engine.connect() as conn:
            q = sa.text("SELECT count(*) FROM outbox WHERE org_id = :o AND to_address = :k")
            assert conn.execute(q, {"o": t.org_id, "k": phi.phone_key(PHONE)}).scalar_one() == 0
            inbound = conn.execute(sa.text("SELECT from_address FROM inbound_messages WHERE org_id = :o"),
                                   {"o": t.org_id}).all()  # fmt: skip
            assert [phi.open(f) for (f,) in inbound] == [OTHER_PHONE]
            consent = conn.execute(sa.text("SELECT phone, number, status, reason FROM sms_consent "
                                           "WHERE org_id = :o"), {"o": t.org_id}).all()  # fmt: skip
        assert consent == [(phi.phone_key(PHONE), "", "opted_out", None)]  # the blind index only
        assert srv.http.get(f"/api/orgs/{t.org_id}/opt-outs", headers=t.headers).json() == []
        assert found(srv, t, "patientId", "P-2") == [other]
        assert not is_tombstone(data_of(srv, t.org_id, other))

        # the STOP is still honoured: a new appointment for the number sends it nothing
        bulk(srv.http, t, [{"parameters": {"patientId": "P-3", "patientName": "New", "phoneNumber": PHONE}}])
        srv.run_worker()
        [again] = found(srv, t, "patientId", "P-3")
        events = srv.http.get(t.url(f"/{again}"), headers=t.headers).json()["events"]
        assert "sms_skipped" in [e["type"] for e in events]
    finally:
        srv.stop()
    entries = audit_log(db, t.org_id)
    [entry] = [e for e in entries if e["action"] == "patient.erase"]
    assert entry["count"] == 2 and NAME not in json.dumps(entry)


def test_bad_retention_commands_are_refused_clearly(db: str) -> None:
    srv = Server(db)
    try:
        t = srv.tenant(definition("Reminder"))
    finally:
        srv.stop()
    cases = [
        (["purge", "--org", "no-such-org"], "unknown org no-such-org"),
        (["org", "retention", "--org", t.org_id, "--days", "0"], "days: must be a whole number of days"),
        (["org", "retention", "--org", t.org_id, "--days", "a week"], "days: must be a whole number of days"),
        (["org", "retention", "--org", "no-such-org", "--days", "5"], "unknown org no-such-org"),
        (["erase", "--org", t.org_id, "--param", "patientId"], "--param: must be NAME=VALUE"),
        (["erase", "--org", t.org_id, "--param", "=P-1"], "--param: must be NAME=VALUE"),
        (["erase", "--org", t.org_id, "--param", "ssn=123"], "has a parameter ssn"),
        (["erase", "--org", "no-such-org", "--param", "patientId=P-1"], "no-such-org"),
    ]
    for args, message in cases:
        proc = journeys(db, *args)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert ok_json(db, "org", "retention", "--org", t.org_id)["retentionDays"] == 365  # unchanged


@pytest.mark.same_on_every_database
def test_a_journeys_retention_must_be_whole_days() -> None:
    for bad in ("retention_days: 0", "retention_days: 40000", "retention_days: soon"):
        with pytest.raises(DefinitionError):
            load_definition_text(definition("Bad", bad))
    assert load_definition_text(definition("Good", "retention_days: 90")).retention_days == 90
