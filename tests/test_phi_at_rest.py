"""Patient data at rest (issue 14): with JOURNEYS_SECRET_KEY set, an instance's parameters, its
interpreter state (reply texts, http results) and the numbers it waits on are stored sealed with
the org's key or as blind indexes — the raw rows hold none of the values — and search, subflows
and reply matching still find them. Conditions blind indexes cannot answer get a clear 400."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from support.api import bulk
from support.cli import JOURNEYS, clean_env
from support.keys import strong_key
from support.server import Server, Tenant

from journeys.definitions import DefinitionError, load_definition_text

NAME = "Zebulon Quixote-Marchetti"
NEW_NAME = "Abigail Fairweather"
PHONE = "+1 312 555 0199"
REPLY = "Quetzalcoatl says maybe"
DEFINITION = """
name: Sealed Reminder
parameters:
  - {name: appointmentId, identifier: true}
  - {name: patientName, search: prefix}
  - {name: phoneNumber, type: phone}
  - {name: answer, required: false}
  - {name: visitAt, type: datetime, required: false, search: prefix}
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
      - {id: 40, type: end, outcome: other}
  - id: changed
    name: Changed
    steps:
      - {id: 100, type: wait, duration: 1d}
      - {id: 110, type: end}
"""


@pytest.fixture(scope="module")
def sealed(database_url: str) -> Iterator[Server]:
    srv = Server(database_url, secret_key=strong_key("phi at rest"))
    yield srv
    srv.stop()


@pytest.fixture()
def t(sealed: Server) -> Tenant:
    return sealed.tenant(DEFINITION)


def start(srv: Server, t: Tenant, appointment: str, name: str = NAME, phone: str = PHONE) -> None:
    params = {"appointmentId": appointment, "patientName": name, "phoneNumber": phone}
    bulk(srv.http, t, [{"parameters": params}])


def search(srv: Server, t: Tenant, spec: dict[str, Any], **extra: Any) -> httpx.Response:
    body = {"filterSpecification": spec, "includeParameters": True, **extra}
    return srv.http.post(t.url("/search"), json=body, headers=t.headers)


def found(srv: Server, t: Tenant, name: str, operator: str, operand: Any) -> list[str]:
    spec = {"type": "JourneyParameterSpecification", "parameterName": name, "operator": operator,
            "rightOperand": operand}  # fmt: skip
    r = search(srv, t, spec)
    assert r.status_code == 200, r.text
    return sorted(i["parameters"]["appointmentId"] for i in r.json())


def raw_rows(srv: Server, org_id: str) -> str:
    """Every stored column of the org's instances and searchable parameters, as text."""
    with srv.engine.connect() as conn:
        rows = [
            *conn.execute(sa.text("SELECT * FROM journey_instances WHERE org_id = :o"), {"o": org_id}),
            *conn.execute(sa.text("SELECT * FROM instance_parameters WHERE org_id = :o"), {"o": org_id}),
        ]
    assert rows
    return "\n".join(repr(tuple(r)) for r in rows)


def test_parameters_are_stored_sealed_and_found_by_search(sealed: Server, t: Tenant) -> None:
    start(sealed, t, "A-1")
    start(sealed, t, "A-2", name="Zed Other", phone="+1 312 555 0123")
    stored = raw_rows(sealed, t.org_id)
    for value in (NAME, "Zebulon", "Quixote", "5550199", "555 0199", "A-1"):
        assert value not in stored
    assert found(sealed, t, "patientName", "equals", NAME) == ["A-1"]
    assert found(sealed, t, "PATIENTNAME", "in", [NAME, "Zed Other", "Nobody"]) == ["A-1", "A-2"]
    assert found(sealed, t, "patientName", "notEquals", NAME) == ["A-2"]
    assert found(sealed, t, "patientName", "startsWith", "Ze") == ["A-1", "A-2"]
    assert found(sealed, t, "patientName", "startsWith", "Zebulon Quix") == ["A-1"]  # 12 characters
    assert found(sealed, t, "patientName", "startsWith", "z") == []  # case-sensitive, as unencrypted
    assert found(sealed, t, "appointmentId", "equals", "A-2") == ["A-2"]
    visit = {"appointmentId": "A-3", "patientName": "Vera", "phoneNumber": PHONE}
    bulk(sealed.http, t, [{"parameters": {**visit, "visitAt": "2026-12-01 08:30"}}])
    for day in ("2026", "2026-12", "2026-12-01", "2026-12-01 08", "2026-12-01 08:30"):
        assert found(sealed, t, "visitAt", "startsWith", day) == ["A-3"]
    assert found(sealed, t, "visitAt", "startsWith", "2026-12-02") == []
    r = search(sealed, t, {"type": "JourneyParameterSpecification", "parameterName": "appointmentId",
                           "operator": "equals", "rightOperand": "A-1"})  # fmt: skip
    (one,) = r.json()
    assert one["parameters"] == {"appointmentId": "A-1", "patientName": NAME, "phoneNumber": PHONE}
    detail = sealed.http.get(t.url(f"/{one['id']}"), headers=t.headers).json()
    assert detail["parameters"]["patientName"] == NAME


