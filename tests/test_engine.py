"""The interpreter and the worker: what each step does, and when."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from httpx import Client
from support.server import Server, Tenant

from journeys.definitions import load_definition_text
from journeys.definitions.model import WaitUntilStep
from journeys.definitions.values import get_zone
from journeys.engine.interpreter import Instance, InstanceState, advance, wait_until_target
from journeys.engine.worker import retry_delay

CHICAGO = get_zone("America/Chicago")

SIMPLE = """
name: Simple
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone, required: false}
  - {name: when, type: datetime, required: false}
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: send_sms, to: phone, body: "first"}
      - {id: 2, type: wait, duration: 2h}
      - {id: 3, type: send_sms, to: phone, body: "second"}
"""


def _inst(
    params: dict[str, str], step: int = 1, flow: str = "main", state: InstanceState | None = None
) -> Instance:
    return Instance("org", "inst", "j", 1, flow, step, "America/Chicago", params, state or InstanceState())


@pytest.mark.same_on_every_database
def test_send_then_wait_then_fall_off_the_end_completes() -> None:
    defn = load_definition_text(SIMPLE)
    now = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)
    fx = advance(defn, _inst({"key": "k", "phone": "+15555550100"}), now)
    assert [e.kind for e in fx.events] == ["sms_queued", "wait"]
    assert fx.status == "InProgress" and fx.step_id == 3 and fx.due_at == now + timedelta(hours=2)
    assert [m.body for m in fx.messages] == ["first"]
    assert fx.last_step_id == 2
    later = now + timedelta(hours=2)
    fx2 = advance(defn, _inst({"key": "k", "phone": "+15555550100"}, step=3, state=fx.state), later)
    assert [e.kind for e in fx2.events] == ["sms_queued", "completed"]
    assert fx2.status == "Completed" and fx2.due_at is None
    assert fx2.last_step_id == 3  # 'completed' is not a step


@pytest.mark.same_on_every_database
def test_send_without_phone_is_skipped_with_reason_and_no_phi() -> None:
    defn = load_definition_text(SIMPLE)
    fx = advance(defn, _inst({"key": "k"}), datetime(2026, 1, 1, tzinfo=UTC))
    assert fx.events[0].kind == "sms_skipped"
    assert fx.events[0].detail == {"reason": "parameter phone is empty"}
    assert fx.messages == []


def _wait_until(**kw: str) -> WaitUntilStep:
    return WaitUntilStep(type="wait_until", id=1, parameter="when", **kw)


@pytest.mark.same_on_every_database
def test_wait_until_days_before_at_local_time_across_dst_spring_forward() -> None:
    # Appointment Tue 2026-03-10 10:00 CDT; "2 days before at 09:00" is Sun 03-08 09:00 CDT,
    # the day the clocks spring forward (02:00 CST -> 03:00 CDT).
    base = datetime(2026, 3, 10, 10, 0, tzinfo=CHICAGO).astimezone(UTC)
    target = wait_until_target(base, _wait_until(before="2d", at="09:00"), CHICAGO)
    assert target.astimezone(CHICAGO).isoformat() == "2026-03-08T09:00:00-05:00"
    assert target == datetime(2026, 3, 8, 14, 0, tzinfo=UTC)
    # "24h before" is exact elapsed time: 24 hours earlier is 09:00 CST... on 03-09 it is 10:00 CDT - 24h.
    target = wait_until_target(base, _wait_until(before="24h"), CHICAGO)
    assert base - target == timedelta(hours=24)


@pytest.mark.same_on_every_database
def test_wait_until_days_before_across_dst_fall_back() -> None:
    # Appointment Mon 2026-11-02 08:00 CST; the clocks fell back on Sun 11-01 (02:00 CDT -> 01:00 CST).
    base = datetime(2026, 11, 2, 8, 0, tzinfo=CHICAGO).astimezone(UTC)
    target = wait_until_target(base, _wait_until(before="2d"), CHICAGO)
    assert target.astimezone(CHICAGO).isoformat() == "2026-10-31T08:00:00-05:00"  # CDT, same wall time
    assert base - target == timedelta(hours=49)  # a 25-hour day in between
    after = wait_until_target(base, _wait_until(after="3h"), CHICAGO)
    assert after - base == timedelta(hours=3)


PAST = """
name: Past
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
  - {name: when, type: datetime}
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: wait_until, parameter: when, before: 2d}
      - {id: 2, type: send_sms, to: phone, body: "in two days"}
      - {id: 3, type: wait_until, parameter: when, before: 1h, if_past: run_now}
      - {id: 4, type: send_sms, to: phone, body: "in an hour"}
      - {id: 5, type: end, outcome: done}