@pytest.mark.parametrize(
    ("name", "operator", "operand", "problem"),
    [
        ("patientName", "contains", "bulon", "'contains' cannot search it"),
        ("appointmentId", "startsWith", "A-", "not marked 'search: prefix'"),
        ("patientName", "startsWith", "Zebulon Quixo", "takes 1 to 12 characters"),
        ("patientName", "startsWith", "", "takes 1 to 12 characters"),
        ("visitAt", "startsWith", "2026-12-0", "takes a year, month, day, hour or minute"),
    ],
)
def test_conditions_blind_indexes_cannot_answer_are_refused(
    sealed: Server, t: Tenant, name: str, operator: str, operand: str, problem: str
) -> None:
    start(sealed, t, "R-1")
    spec = {"type": "NotSpecification", "specification": {"type": "JourneyParameterSpecification",
            "parameterName": name, "operator": operator, "rightOperand": operand}}  # fmt: skip
    r = search(sealed, t, spec)
    assert r.status_code == 400, r.text
    (message,) = r.json()
    assert problem in message and repr(name) in message and "encrypted" in message
    assert repr(operand) not in message or not operand  # the operand is not quoted back
    cancel = sealed.http.post(
        f"/api/orgs/{t.org_id}/journeys/{t.journey_id}/instances/cancel",
        json={"filterSpecification": spec}, headers=t.headers,
    )  # fmt: skip
    assert cancel.status_code == 400 and cancel.json() == [message]
    assert found(sealed, t, "appointmentId", "equals", "R-1") == ["R-1"]  # nothing was cancelled


def test_a_subflow_finds_its_instance_and_the_changed_value_is_searchable(sealed: Server, t: Tenant) -> None:
    start(sealed, t, "S-1")
    body = {"flowId": "changed", "timeZone": "America/Chicago",
            "instances": [{"parameters": {"appointmentId": "S-1", "patientName": NEW_NAME}}]}  # fmt: skip
    r = sealed.http.post(t.url("/bulk"), json=body, headers=t.headers)
    assert r.status_code == 204, r.text
    assert found(sealed, t, "patientName", "startsWith", "Abi") == ["S-1"]
    assert found(sealed, t, "patientName", "startsWith", "Zeb") == []  # its old prefixes are gone
    assert found(sealed, t, "patientName", "equals", NAME) == []
    assert NEW_NAME not in raw_rows(sealed, t.org_id)
    params = {"appointmentId": "S-1", "patientName": NAME, "phoneNumber": PHONE}
    main = {"flowId": None, "timeZone": "America/Chicago", "instances": [{"parameters": params}]}
    again = sealed.http.post(t.url("/bulk"), json=main, headers=t.headers)
    assert again.status_code == 400 and "an active instance already exists" in again.text


def test_a_reply_reaches_the_waiting_instance_and_is_stored_sealed(sealed: Server, t: Tenant) -> None:
    start(sealed, t, "W-1")
    sealed.run_worker()  # the SMS, then waiting for a reply from the number
    reply = {"from": "(312) 555-0199", "body": REPLY}
    r = sealed.http.post(f"/api/orgs/{t.org_id}/replies", json=reply, headers=t.headers)
    assert r.status_code == 200 and r.json()["matched"] is True, r.text
    stored = raw_rows(sealed, t.org_id)
    with sealed.engine.connect() as conn:
        inbound = sa.text("SELECT * FROM inbound_messages WHERE org_id = :o")
        stored += repr(conn.execute(inbound, {"o": t.org_id}).all())
    assert REPLY not in stored and "Quetzalcoatl" not in stored and "5550199" not in stored
    listed = sealed.http.get(f"/api/orgs/{t.org_id}/replies", headers=t.headers).json()
    assert [(r["from"], r["body"]) for r in listed] == [("+13125550199", REPLY)]
    sealed.run_worker()
    assert found(sealed, t, "answer", "equals", REPLY) == ["W-1"]  # the saved reply, searchable
    assert "Quetzalcoatl" not in raw_rows(sealed, t.org_id)


def test_message_texts_are_stored_sealed_and_shown_to_staff(sealed: Server, t: Tenant) -> None:
    start(sealed, t, "M-1")
    sealed.run_worker()  # the SMS "Hi Zebulon …: reply C", handed to the built-in outbox
    with sealed.engine.connect() as conn:
        texts = sa.text("SELECT * FROM outbox WHERE org_id = :o")
        stored = repr(conn.execute(texts, {"o": t.org_id}).all())
    assert "Hi " not in stored and "Zebulon" not in stored and "reply C" not in stored
    assert "5550199" not in stored  # the recipient: its blind index, and sealed
    env = clean_env(JOURNEYS_SECRET_KEY=sealed.settings.secret_key or "")
    proc = subprocess.run(
        [*JOURNEYS, "--db", sealed.settings.database_url, "messages", "--org", t.org_id, "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    shown = [(m["to"], m["body"]) for m in json.loads(proc.stdout)]
    assert ("+13125550199", f"Hi {NAME}: reply C") in shown
    keyless = subprocess.run(
        [*JOURNEYS, "--db", sealed.settings.database_url, "messages", "--org", t.org_id, "--json"],
        env=clean_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert keyless.returncode == 1 and "is stored encrypted: set JOURNEYS_SECRET_KEY" in keyless.stderr


def test_stop_ends_the_wait_of_an_instance_found_by_its_blind_number(sealed: Server, t: Tenant) -> None:
    start(sealed, t, "O-1")
    sealed.run_worker()
    r = sealed.http.post(
        f"/api/orgs/{t.org_id}/replies", json={"from": PHONE, "body": "STOP"}, headers=t.headers
    )
    assert r.status_code == 200, r.text
    (inst,) = search(sealed, t, {"type": "JourneyParameterSpecification", "parameterName": "appointmentId",
                                 "operator": "equals", "rightOperand": "O-1"}).json()  # fmt: skip
    events = sealed.http.get(t.url(f"/{inst['id']}"), headers=t.headers).json()["events"]
    assert "opted_out" in [e["type"] for e in events]
    with sealed.engine.connect() as conn:
        q = sa.text("SELECT * FROM sms_consent WHERE org_id = :o")
        rows = repr(conn.execute(q, {"o": t.org_id}).all())
    assert "5550199" not in rows  # the registry keeps the number's blind index, and it sealed
    listed = sealed.http.get(f"/api/orgs/{t.org_id}/opt-outs", params={"phone": PHONE}, headers=t.headers)
    assert [o["phone"] for o in listed.json()] == ["+13125550199"], listed.text
    start(sealed, t, "O-2")  # another appointment for the same number: its SMS is skipped
    sealed.run_worker()
    (later,) = search(sealed, t, {"type": "JourneyParameterSpecification", "parameterName": "appointmentId",
                                  "operator": "equals", "rightOperand": "O-2"}).json()  # fmt: skip
    events = sealed.http.get(t.url(f"/{later['id']}"), headers=t.headers).json()["events"]
    assert "sms_skipped" in [e["type"] for e in events]
    r = sealed.http.delete(f"/api/orgs/{t.org_id}/opt-outs/{PHONE}", headers=t.headers)
    assert r.status_code == 204, r.text


CAPPED = """
name: Capped reminder
frequency_cap: {per_day: 1}
parameters:
  - {name: appointmentId, identifier: true}
  - {name: phoneNumber, type: phone}
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: send_sms, to: phoneNumber, body: "A reminder"}
      - {id: 20, type: end}
"""


def test_the_frequency_cap_counts_a_numbers_sms_by_its_blind_index(sealed: Server) -> None:
    t = sealed.tenant(CAPPED)
    for n in range(2):  # one batch each: the second finds the first in the outbox
        bulk(sealed.http, t, [{"parameters": {"appointmentId": f"C-{n}", "phoneNumber": PHONE}}])
        sealed.run_worker()
    with sealed.engine.connect() as conn:
        q = sa.text("SELECT kind FROM instance_events WHERE org_id = :o AND kind LIKE 'sms_%'")
        kinds = sorted(r[0] for r in conn.execute(q, {"o": t.org_id}))
    assert kinds == ["sms_deferred", "sms_queued"]  # the second waits for tomorrow


@pytest.mark.same_on_every_database
def test_a_parameters_search_must_be_exact_or_prefix() -> None:
    text = DEFINITION.replace("{name: patientName, search: prefix}", "{name: patientName, search: fuzzy}")
    with pytest.raises(DefinitionError) as caught:
        load_definition_text(text)
    (problem,) = caught.value.problems
    expected = "parameters[1].search: unknown value 'fuzzy' (expected one of: exact, prefix)"
    assert expected in problem.format("x")
    defn = load_definition_text(DEFINITION)
    assert [p.name for p in defn.parameters if p.prefix_searchable] == ["patientName", "visitAt"]