"""


@pytest.mark.same_on_every_database
def test_past_wait_until_skip_policy_skips_the_next_send_and_run_now_sends() -> None:
    defn = load_definition_text(PAST)
    now = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)
    when = (now + timedelta(minutes=30)).astimezone(CHICAGO).strftime("%Y-%m-%d %H:%M:%S")
    fx = advance(defn, _inst({"key": "k", "phone": "+15555550100", "when": when}), now)
    kinds = [(e.step_id, e.kind) for e in fx.events]
    assert kinds == [
        (1, "wait_skipped"),
        (2, "sms_skipped"),
        (3, "wait_skipped"),
        (4, "sms_queued"),
        (5, "end"),
    ]
    assert [m.body for m in fx.messages] == ["in an hour"]
    assert fx.status == "Completed"
    assert fx.state.outcome == "done"


@pytest.mark.same_on_every_database
def test_retry_delay_grows_and_is_capped() -> None:
    assert timedelta(seconds=2.5) <= retry_delay(1) <= timedelta(seconds=5)
    assert timedelta(seconds=20) <= retry_delay(4) <= timedelta(seconds=40)
    assert retry_delay(50) <= timedelta(minutes=30)


def _future_local(server: Server, days: int) -> str:
    return (server.clock.now() + timedelta(days=days)).astimezone(CHICAGO).strftime("%Y-%m-%d %H:%M:%S")


def test_worker_runs_the_example_journey_over_days(server: Server, http: Client, tenant: Tenant) -> None:
    when = _future_local(server, 3)
    body = {
        "flowId": None,
        "timeZone": "America/Chicago",
        "instances": [
            {
                "parameters": {
                    "patientId": "1",
                    "patientName": "Ann Example",
                    "appointmentId": "A-1",
                    "appointmentDateTime": when,
                    "phoneNumber": "+15555550123",
                }
            }
        ],
    }
    assert http.post(tenant.url("/bulk"), json=body, headers=tenant.headers).status_code == 204
    server.run_worker()
    [inst] = http.post(tenant.url("/search"), json={}, headers=tenant.headers).json()
    assert inst["lastStepExecuted"]["stepId"] == 20
    assert server.count("outbox", tenant.org_id) == 1
    server.clock.advance(timedelta(days=2, hours=1))  # past "24h before"
    server.run_worker()
    assert server.count("outbox", tenant.org_id) == 2
    server.clock.advance(timedelta(days=1, hours=2))  # past "2h after"
    server.run_worker()
    got = http.get(tenant.url(f"/{inst['id']}"), headers=tenant.headers).json()
    assert got["status"] == "Completed"
    assert [e["type"] for e in got["events"]] == [
        "started",
        "sms_queued",
        "wait",
        "sms_queued",
        "wait",
        "end",
    ]
    assert got["lastStepExecuted"]["stepId"] == 50
    with server.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT body, status, to_address FROM outbox WHERE org_id = :o ORDER BY created_at"),
            {"o": tenant.org_id},
        ).all()
    assert [r.status for r in rows] == ["sent", "sent"]
    assert rows[1].body.startswith("Reminder: Ann Example, your appointment is tomorrow")
    assert {r.to_address for r in rows} == {"+15555550123"}


def test_a_step_that_cannot_run_fails_the_instance_with_the_error_recorded(
    server: Server, http: Client
) -> None:
    broken = """
name: Needs a date
parameters:
  - {name: key, identifier: true}
  - {name: when, type: datetime, required: false}
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: wait_until, parameter: when, before: 1h}
"""
    t = server.tenant(broken)
    body = {"timeZone": "UTC", "instances": [{"parameters": {"key": "k"}}]}
    assert http.post(t.url("/bulk"), json=body, headers=t.headers).status_code == 204
    server.run_worker()
    [inst] = http.post(t.url("/search"), json={}, headers=t.headers).json()
    assert inst["status"] == "Failed"
    got = http.get(t.url(f"/{inst['id']}"), headers=t.headers).json()
    assert got["events"][-1]["type"] == "failed"
    assert "parameter when is empty" in got["events"][-1]["detail"]["error"]


# ---------------------------------------------------------------- the shipped example, end to end
REAL_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "appointment-reminder.yaml"


def _local(moment: datetime) -> str:
    return moment.astimezone(CHICAGO).strftime("%Y-%m-%d %H:%M:%S")


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=CHICAGO).astimezone(UTC)  # type: ignore[misc]


def _kinds(http: Client, t: Tenant, iid: str) -> list[tuple[int | None, str]]:
    r = http.get(t.url(f"/{iid}"), headers=t.headers)
    assert r.status_code == 200, r.text
    return [(e["stepId"], e["type"]) for e in r.json()["events"]]


def _sent(server: Server, org_id: str) -> list[tuple[datetime, str, str]]:
    """(created_at as aware UTC, instance id, body) of the org's outbox, oldest first."""
    with server.engine.connect() as conn:
        q = "SELECT created_at, instance_id, body FROM outbox WHERE org_id = :o ORDER BY created_at, body"
        rows = conn.execute(sa.text(q), {"o": org_id}).all()
    out = []
    for at, iid, body in rows:
        moment = at if isinstance(at, datetime) else datetime.fromisoformat(at)
        out.append((moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment, iid, body))
    return out


def test_example_a_parent_of_two_children_booked_the_same_day_gets_both_reminders(
    server: Server, http: Client
) -> None:
    """The frequency cap (1 a day) stops the second child's reminder the day before; the default
    policy defers it to 08:00 on the day, still before the appointments (10:00 and 10:30)."""
    server.clock.set(_at(2026, 11, 2, 12, 0))  # Monday noon
    t = server.tenant(REAL_EXAMPLE)
    kids = {"A-1": _at(2026, 11, 5, 10, 0), "A-2": _at(2026, 11, 5, 10, 30)}
    body = {
        "flowId": None,
        "timeZone": "America/Chicago",
        "instances": [
            {
                "parameters": {
                    "patientId": f"p-{key}",
                    "patientName": f"Kid {key}",
                    "appointmentId": key,
                    "appointmentDateTime": _local(when),
                    "phoneNumber": "+15555550123",
                }
            }
            for key, when in kids.items()
        ],
    }
    r = http.post(t.url("/bulk"), json=body, headers=t.headers)
    assert r.status_code == 204, r.text
    found = http.post(t.url("/search"), json={"includeParameters": True}, headers=t.headers).json()
    ids = [i["id"] for i in found]
    server.run_worker()  # both booking texts (transactional: neither capped nor counted)
    for moment in (_at(2026, 11, 3, 0, 30), _at(2026, 11, 4, 10, 0), _at(2026, 11, 5, 8, 0)):
        server.clock.set(moment)  # after the reply waits; the day before at 10:00; 08:00 on the day
        server.run_worker()
    sent = _sent(server, t.org_id)
    assert [(at, text[:6]) for at, _, text in sent] == [
        (_at(2026, 11, 2, 12, 0), "Hi Kid"),
        (_at(2026, 11, 2, 12, 0), "Hi Kid"),
        (_at(2026, 11, 4, 10, 0), "Remind"),
        (_at(2026, 11, 5, 8, 0), "Remind"),
    ]
    later = sent[3][1]
    assert {sent[2][1], later} == set(ids)
    deferred = [k for k in _kinds(http, t, later) if k[0] == 30]
    assert deferred == [(30, "sms_deferred"), (30, "sms_queued")]
    for iid in ids:
        assert (30, "sms_capped") not in _kinds(http, t, iid)


def test_instance_state_reads_and_writes_the_stored_json_shape() -> None:
    """The `state` column written before InstanceState existed reads back whole, and is written
    with the same keys and values (compact separators)."""
    stored = [
        "{}",
        '{"awaiting": {"step": 3, "until": "2026-11-02T16:00:00Z"}, "reply": {"text": "YES", '
        '"at": "2026-11-02T15:00:00.000Z", "messageId": "m-1"}}',
        '{"completeAfterWait":true,"skipNextSend":true,"held":4,"deferred":{"step":5,'
        '"since":"2026-11-02T16:00:00Z"},"lastReply":"yes","outcome":"done","http":{"7":{"ok":true,'
        '"status":200,"json":{"a":[1,2]},"error":null}},"httpKey":{"step":7,"key":"k-1"}}',
    ]
    for text in stored:
        state = InstanceState.from_json(text)
        assert json.loads(state.to_json()) == json.loads(text)
        assert InstanceState.from_json(state.to_json()) == state
    assert InstanceState.from_json(None) == InstanceState() and InstanceState().to_json() == "{}"
