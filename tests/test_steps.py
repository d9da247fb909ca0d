"""Each step type and branch, end to end through the real server: a bulk trigger over HTTP,
`server.run_worker()`, the instance's timeline from GET …/instances/{id}, outbox rows, and
patient replies over POST /api/orgs/{orgId}/replies. Every test publishes its own small journey
in a fresh org, sets the clock itself and counts rows of its own org only."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from httpx import Client
from support.journeys import reply_journey
from support.net import LocalHttpServer
from support.server import EXAMPLE, START, Server, Tenant

import journeys.accounts.service as accounts
from journeys.definitions import DefinitionError
from journeys.messaging.outgoing import list_outgoing

CHICAGO = ZoneInfo("America/Chicago")
PHONE = "+15555550100"
OTHER_PHONE = "+15555550177"


# ---------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def _start_clock(server: Server) -> None:
    server.clock.set(START)


def local(moment: datetime) -> str:
    """A local Chicago datetime value as the API takes it."""
    return moment.astimezone(CHICAGO).strftime("%Y-%m-%d %H:%M:%S")


def z(moment: datetime) -> str:
    """The form of `until` in event details."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def chicago(*args: int) -> datetime:
    return datetime(*args, tzinfo=CHICAGO).astimezone(UTC)  # type: ignore[misc]


def search(http: Client, t: Tenant, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    r = http.post(t.url("/search"), json={"includeParameters": True, **(body or {})}, headers=t.headers)
    assert r.status_code == 200, r.text
    return r.json()


def search_equals(http: Client, t: Tenant, name: str, value: str) -> list[str]:
    spec = {
        "type": "JourneyParameterSpecification",
        "parameterName": name,
        "operator": "equals",
        "rightOperand": value,
    }
    return sorted(i["id"] for i in search(http, t, {"filterSpecification": spec}))


def start(
    http: Client,
    t: Tenant,
    *params: dict[str, str],
    flow_id: str | None = None,
    key: str = "key",
) -> list[str]:
    """Trigger `params` (each one instance); returns the instance ids in the order given."""
    body = {
        "flowId": flow_id,
        "timeZone": "America/Chicago",
        "instances": [{"parameters": p} for p in params],
    }
    r = http.post(t.url("/bulk"), json=body, headers=t.headers)
    assert r.status_code == 204, r.text
    by_key = {i["parameters"][key]: i["id"] for i in search(http, t, {"take": 1000})}
    return [by_key[p[key]] for p in params]


def get(http: Client, t: Tenant, iid: str) -> dict[str, Any]:
    r = http.get(t.url(f"/{iid}"), headers=t.headers)
    assert r.status_code == 200, r.text
    return r.json()


def events(http: Client, t: Tenant, iid: str) -> list[dict[str, Any]]:
    return get(http, t, iid)["events"]


def kinds(http: Client, t: Tenant, iid: str) -> list[tuple[int | None, str]]:
    return [(e["stepId"], e["type"]) for e in events(http, t, iid)]


def last(http: Client, t: Tenant, iid: str, kind: str) -> dict[str, Any]:
    found = [e for e in events(http, t, iid) if e["type"] == kind]
    assert found, f"no {kind} event"
    return found[-1]


def outbox(server: Server, org_id: str) -> list[Any]:
    with server.engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT message_id, instance_id, flow_id, step_id, channel, to_address, subject, body, "
                "html, status, created_at, sent_at FROM outbox WHERE org_id = :o "
                "ORDER BY created_at, message_id"
            ),
            {"o": org_id},
        ).all()


def bodies(server: Server, org_id: str) -> list[str]:
    return [r.body for r in outbox(server, org_id)]


def inbound(server: Server, org_id: str) -> list[Any]:
    with server.engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT from_address, body, instance_id, source FROM inbound_messages "
                "WHERE org_id = :o ORDER BY received_at, message_id"
            ),
            {"o": org_id},
        ).all()


def reply(http: Client, t: Tenant, from_: str, body: str) -> dict[str, Any]:
    r = http.post(f"/api/orgs/{t.org_id}/replies", json={"from": from_, "body": body}, headers=t.headers)
    assert r.status_code == 200, r.text
    return r.json()


def as_utc(value: Any) -> datetime:
    """A timestamp column as an aware UTC datetime (SQLite hands back naive UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def nothing_new_until(server: Server, http: Client, t: Tenant, iid: str, due: datetime) -> None:
    """One second before `due` the worker runs nothing for the instance."""
    before = events(http, t, iid)
    sent = server.count("outbox", t.org_id)
    server.clock.set(due - timedelta(seconds=1))
    server.run_worker()
    assert events(http, t, iid) == before
    assert server.count("outbox", t.org_id) == sent
    server.clock.set(due)
    server.run_worker()


# ---------------------------------------------------------------- send_sms / send_email
SMS = """
name: SMS
parameters:
  - {name: key, identifier: true}
  - {name: patientName}
  - {name: when, type: datetime}
  - {name: phone, type: phone, required: false}
flows:
  - id: main
    name: Main
    steps:
      - id: 10
        type: send_sms
        to: phone
        body: "Hi {{ patientName }}, see you {{ when | date('%A, %B %-d at %-I:%M %p') }} ({{ when }})."
      - {id: 20, type: end, outcome: sent}
"""


def test_send_sms_renders_the_date_filter_and_normalises_the_number(server: Server, http: Client) -> None:
    t = server.tenant(SMS)
    [iid] = start(
        http,
        t,
        {"key": "k1", "patientName": "Ann", "when": "2026-11-05 14:30:00", "phone": "(555) 555-0100"},
    )
    server.run_worker()
    assert kinds(http, t, iid) == [(None, "started"), (10, "sms_queued"), (20, "end")]
    [row] = outbox(server, t.org_id)
    assert row.channel == "sms"
    assert row.to_address == PHONE
    assert (
        row.body == "Hi Ann, see you Thursday, November 5 at 2:30 PM (Thursday, November 5, 2026 at 2:30 PM)."
    )
    assert row.subject is None and row.html is None
    assert (row.instance_id, row.flow_id, row.step_id, row.status) == (iid, "main", 10, "sent")
    assert as_utc(row.created_at) == START
    queued = last(http, t, iid, "sms_queued")
    assert queued["detail"] == {"messageId": row.message_id}
    assert (queued["flowId"], queued["flowName"]) == ("main", "Main")
    got = get(http, t, iid)
    assert got["status"] == "Completed"
    assert got["lastStepExecuted"]["stepId"] == 20


@pytest.mark.parametrize("phone", [None, ""], ids=["missing", "empty"])
def test_send_sms_to_an_empty_optional_phone_is_skipped_with_the_reason(
    server: Server, http: Client, phone: str | None
) -> None:
    t = server.tenant(SMS)
    params = {"key": "k1", "patientName": "Ann", "when": "2026-11-05 14:30:00"}
    if phone is not None:
        params["phone"] = phone
    [iid] = start(http, t, params)
    server.run_worker()
    assert kinds(http, t, iid) == [(None, "started"), (10, "sms_skipped"), (20, "end")]
    assert last(http, t, iid, "sms_skipped")["detail"] == {"reason": "parameter phone is empty"}
    assert server.count("outbox", t.org_id) == 0
    assert get(http, t, iid)["status"] == "Completed"


EMAIL = """
name: Email
parameters:
  - {name: key, identifier: true}
  - {name: patientName}
  - {name: when, type: datetime}
  - {name: email, type: email, required: false}
flows:
  - id: main
    name: Main
    steps:
      - id: 10
        type: send_email
        to: email
        subject: "Your visit on {{ when | date('%b %-d') }}"
        body: "Hi {{ patientName }}, see you {{ when | date('%A at %-I:%M %p') }}."
        html: "<p>Hi {{ patientName }},</p><p>see you {{ when | date('%A') }}.</p>"
      - {id: 20, type: end}
"""


def test_send_email_renders_subject_body_and_escaped_html(server: Server, http: Client) -> None:
    t = server.tenant(EMAIL)
    name = "Ann <b>Bold</b> & Co"
    ids = start(
        http,
        t,
        {"key": "k1", "patientName": name, "when": "2026-11-05 14:30:00", "email": "ann@example.com"},
        {"key": "k2", "patientName": "Bo", "when": "2026-11-05 14:30:00"},
    )
    server.run_worker()
    assert kinds(http, t, ids[0]) == [(None, "started"), (10, "email_queued"), (20, "end")]
    [row] = outbox(server, t.org_id)
    assert row.channel == "email"
    assert row.to_address == "ann@example.com"
    assert row.subject == "Your visit on Nov 5"
    assert row.body == f"Hi {name}, see you Thursday at 2:30 PM."  # plain text: not escaped
    assert row.html == "<p>Hi Ann &lt;b&gt;Bold&lt;/b&gt; &amp; Co,</p><p>see you Thursday.</p>"
    assert (row.instance_id, row.step_id, row.status) == (ids[0], 10, "sent")
    assert last(http, t, ids[0], "email_queued")["detail"] == {"messageId": row.message_id}
    # Without an address the email is skipped and the timeline says why.
    assert kinds(http, t, ids[1]) == [(None, "started"), (10, "email_skipped"), (20, "end")]
    assert last(http, t, ids[1], "email_skipped")["detail"] == {"reason": "parameter email is empty"}


def test_email_ignores_the_send_window_unless_the_step_asks_for_it(server: Server, http: Client) -> None:
    server.clock.set(chicago(2026, 11, 2, 22, 0))
    plain = server.tenant(EMAIL)
    held = server.tenant(
        EMAIL.replace("      - {id: 20, type: end}", "        send_window: true\n      - {id: 20, type: end}")
    )
    params = {"key": "k1", "patientName": "Ann", "when": "2026-11-05 14:30:00", "email": "ann@example.com"}
    [sent] = start(http, plain, params)
    [waits] = start(http, held, params)
    server.run_worker()
    assert kinds(http, plain, sent)[1] == (10, "email_queued")
    assert kinds(http, held, waits)[1:] == [(10, "send_held")]
    assert last(http, held, waits, "send_held")["detail"]["until"] == z(chicago(2026, 11, 3, 8, 0))
    assert server.count("outbox", held.org_id) == 0
    server.clock.set(chicago(2026, 11, 3, 8, 0))
    server.run_worker()
    assert kinds(http, held, waits)[2:] == [(10, "email_queued"), (20, "end")]


TEMPLATE_FAILS = """
name: Template fails
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
  - {name: note, required: false}
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: send_sms, to: phone, body: "Share: {{ 100 // (note | length) }}%"}
      - {id: 2, type: end}
"""


def test_a_template_that_fails_when_rendered_fails_the_step_with_a_clear_error(
    server: Server, http: Client
) -> None:
    t = server.tenant(TEMPLATE_FAILS)
    ok, bad = start(
        http, t, {"key": "k1", "phone": PHONE, "note": "abcd"}, {"key": "k2", "phone": OTHER_PHONE}
    )
    server.run_worker()
    assert kinds(http, t, ok)[1:] == [(1, "sms_queued"), (2, "end")]
    assert bodies(server, t.org_id) == ["Share: 25%"]
    inst = get(http, t, bad)
    assert inst["status"] == "Failed"
    failed = inst["events"][-1]
    assert (failed["type"], failed["stepId"]) == ("failed", 1)
    assert failed["detail"]["error"].startswith("step 1: template could not be rendered (ZeroDivisionError")
    assert OTHER_PHONE not in json.dumps(inst["events"])


BIG = "{{ 'x' * (size | int) }}"
NOWHERE = "http://127.0.0.1:9/"  # never called: the step fails before
SIZED = """
name: Sized
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
  - {name: email, type: email}
  - {name: size, type: number}
  - {name: note, required: false}
frequency_cap: null
flows:
  - id: main
    name: Main
    steps:
      - STEP
      - {id: 9, type: end}
"""
SIZED_STEPS = {
    "SMS body": f'{{id: 1, type: send_sms, to: phone, body: "{BIG}"}}',
    "email subject": f'{{id: 1, type: send_email, to: email, subject: "{BIG}", body: "b"}}',
    "email body": f'{{id: 1, type: send_email, to: email, subject: "s", body: "{BIG}"}}',
    "email html": f'{{id: 1, type: send_email, to: email, subject: "s", body: "b", html: "{BIG}"}}',
    "http_request url": f'{{id: 1, type: http_request, url: "http://127.0.0.1:9/{BIG}"}}',
    "http_request header value": f'{{id: 1, type: http_request, url: "{NOWHERE}", headers: {{X: "{BIG}"}}}}',
    "http_request body": (
        f'{{id: 1, type: http_request, method: POST, url: "{NOWHERE}", body: {{a: "{BIG}", b: ["{BIG}"]}}}}'
    ),
}
LIMITS = {
    "SMS body": 1_600,
    "email subject": 1_000,
    "email body": 100_000,
    "email html": 200_000,
    "http_request url": 8_192,
    "http_request header value": 8_192,
    "http_request body": 100_000,
}


AT_LINE_1 = "at template line 1"


@pytest.mark.parametrize("field", sorted(SIZED_STEPS))
def test_a_rendered_text_past_its_limit_fails_the_step_naming_the_limit_not_the_text(
    server: Server, http: Client, field: str
) -> None:
    """Validation cannot know the values: at run time the step fails, and rendering stops at
    the limit (it never assembles the whole text, nor builds anything past the sandbox's)."""
    t = server.tenant(SIZED.replace("STEP", SIZED_STEPS[field]))
    limit = LIMITS[field]
    # The http body's limit is for all its strings together: two of 60% each go past it.
    size = limit * 6 // 10 if field == "http_request body" else limit + 1
    base = {"phone": PHONE, "email": "ann@example.com"}
    ok, over, huge = start(
        http,
        t,
        {**base, "key": "ok", "size": "5"},
        {**base, "key": "over", "size": str(size)},
        {**base, "key": "huge", "size": "300000000"},
    )
    server.run_worker()
    assert "(the limit)" not in json.dumps(events(http, t, ok))  # (an http call to nowhere fails)
    for iid, error in [
        (over, f"step 1: the {field} renders more than {limit:,} characters (the limit)"),
        (huge, f"step 1: template builds a value larger than 1,000,000 characters (the limit) {AT_LINE_1}"),
    ]:
        inst = get(http, t, iid)
        assert inst["status"] == "Failed", inst["events"]
        failed = inst["events"][-1]
        assert (failed["type"], failed["stepId"], failed["detail"]["error"]) == ("failed", 1, error)
        assert "xxxx" not in json.dumps(inst["events"])
    assert len(outbox(server, t.org_id)) == (1 if field.startswith(("SMS", "email")) else 0)


def test_a_set_parameters_value_stops_at_the_value_limit_and_nul_is_left_out(
    server: Server, http: Client
) -> None:
    t = server.tenant(
        SIZED.replace(
            "STEP",
            '{id: 1, type: set_parameters, values: {note: "' + BIG + '"}}\n'
            '      - {id: 2, type: send_sms, to: phone, body: "A{{ \'\\\\0\' }}B {{ note|length }}"}',
        )
    )
    [iid] = start(http, t, {"key": "k", "phone": PHONE, "email": "a@example.com", "size": "5000"})
    server.run_worker()
    inst = get(http, t, iid)
    assert inst["status"] == "Completed", inst["events"]
    assert inst["parameters"]["note"] == "x" * 1000  # values are cut where the API's limit is
    assert bodies(server, t.org_id) == ["AB 1000"]  # a template's "\0" is not stored (PostgreSQL cannot)


# ---------------------------------------------------------------- wait, wait_until
WAIT = """
name: Wait
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: wait, duration: 2h 30m}
      - {id: 2, type: send_sms, to: phone, body: "after the wait"}
"""


def test_wait_does_not_run_before_its_duration_has_passed(server: Server, http: Client) -> None:
    t = server.tenant(WAIT)
    [iid] = start(http, t, {"key": "k1", "phone": PHONE})
    server.run_worker()
    due = START + timedelta(hours=2, minutes=30)
    assert kinds(http, t, iid) == [(None, "started"), (1, "wait")]
    assert last(http, t, iid, "wait")["detail"] == {"until": z(due)}
    assert get(http, t, iid)["status"] == "InProgress"
    nothing_new_until(server, http, t, iid, due)
    assert kinds(http, t, iid)[2:] == [(2, "sms_queued"), (None, "completed")]
    assert bodies(server, t.org_id) == ["after the wait"]
    assert as_utc(outbox(server, t.org_id)[0].created_at) == due
    assert get(http, t, iid)["status"] == "Completed"


WAIT_UNTIL = """
name: Wait until
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
  - {name: when, type: datetime}
frequency_cap: null
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: wait_until, parameter: when, before: 1d, at: "09:00"}
      - {id: 2, type: send_sms, to: phone, body: "tomorrow {{ when | date('%-I:%M %p') }}"}
      - {id: 3, type: wait_until, parameter: when, before: 3h}
      - {id: 4, type: send_sms, to: phone, body: "in three hours"}
      - {id: 5, type: wait_until, parameter: when, after: 90m}
      - {id: 6, type: send_sms, to: phone, body: "how was it?"}
      - {id: 7, type: end, outcome: done}
"""


def test_wait_until_before_at_and_after_run_exactly_at_their_times(server: Server, http: Client) -> None:
    t = server.tenant(WAIT_UNTIL)
    [iid] = start(http, t, {"key": "k1", "phone": PHONE, "when": "2026-11-05 14:00:00"})
    server.run_worker()
    targets = [
        (1, chicago(2026, 11, 4, 9, 0), "tomorrow 2:00 PM"),
        (3, chicago(2026, 11, 5, 11, 0), "in three hours"),
        (5, chicago(2026, 11, 5, 15, 30), "how was it?"),
    ]
    assert targets[0][1] == datetime(2026, 11, 4, 15, 0, tzinfo=UTC)
    for n, (step, due, body) in enumerate(targets):
        assert kinds(http, t, iid)[-1] == (step, "wait")
        assert last(http, t, iid, "wait")["detail"] == {"until": z(due)}
        nothing_new_until(server, http, t, iid, due)
        assert bodies(server, t.org_id)[n] == body
        assert as_utc(outbox(server, t.org_id)[n].created_at) == due
    assert kinds(http, t, iid)[-2:] == [(6, "sms_queued"), (7, "end")]
    assert get(http, t, iid)["status"] == "Completed"
    assert server.count("outbox", t.org_id) == 3


DAY_BEFORE = """
name: Day before
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
  - {name: when, type: datetime}
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: wait_until, parameter: when, before: 1d, at: "09:00"}
      - {id: 2, type: send_sms, to: phone, body: "See you {{ when | date('%A at %-I:%M %p') }}"}
"""


def test_wait_until_across_the_spring_forward_runs_at_local_0900_cdt(server: Server, http: Client) -> None:
    # Clocks spring forward on Sun 2026-03-08 (02:00 CST -> 03:00 CDT): the day before a Monday
    # 09:00 appointment, 09:00 local is 14:00Z, not 15:00Z (09:00 CST).
    server.clock.set(datetime(2026, 3, 5, 16, 0, tzinfo=UTC))
    t = server.tenant(DAY_BEFORE)
    [iid] = start(http, t, {"key": "k1", "phone": PHONE, "when": "2026-03-09 09:00:00"})
    server.run_worker()
    due = datetime(2026, 3, 8, 14, 0, tzinfo=UTC)
    assert last(http, t, iid, "wait")["detail"] == {"until": "2026-03-08T14:00:00Z"}
    nothing_new_until(server, http, t, iid, due)
    [row] = outbox(server, t.org_id)
    assert as_utc(row.created_at) == due
    assert row.body == "See you Monday at 9:00 AM"
    assert last(http, t, iid, "sms_queued")["eventDateTime"].startswith("2026-03-08T14:00:00")
    server.clock.set(datetime(2026, 3, 8, 15, 0, tzinfo=UTC))  # 09:00 CST would be now
    server.run_worker()
    assert server.count("outbox", t.org_id) == 1
    assert get(http, t, iid)["status"] == "Completed"


TWO_DAYS_BEFORE = """
name: Two days before
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
  - {name: when, type: datetime}
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: wait_until, parameter: when, before: 2d}
      - {id: 2, type: send_sms, to: phone, body: "In two days: {{ when | date('%A at %-I:%M %p') }}"}
"""


def test_wait_until_days_before_across_the_fall_back_keeps_the_local_time(
    server: Server, http: Client
) -> None:
    # The clocks fall back on Sun 2026-11-01 (02:00 CDT -> 01:00 CST). "2d before" Mon 11-02
    # 09:00 CST (15:00Z) is Sat 10-31 09:00 CDT = 14:00Z: 49 real hours earlier.
    server.clock.set(datetime(2026, 10, 26, 15, 0, tzinfo=UTC))
    t = server.tenant(TWO_DAYS_BEFORE)
    [iid] = start(http, t, {"key": "k1", "phone": PHONE, "when": "2026-11-02 09:00:00"})
    server.run_worker()
    due = datetime(2026, 10, 31, 14, 0, tzinfo=UTC)
    assert last(http, t, iid, "wait")["detail"] == {"until": z(due)}
    nothing_new_until(server, http, t, iid, due)
    [row] = outbox(server, t.org_id)
    assert as_utc(row.created_at) == due
    assert row.body == "In two days: Monday at 9:00 AM"
    assert get(http, t, iid)["status"] == "Completed"


PAST_POLICY = """
name: Past policy
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
  - {name: when, type: datetime}
frequency_cap: null
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: wait_until, parameter: when, before: 2 days POLICY}
      - {id: 2, type: send_sms, to: phone, body: "Your appointment is in 2 days"}
      - {id: 3, type: send_sms, to: phone, body: "Please bring your insurance card"}
      - {id: 4, type: end, outcome: done}
"""


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (None, "skip"),
        ("skip", "skip"),
        ("run_now", "run_now"),
    ],
    ids=["default", "skip", "run_now"],
)
def test_wait_until_in_the_past_skip_or_run_now(
    server: Server, http: Client, policy: str | None, expected: str
) -> None:
    text = PAST_POLICY.replace(" POLICY", f", if_past: {policy}" if policy else "")
    t = server.tenant(text)
    appointment = START + timedelta(hours=3)
    [iid] = start(http, t, {"key": "k1", "phone": PHONE, "when": local(appointment)})
    server.run_worker()
    skipped = last(http, t, iid, "wait_skipped")
    assert skipped["stepId"] == 1
    # 13:00 local two calendar days earlier (across the fall-back: 49 real hours)
    assert skipped["detail"] == {"until": z(chicago(2026, 10, 31, 13, 0)), "policy": expected}
    if expected == "skip":
        assert kinds(http, t, iid) == [
            (None, "started"),
            (1, "wait_skipped"),
            (2, "sms_skipped"),
            (3, "sms_queued"),
            (4, "end"),
        ]
        assert "passed" in last(http, t, iid, "sms_skipped")["detail"]["reason"]
        assert bodies(server, t.org_id) == ["Please bring your insurance card"]  # only the next send
    else:
        assert kinds(http, t, iid) == [
            (None, "started"),
            (1, "wait_skipped"),
            (2, "sms_queued"),
            (3, "sms_queued"),
            (4, "end"),
        ]
        assert bodies(server, t.org_id) == [
            "Your appointment is in 2 days",
            "Please bring your insurance card",
        ]
    assert get(http, t, iid)["status"] == "Completed"


def test_wait_until_skip_with_no_other_send_leaves_no_outbox_row(server: Server, http: Client) -> None:
    t = server.tenant(DAY_BEFORE.replace('at: "09:00"}', 'at: "09:00", if_past: skip}'))
    [iid] = start(http, t, {"key": "k1", "phone": PHONE, "when": local(START + timedelta(hours=3))})
    server.run_worker()
    assert kinds(http, t, iid) == [
        (None, "started"),
        (1, "wait_skipped"),
        (2, "sms_skipped"),
        (None, "completed"),
    ]
    assert server.count("outbox", t.org_id) == 0


SKIP_THEN_WAIT = """
name: Skip then wait
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
  - {name: when, type: datetime}
  - {name: optin, required: false}
frequency_cap: null
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: wait_until, parameter: when, before: 7d}
      - id: 15
        type: branch
        cases:
          - when: {parameter: optin, empty: true}
            next: 30
      - {id: 20, type: send_sms, to: phone, body: "Your appointment is in a week"}
      - {id: 30, type: wait_until, parameter: when, before: 2d}
      - {id: 40, type: send_sms, to: phone, body: "Your appointment is in 2 days"}
      - {id: 50, type: end}
"""


def test_a_skipped_wait_does_not_skip_a_send_after_a_later_wait(server: Server, http: Client) -> None:
    # Booked 5 days ahead: the 7-day reminder time has passed (skip), and this patient did not
    # opt in to it anyway. The 2-day reminder is meant for its own time and must go out then.
    t = server.tenant(SKIP_THEN_WAIT)
    appointment = START + timedelta(days=5)
    [iid] = start(http, t, {"key": "k1", "phone": PHONE, "when": local(appointment)})
    server.run_worker()
    assert kinds(http, t, iid) == [(None, "started"), (10, "wait_skipped"), (15, "branch"), (30, "wait")]
    nothing_new_until(server, http, t, iid, appointment - timedelta(days=2))
    assert kinds(http, t, iid)[-2:] == [(40, "sms_queued"), (50, "end")]
    assert bodies(server, t.org_id) == ["Your appointment is in 2 days"]


# ---------------------------------------------------------------- wait_for_reply
REPLY = reply_journey(phone_required=False)


def waiting(server: Server, http: Client, t: Tenant, *phones: str) -> list[str]:
    """Start one REPLY instance per phone and run it to its wait_for_reply."""
    ids = start(http, t, *({"key": f"k{i}", "phone": p} for i, p in enumerate(phones)))
    server.run_worker()
    for iid in ids:
        assert kinds(http, t, iid)[-1] == (20, "waiting_for_reply")
    return ids


@pytest.mark.parametrize(
    ("text", "outcome", "end_step"),
    [
        ("C", "confirmed", 30),
        (" yes ", "confirmed", 30),
        ("Confirm!", "confirmed", 30),
        ("R", "reschedule", 40),
        ("maybe", "other", 50),
    ],
)
def test_wait_for_reply_routes_the_reply_by_keyword(
    server: Server, http: Client, text: str, outcome: str, end_step: int
) -> None:
    t = server.tenant(REPLY)
    [iid] = waiting(server, http, t, PHONE)
    assert last(http, t, iid, "waiting_for_reply")["detail"] == {"until": z(START + timedelta(days=2))}
    server.clock.advance(timedelta(hours=5))
    got = reply(http, t, PHONE, text)
    assert got["matched"] is True and got["instanceId"] == iid
    assert isinstance(got["id"], str) and got["id"]
    server.run_worker()
    assert kinds(http, t, iid)[-3:] == [(None, "reply_arrived"), (20, "reply_received"), (end_step, "end")]
    assert last(http, t, iid, "reply_arrived")["detail"] == {"messageId": got["id"]}
    assert last(http, t, iid, "reply_received")["detail"] == {"outcome": outcome}
    assert last(http, t, iid, "end")["detail"] == {"outcome": outcome}
    inst = get(http, t, iid)
    assert inst["status"] == "Completed"
    assert inst["parameters"]["answer"] == text  # saved as sent
    assert search_equals(http, t, "answer", text) == [iid]
    assert [tuple(r) for r in inbound(server, t.org_id)] == [(PHONE, text, iid, "api")]


def test_wait_for_reply_times_out_into_on_timeout(server: Server, http: Client) -> None:
    t = server.tenant(REPLY)
    [iid] = waiting(server, http, t, PHONE)
    nothing_new_until(server, http, t, iid, START + timedelta(days=2))
    assert kinds(http, t, iid)[-2:] == [(20, "reply_timeout"), (60, "end")]
    assert last(http, t, iid, "reply_timeout")["detail"] == {"outcome": "no_reply"}
    assert last(http, t, iid, "end")["detail"] == {"outcome": "no_reply"}
    inst = get(http, t, iid)
    assert inst["status"] == "Completed"
    assert "answer" not in inst["parameters"]
    # A reply after the timeout finds nobody waiting.
    late = reply(http, t, PHONE, "C")
    assert (late["matched"], late["instanceId"]) == (False, None)
    server.run_worker()
    assert kinds(http, t, iid)[-1] == (60, "end")


def test_a_reply_from_a_number_nobody_waits_for_is_stored_unmatched(server: Server, http: Client) -> None:
    t = server.tenant(REPLY)
    [iid] = waiting(server, http, t, PHONE)
    other_org = server.tenant(REPLY)
    [other_iid] = waiting(server, http, other_org, OTHER_PHONE)
    got = reply(http, t, OTHER_PHONE, "C")  # waited for, but by another org's instance
    assert got["matched"] is False and got["instanceId"] is None
    assert isinstance(got["id"], str) and got["id"]
    assert [tuple(r) for r in inbound(server, t.org_id)] == [(OTHER_PHONE, "C", None, "api")]
    assert server.count("inbound_messages", other_org.org_id) == 0
    server.run_worker()
    assert kinds(http, t, iid)[-1] == (20, "waiting_for_reply")
    assert kinds(http, other_org, other_iid)[-1] == (20, "waiting_for_reply")


@pytest.mark.parametrize(
    ("param_phone", "from_"),
    [("+15555550100", "(555) 555-0100"), ("(555) 555-0100", "+1 555 555 0100"), ("555.555.0100", PHONE)],
)
def test_a_reply_matches_however_the_number_is_written(
    server: Server, http: Client, param_phone: str, from_: str
) -> None:
    t = server.tenant(REPLY)
    [iid] = waiting(server, http, t, param_phone)
    got = reply(http, t, from_, "C")
    assert (got["matched"], got["instanceId"]) == (True, iid)
    server.run_worker()
    assert last(http, t, iid, "end")["detail"] == {"outcome": "confirmed"}
    assert inbound(server, t.org_id)[0].from_address == PHONE


def test_the_most_recent_waiting_instance_gets_the_reply(server: Server, http: Client) -> None:
    t = server.tenant(REPLY)
    [first] = start(http, t, {"key": "first", "phone": PHONE})
    server.run_worker()
    server.clock.advance(timedelta(minutes=1))
    [second] = start(http, t, {"key": "second", "phone": PHONE})
    server.run_worker()
    got = reply(http, t, PHONE, "C")
    assert got["instanceId"] == second
    server.run_worker()
    assert last(http, t, second, "end")["detail"] == {"outcome": "confirmed"}
    assert kinds(http, t, first)[-1] == (20, "waiting_for_reply")
    # The next reply goes to the one still waiting.
    got = reply(http, t, PHONE, "R")
    assert got["instanceId"] == first
    server.run_worker()
    assert last(http, t, first, "end")["detail"] == {"outcome": "reschedule"}
    assert [r.instance_id for r in inbound(server, t.org_id)] == [second, first]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (json.dumps({"body": "C"}), "from: must be a phone number"),
        (json.dumps({"from": "not a phone", "body": "C"}), "from: must be a phone number"),
        (json.dumps({"from": PHONE, "body": 5}), "body: must be a string"),
        (json.dumps({"from": PHONE}), "body: must be a string"),
        (json.dumps({"from": PHONE, "body": "x" * 1601}), "body: at most 1600 characters"),
        ("this is not JSON", "request body is not valid JSON"),
        (json.dumps(["C"]), "request body: must be a JSON object"),
        ("", "request body is empty"),
    ],
    ids=["no-from", "bad-from", "number-body", "no-body", "too-long", "not-json", "array", "empty"],
)
def test_bad_replies_are_400_arrays_and_store_nothing(
    server: Server, http: Client, content: str, expected: str
) -> None:
    t = server.tenant(REPLY)
    [iid] = waiting(server, http, t, PHONE)
    r = http.post(
        f"/api/orgs/{t.org_id}/replies",
        content=content.encode(),
        headers={**t.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    errors = r.json()
    assert isinstance(errors, list) and errors and all(isinstance(e, str) for e in errors)
    assert any(e.startswith(expected) for e in errors), errors
    assert server.count("inbound_messages", t.org_id) == 0
    server.run_worker()
    assert kinds(http, t, iid)[-1] == (20, "waiting_for_reply")


def test_a_1600_character_reply_is_accepted_and_saved_searchably(server: Server, http: Client) -> None:
    t = server.tenant(REPLY)
    [iid] = waiting(server, http, t, PHONE)
    got = reply(http, t, PHONE, "x" * 1600)
    assert (got["matched"], got["instanceId"]) == (True, iid)
    server.run_worker()
    assert last(http, t, iid, "reply_received")["detail"] == {"outcome": "other"}
    # Whatever is kept of it, the instance shows and search finds the same value.
    saved = get(http, t, iid)["parameters"]["answer"]
    assert saved and set(saved) == {"x"}
    assert search_equals(http, t, "answer", saved) == [iid]


def test_the_replies_endpoint_needs_a_token_of_the_org_with_the_create_scope(
    server: Server, http: Client
) -> None:
    t = server.tenant(REPLY)
    [iid] = waiting(server, http, t, PHONE)
    url = f"/api/orgs/{t.org_id}/replies"
    body = {"from": PHONE, "body": "C"}
    assert http.post(url, json=body).status_code == 401
    assert http.post(url, json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    read_only = server.new_token(t.org_id, [accounts.SCOPE_READ])
    r = http.post(url, json=body, headers={"Authorization": f"Bearer {read_only}"})
    assert r.status_code == 403 and isinstance(r.json(), list)
    other = server.tenant(REPLY)
    r = http.post(url, json=body, headers=other.headers)
    assert r.status_code == 404 and isinstance(r.json(), list)
    assert server.count("inbound_messages", t.org_id) == 0
    assert server.count("inbound_messages", other.org_id) == 0
    server.run_worker()
    assert kinds(http, t, iid)[-1] == (20, "waiting_for_reply")


def test_wait_for_reply_without_a_phone_goes_straight_to_on_timeout(server: Server, http: Client) -> None:
    t = server.tenant(REPLY)
    [iid] = start(http, t, {"key": "k1"})
    server.run_worker()
    assert kinds(http, t, iid) == [(None, "started"), (10, "sms_skipped"), (20, "reply_skipped"), (60, "end")]
    assert last(http, t, iid, "reply_skipped")["detail"] == {"reason": "parameter phone is empty"}
    assert get(http, t, iid)["status"] == "Completed"


def test_only_the_first_reply_is_taken_a_second_before_the_worker_runs_is_unmatched(
    server: Server, http: Client
) -> None:
    t = server.tenant(REPLY)
    [iid] = waiting(server, http, t, PHONE)
    assert reply(http, t, PHONE, "C")["instanceId"] == iid
    second = reply(http, t, PHONE, "R")
    assert (second["matched"], second["instanceId"]) == (False, None)
    server.run_worker()
    assert last(http, t, iid, "end")["detail"] == {"outcome": "confirmed"}
    assert get(http, t, iid)["parameters"]["answer"] == "C"
    assert [(r.body, r.instance_id) for r in inbound(server, t.org_id)] == [("C", iid), ("R", None)]


REPLY_WITH_SUBFLOW = (
    REPLY
    + """  - id: moved
    name: Moved
    steps:
      - {id: 100, type: send_sms, to: phone, body: "Your visit moved. Reply C to confirm", next: 20}
"""
)


def test_a_subflow_interrupting_a_wait_for_reply_starts_a_fresh_wait(server: Server, http: Client) -> None:
    t = server.tenant(REPLY_WITH_SUBFLOW)
    [iid] = waiting(server, http, t, PHONE)
    server.clock.advance(timedelta(days=1))
    moved = {"flowId": "moved", "timeZone": "America/Chicago", "instances": [{"parameters": {"key": "k0"}}]}
    assert http.post(t.url("/bulk"), json=moved, headers=t.headers).status_code == 204
    # While the subflow has not run yet, the instance waits for no reply.
    early = reply(http, t, PHONE, "R")
    assert (early["matched"], early["instanceId"]) == (False, None)
    server.run_worker()
    assert kinds(http, t, iid)[-3:] == [
        (None, "subflow_started"),
        (100, "sms_queued"),
        (20, "waiting_for_reply"),
    ]
    new_deadline = START + timedelta(days=3)
    assert last(http, t, iid, "waiting_for_reply")["detail"] == {"until": z(new_deadline)}
    # The first wait's deadline passes without a timeout.
    server.clock.set(START + timedelta(days=2, hours=1))
    server.run_worker()
    assert kinds(http, t, iid)[-1] == (20, "waiting_for_reply")
    assert reply(http, t, PHONE, "yes")["instanceId"] == iid
    server.run_worker()
    assert last(http, t, iid, "end")["detail"] == {"outcome": "confirmed"}
    assert get(http, t, iid)["parameters"]["answer"] == "yes"


def test_set_parameters_cannot_change_an_identifier_parameter(server: Server) -> None:
    text = SET_PARAMETERS.replace("          status: confirmed\n", "          key: other\n")
    with pytest.raises(DefinitionError, match="cannot set identifier parameter 'key'"):
        server.tenant(text)


# ---------------------------------------------------------------- branch
BRANCH_VALUES = """
name: Branch values
parameters:
  - {name: key, identifier: true}
  - {name: tier, required: false}
  - {name: note, required: false}
flows:
  - id: main
    name: Main
    steps:
      - id: 1
        type: branch
        cases:
          - when: {parameter: tier, equals: gold}
            next: 10
          - when: {parameter: Tier, in: [silver, bronze]}
            next: 11
          - when: {parameter: note, empty: false}
            next: 12
        else: 13
      - {id: 10, type: end, outcome: equals}
      - {id: 11, type: end, outcome: in}
      - {id: 12, type: end, outcome: not-empty}
      - {id: 13, type: end, outcome: else}
"""


def run_branch(
    server: Server, http: Client, text: str, cases: list[tuple[dict[str, str], Any, int, str | None]]
) -> None:
    """Start one instance per case and check its branch event and where it ended."""
    t = server.tenant(text)
    params = [{"key": f"k{i}", **p} for i, (p, *_rest) in enumerate(cases)]
    ids = start(http, t, *params)
    server.run_worker()
    for iid, (p, case, target, outcome) in zip(ids, cases, strict=True):
        branch = last(http, t, iid, "branch")
        assert branch["stepId"] == 1
        assert branch["detail"] == {"case": case, "next": target}, p
        ended = events(http, t, iid)[-1]
        assert ended["stepId"] == target, p
        assert ended["detail"] == ({"outcome": outcome} if outcome else {}), p
        assert get(http, t, iid)["status"] == "Completed"


def test_branch_equals_in_empty_and_else(server: Server, http: Client) -> None:
    run_branch(
        server,
        http,
        BRANCH_VALUES,
        [
            ({"tier": "gold"}, 0, 10, "equals"),
            ({"tier": "bronze"}, 1, 11, "in"),
            ({"tier": "Gold", "note": "hi"}, 2, 12, "not-empty"),  # values compare exactly
            ({"tier": "platinum", "note": "   "}, "else", 13, "else"),  # blank is empty
            ({}, "else", 13, "else"),
        ],
    )


BRANCH_FALL_THROUGH = """
name: Branch fall through
parameters:
  - {name: key, identifier: true}
  - {name: note, required: false}
flows:
  - id: main
    name: Main
    steps:
      - id: 1
        type: branch
        cases:
          - when: {parameter: note, empty: true}
            next: 3
      - {id: 2, type: end, outcome: fell-through}
      - {id: 3, type: end, outcome: note-empty}
"""


def test_branch_empty_true_and_falling_through_to_the_following_step(server: Server, http: Client) -> None:
    run_branch(
        server,
        http,
        BRANCH_FALL_THROUGH,
        [
            ({}, 0, 3, "note-empty"),
            ({"note": ""}, 0, 3, "note-empty"),
            ({"note": "  "}, 0, 3, "note-empty"),
            ({"note": "x"}, "else", 2, "fell-through"),
        ],
    )


BRANCH_TIMES = """
name: Branch times
parameters:
  - {name: key, identifier: true}
  - {name: when, type: datetime, required: false}
flows:
  - id: main
    name: Main
    steps:
      - id: 1
        type: branch
        cases:
          - when: {parameter: when, before: now}
            next: 10
          - when: {all: [{parameter: when, after: now}, {parameter: when, before: now+2d}]}
            next: 11
          - when: {parameter: when, after: now+2d}
            next: 12
        else: 13
      - {id: 10, type: end, outcome: past}
      - {id: 11, type: end, outcome: soon}
      - {id: 12, type: end, outcome: later}
      - {id: 13, type: end, outcome: unknown}
"""


def test_branch_before_and_after_now_and_now_plus_2d(server: Server, http: Client) -> None:
    run_branch(
        server,
        http,
        BRANCH_TIMES,
        [
            ({"when": local(START - timedelta(hours=1))}, 0, 10, "past"),
            ({"when": local(START + timedelta(days=1))}, 1, 11, "soon"),
            ({"when": local(START + timedelta(days=2, minutes=-1))}, 1, 11, "soon"),
            ({"when": local(START + timedelta(days=3))}, 2, 12, "later"),
            ({"when": "2026-11-05T16:00:00Z"}, 2, 12, "later"),
            ({"when": local(START)}, "else", 13, "unknown"),  # neither before nor after now
            ({}, "else", 13, "unknown"),
        ],
    )


BRANCH_LOGIC = """
name: Branch logic
parameters:
  - {name: key, identifier: true}
  - {name: tier, required: false}
  - {name: note, required: false}
flows:
  - id: main
    name: Main
    steps:
      - id: 1
        type: branch
        cases:
          - when: {all: [{parameter: tier, equals: gold}, {not: {parameter: note, empty: true}}]}
            next: 10
          - when: {any: [{parameter: tier, equals: gold}, {parameter: tier, equals: silver}]}
            next: 11
          - when: {not: {parameter: tier, in: [blocked, banned]}}
            next: 12
        else: 13
      - {id: 10, type: end, outcome: gold-with-note}
      - {id: 11, type: end, outcome: gold-or-silver}
      - {id: 12, type: end, outcome: not-blocked}
      - {id: 13, type: end}
"""


def test_branch_all_any_not(server: Server, http: Client) -> None:
    run_branch(
        server,
        http,
        BRANCH_LOGIC,
        [
            ({"tier": "gold", "note": "vip"}, 0, 10, "gold-with-note"),
            ({"tier": "gold"}, 1, 11, "gold-or-silver"),
            ({"tier": "silver", "note": "x"}, 1, 11, "gold-or-silver"),
            ({"tier": "bronze"}, 2, 12, "not-blocked"),
            ({}, 2, 12, "not-blocked"),
            ({"tier": "banned"}, "else", 13, None),
        ],
    )


BRANCH_REPLY = """
name: Branch on reply
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
frequency_cap: null
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: send_sms, to: phone, body: "Reply C to confirm"}
      - id: 20
        type: wait_for_reply
        to: phone
        timeout: 1d
        replies:
          - {outcome: confirmed}
          - {outcome: reschedule}
      - id: 30
        type: branch
        cases:
          - when: {reply: confirmed}
            next: 40
          - when: {reply: no_reply}
            next: 50
        else: 60
      - {id: 40, type: end, outcome: was-confirmed}
      - {id: 50, type: end, outcome: was-silent}
      - {id: 60, type: end, outcome: something-else}
"""


def test_branch_on_the_reply_outcome(server: Server, http: Client) -> None:
    t = server.tenant(BRANCH_REPLY)
    phones = ["+15555550101", "+15555550102", "+15555550103", "+15555550104"]
    ids = start(http, t, *({"key": f"k{i}", "phone": p} for i, p in enumerate(phones)))
    server.run_worker()
    assert reply(http, t, phones[0], "yes")["instanceId"] == ids[0]
    assert reply(http, t, phones[1], "R")["instanceId"] == ids[1]
    assert reply(http, t, phones[2], "maybe")["instanceId"] == ids[2]
    server.run_worker()
    server.clock.advance(timedelta(days=1))  # phones[3] never answers
    server.run_worker()
    expected = [
        ("confirmed", 0, 40, "was-confirmed"),
        ("reschedule", "else", 60, "something-else"),
        ("other", "else", 60, "something-else"),
        ("no_reply", 1, 50, "was-silent"),
    ]
    for iid, (said, case, target, outcome) in zip(ids, expected, strict=True):
        answered = [e for e in events(http, t, iid) if e["type"] in ("reply_received", "reply_timeout")]
        assert [e["detail"] for e in answered] == [{"outcome": said}]
        assert last(http, t, iid, "branch")["detail"] == {"case": case, "next": target}
        assert events(http, t, iid)[-1]["detail"] == {"outcome": outcome}


# ---------------------------------------------------------------- set_parameters, goto
SET_PARAMETERS = """
name: Set parameters
parameters:
  - {name: key, identifier: true}
  - {name: patientName}
  - {name: status, required: false}
  - {name: greeting, required: false}
flows:
  - id: main
    name: Main
    steps:
      - id: 1
        type: set_parameters
        values:
          status: confirmed
          Greeting: "Hello {{ patientName | upper }} ({{ key }})"
      - {id: 2, type: end}
"""


def test_set_parameters_changes_values_and_search_sees_them(server: Server, http: Client) -> None:
    t = server.tenant(SET_PARAMETERS)
    [iid] = start(http, t, {"key": "k1", "patientName": "Ann", "status": "new"})
    assert search_equals(http, t, "status", "new") == [iid]
    server.run_worker()
    assert kinds(http, t, iid) == [(None, "started"), (1, "set_parameters"), (2, "end")]
    assert last(http, t, iid, "set_parameters")["detail"]["parameters"] == ["Greeting", "status"]
    params = get(http, t, iid)["parameters"]
    assert params == {
        "key": "k1",
        "patientName": "Ann",
        "status": "confirmed",
        "greeting": "Hello ANN (k1)",
    }
    assert search_equals(http, t, "status", "confirmed") == [iid]
    assert search_equals(http, t, "status", "new") == []
    assert search_equals(http, t, "greeting", "Hello ANN (k1)") == [iid]
    assert search_equals(http, t, "key", "k1") == [iid]  # the identifier is unchanged


GOTO = """
name: Goto
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
  - {name: status, required: false}
flows:
  - id: main
    name: Main Flow
    main: true
    steps:
      - {id: 1, type: set_parameters, values: {status: in-main}}
      - {id: 2, type: goto, target: 110}
  - id: other
    name: Other Flow
    steps:
      - {id: 100, type: end, outcome: never-either}
      - {id: 110, type: send_sms, to: phone, body: "status {{ status }}"}
      - {id: 120, type: end, outcome: from-other}
"""


def test_goto_continues_at_a_step_of_another_flow(server: Server, http: Client) -> None:
    t = server.tenant(GOTO)
    [iid] = start(http, t, {"key": "k1", "phone": PHONE})
    server.run_worker()
    got = get(http, t, iid)
    assert [(e["flowId"], e["flowName"], e["stepId"], e["type"]) for e in got["events"]] == [
        ("main", "Main Flow", None, "started"),
        ("main", "Main Flow", 1, "set_parameters"),
        ("main", "Main Flow", 2, "goto"),
        ("other", "Other Flow", 110, "sms_queued"),
        ("other", "Other Flow", 120, "end"),
    ]
    assert got["events"][2]["detail"] == {"target": 110}
    assert got["events"][-1]["detail"] == {"outcome": "from-other"}
    assert got["status"] == "Completed"
    assert got["lastStepExecuted"]["flowName"] == "Other Flow"
    assert got["lastStepExecuted"]["stepId"] == 120
    [row] = outbox(server, t.org_id)
    assert (row.body, row.flow_id, row.step_id) == ("status in-main", "other", 110)


# ---------------------------------------------------------------- http_request
class Remote:
    """A small real HTTP server that records requests and answers from a script."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, Any, float]] = []  # (status, JSON, seconds to stall)
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.base = ""

    def answer(self, status: int, payload: Any = None, stall: float = 0.0) -> None:
        self.script.append((status, payload, stall))


@pytest.fixture()
def remote() -> Iterator[Remote]:
    rec = Remote()

    class Handler(BaseHTTPRequestHandler):
        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            with rec.lock:
                rec.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": json.loads(raw) if raw else None,
                    }
                )
                status, payload, stall = rec.script.pop(0) if rec.script else (200, {}, 0.0)
            if stall:
                rec.release.wait(stall)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the caller timed out and hung up
                pass

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = LocalHttpServer(Handler)
    rec.base = server.base_url
    yield rec
    rec.release.set()
    server.stop()


HTTP = """
name: HTTP
parameters:
  - {name: key, identifier: true}
  - {name: patientName}
  - {name: phone, type: phone}
  - {name: ehrStatus, required: false}
  - {name: slot, required: false}
  - {name: visits, required: false}
  - {name: missing, required: false}
frequency_cap: null
flows:
  - id: main
    name: Main
    steps:
      - id: 10
        type: http_request
        method: POST
        url: "BASE/patients/{{ key }}/sync?source=journeys"
        headers: {X-Clinic: "clinic-{{ key }}"}
        body: {name: "{{ patientName }}", tags: [reminder, "{{ key }}"], count: 2, flag: true, none: null}
        timeout: TIMEOUT
        save: {ehrStatus: data.status, slot: data.slots.1.time, visits: data.visits, missing: data.nope}
        ON_FAILURE
      - {id: 20, type: send_sms, to: phone, body: "EHR says {{ ehrStatus }} at {{ slot }}"}
      - {id: 30, type: end, outcome: synced}
      - {id: 90, type: end, outcome: sync-failed}
"""


def http_journey(remote: Remote, *, on_failure: bool = True, timeout: str = "5s") -> str:
    text = HTTP.replace("BASE", remote.base).replace("TIMEOUT", timeout)
    if on_failure:
        return text.replace("ON_FAILURE", "on_failure: 90")
    return text.replace("        ON_FAILURE\n", "").replace(
        "      - {id: 90, type: end, outcome: sync-failed}\n", ""
    )


def test_http_request_sends_the_rendered_request_and_saves_the_response(
    server: Server, http: Client, remote: Remote
) -> None:
    remote.answer(
        200, {"data": {"status": "active", "slots": [{"time": "09:00"}, {"time": "10:30"}], "visits": 3}}
    )
    t = server.tenant(http_journey(remote))
    [iid] = start(http, t, {"key": "k1", "patientName": "Ann Example", "phone": PHONE})
    server.run_worker()  # runs the step, makes the call after the commit, then continues
    [req] = remote.requests
    assert req["method"] == "POST"
    assert req["path"] == "/patients/k1/sync?source=journeys"
    assert req["headers"]["x-clinic"] == "clinic-k1"
    assert req["headers"]["idempotency-key"]
    assert req["headers"]["content-type"] == "application/json"
    assert req["body"] == {
        "name": "Ann Example",
        "tags": ["reminder", "k1"],
        "count": 2,
        "flag": True,
        "none": None,
    }
    assert kinds(http, t, iid) == [(None, "started"), (10, "http_request"), (20, "sms_queued"), (30, "end")]
    assert last(http, t, iid, "http_request")["detail"] == {
        "status": 200,
        "ok": True,
        "saved": ["ehrStatus", "slot", "visits"],
    }
    inst = get(http, t, iid)
    assert inst["status"] == "Completed"
    assert inst["parameters"]["ehrStatus"] == "active"
    assert inst["parameters"]["slot"] == "10:30"
    assert inst["parameters"]["visits"] == "3"  # non-strings are saved as JSON text
    assert "missing" not in inst["parameters"]  # a path that is not in the response saves nothing
    assert search_equals(http, t, "ehrStatus", "active") == [iid]
    assert bodies(server, t.org_id) == ["EHR says active at 10:30"]
    assert len(remote.requests) == 1


def test_http_request_response_values_with_nul_are_saved_without_it(
    server: Server, http: Client, remote: Remote
) -> None:
    """PostgreSQL cannot store NUL: a remote answer holding one must not wedge the instance."""
    remote.answer(200, {"data": {"status": "act\u0000ive", "slots": [{}, {"time": "10:\u000030"}]}})
    t = server.tenant(http_journey(remote))
    [iid] = start(http, t, {"key": "k1", "patientName": "Ann", "phone": PHONE})
    server.run_worker()
    inst = get(http, t, iid)
    assert inst["status"] == "Completed", kinds(http, t, iid)
    assert (inst["parameters"]["ehrStatus"], inst["parameters"]["slot"]) == ("active", "10:30")
    assert search_equals(http, t, "ehrStatus", "active") == [iid]
    assert bodies(server, t.org_id) == ["EHR says active at 10:30"]


def test_http_request_non_2xx_takes_on_failure_and_is_not_retried(
    server: Server, http: Client, remote: Remote
) -> None:
    remote.answer(500, {"error": "boom"})
    t = server.tenant(http_journey(remote))
    [iid] = start(http, t, {"key": "k1", "patientName": "Ann", "phone": PHONE})
    server.run_worker()
    assert kinds(http, t, iid) == [(None, "started"), (10, "http_failed"), (90, "end")]
    assert last(http, t, iid, "http_failed")["detail"] == {"status": 500, "ok": False, "error": "HTTP 500"}
    inst = get(http, t, iid)
    assert inst["status"] == "Completed"
    assert "ehrStatus" not in inst["parameters"]
    server.clock.advance(timedelta(hours=1))
    server.run_worker()
    assert len(remote.requests) == 1  # on_failure is the answer to a failure, not a retry
    assert server.count("outbox", t.org_id) == 0


def test_http_request_failure_without_on_failure_fails_the_instance(
    server: Server, http: Client, remote: Remote
) -> None:
    remote.answer(503)
    t = server.tenant(http_journey(remote, on_failure=False))
    [iid] = start(http, t, {"key": "k1", "patientName": "Ann", "phone": PHONE})
    server.run_worker()
    inst = get(http, t, iid)
    assert inst["status"] == "Failed"
    failed = inst["events"][-1]
    assert (failed["type"], failed["stepId"], failed["flowId"]) == ("failed", 10, "main")
    assert failed["detail"]["error"] == "step 10: HTTP request failed (HTTP 503)"
    server.clock.advance(timedelta(hours=1))
    server.run_worker()
    assert len(remote.requests) == 1
    assert get(http, t, iid)["events"] == inst["events"]
    assert server.count("outbox", t.org_id) == 0


def test_http_request_timeout_takes_on_failure(server: Server, http: Client, remote: Remote) -> None:
    remote.answer(200, {"data": {"status": "late"}}, stall=30)
    t = server.tenant(http_journey(remote, timeout="1s"))
    [iid] = start(http, t, {"key": "k1", "patientName": "Ann", "phone": PHONE})
    server.run_worker()
    assert kinds(http, t, iid) == [(None, "started"), (10, "http_failed"), (90, "end")]
    # A timeout is not told apart from a refused connection (the text must not help scan ports).
    failed = last(http, t, iid, "http_failed")["detail"]
    assert failed == {"status": None, "ok": False, "error": "the request failed"}
    assert "ehrStatus" not in get(http, t, iid)["parameters"]
    assert len(remote.requests) == 1


HTTP_RETRY_LOOP = """
name: HTTP retry loop
parameters:
  - {name: key, identifier: true}
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: http_request, url: "BASE/hook", body: {key: "{{ key }}"}, on_failure: 15, next: 20}
      - {id: 15, type: wait, duration: 5m, next: 10}
      - {id: 20, type: end, outcome: delivered}
"""


def test_http_request_each_execution_of_the_step_has_its_own_idempotency_key(
    server: Server, http: Client, remote: Remote
) -> None:
    # Current behaviour: the key is kept while one call is outstanding (a worker that dies mid-call
    # retries it with the same key); a designer's retry loop runs the step again, as a new call.
    remote.answer(500)
    remote.answer(201, {"ok": True})
    t = server.tenant(HTTP_RETRY_LOOP.replace("BASE", remote.base))
    [iid] = start(http, t, {"key": "k1"})
    server.run_worker()
    assert kinds(http, t, iid)[-2:] == [(10, "http_failed"), (15, "wait")]
    nothing_new_until(server, http, t, iid, START + timedelta(minutes=5))
    assert kinds(http, t, iid)[-2:] == [(10, "http_request"), (20, "end")]
    assert last(http, t, iid, "http_request")["detail"] == {"status": 201, "ok": True, "saved": []}
    keys = [r["headers"]["idempotency-key"] for r in remote.requests]
    assert len(keys) == 2 and all(keys) and keys[0] != keys[1]
    assert [r["body"] for r in remote.requests] == [{"key": "k1"}, {"key": "k1"}]


# ---------------------------------------------------------------- end
END = """
name: End
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
frequency_cap: null
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: send_sms, to: phone, body: "one"}
      - LAST
"""


@pytest.mark.parametrize(
    ("last_step", "final", "detail"),
    [
        ("{id: 2, type: end, outcome: all-done}", (2, "end"), {"outcome": "all-done"}),
        ("{id: 2, type: end}", (2, "end"), {}),
        ("{id: 2, type: send_sms, to: phone, body: two}", (None, "completed"), None),
    ],
    ids=["end-with-outcome", "end-without-outcome", "fall-off-the-end"],
)
def test_end_and_falling_off_the_end_complete_the_instance(
    server: Server, http: Client, last_step: str, final: tuple[int | None, str], detail: Any
) -> None:
    t = server.tenant(END.replace("LAST", last_step))
    [iid] = start(http, t, {"key": "k1", "phone": PHONE})
    server.run_worker()
    inst = get(http, t, iid)
    assert inst["status"] == "Completed"
    assert (inst["events"][-1]["stepId"], inst["events"][-1]["type"]) == final
    if detail is not None:
        assert inst["events"][-1]["detail"] == detail
    else:
        assert inst["events"][-1]["detail"] == {"reason": "reached the end of the flow"}
        assert inst["events"][-2]["type"] == "sms_queued"
    assert [e["type"] for e in inst["events"]].count("completed") == (1 if final[1] == "completed" else 0)
    assert inst["lastStepExecuted"]["stepId"] == 2


def test_a_flow_ending_in_a_wait_completes_when_the_wait_is_over(server: Server, http: Client) -> None:
    t = server.tenant(END.replace("LAST", "{id: 2, type: wait, duration: 1h}"))
    [iid] = start(http, t, {"key": "k1", "phone": PHONE})
    server.run_worker()
    assert get(http, t, iid)["status"] == "InProgress"
    nothing_new_until(server, http, t, iid, START + timedelta(hours=1))
    inst = get(http, t, iid)
    assert inst["status"] == "Completed"
    assert [e["type"] for e in inst["events"]] == ["started", "sms_queued", "wait", "completed"]


# ---------------------------------------------------------------- send window
WINDOW = """
name: Window
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
WINDOW_LINE
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: send_sms, to: phone, body: "hello"STEP_OPTION}
      - {id: 2, type: end, outcome: sent}
"""


def window_journey(window_line: str = "", step_option: str = "") -> str:
    return WINDOW.replace("WINDOW_LINE\n", window_line + "\n" if window_line else "").replace(
        "STEP_OPTION", step_option
    )


def test_a_send_outside_the_window_is_held_until_it_opens(server: Server, http: Client) -> None:
    server.clock.set(chicago(2026, 11, 2, 22, 0))
    t = server.tenant(window_journey())
    [iid] = start(http, t, {"key": "k1", "phone": PHONE})
    server.run_worker()
    opening = chicago(2026, 11, 3, 8, 0)
    assert opening == datetime(2026, 11, 3, 14, 0, tzinfo=UTC)
    assert kinds(http, t, iid) == [(None, "started"), (1, "send_held")]
    assert last(http, t, iid, "send_held")["detail"] == {
        "until": z(opening),
        "reason": "outside the send window",
    }
    assert server.count("outbox", t.org_id) == 0
    server.clock.set(chicago(2026, 11, 3, 7, 59))
    server.run_worker()
    assert kinds(http, t, iid) == [(None, "started"), (1, "send_held")]
    assert server.count("outbox", t.org_id) == 0
    nothing_new_until(server, http, t, iid, opening)
    assert kinds(http, t, iid) == [(None, "started"), (1, "send_held"), (1, "sms_queued"), (2, "end")]
    [row] = outbox(server, t.org_id)
    assert as_utc(row.created_at) == opening and row.status == "sent"


@pytest.mark.parametrize(
    ("local_time", "opening"),
    [
        ((2026, 11, 3, 6, 30), (2026, 11, 3, 8, 0)),  # before the window: the same morning
        ((2026, 11, 2, 21, 0), (2026, 11, 3, 8, 0)),  # the end is exclusive
        ((2026, 11, 3, 0, 0), (2026, 11, 3, 8, 0)),
    ],
)
def test_the_send_window_opening_is_the_next_0800_local(
    server: Server, http: Client, local_time: tuple[int, ...], opening: tuple[int, ...]
) -> None:
    server.clock.set(chicago(*local_time))
    t = server.tenant(window_journey())
    [iid] = start(http, t, {"key": "k1", "phone": PHONE})
    server.run_worker()
    assert last(http, t, iid, "send_held")["detail"]["until"] == z(chicago(*opening))
    assert server.count("outbox", t.org_id) == 0


def test_a_send_at_2059_local_is_inside_the_window(server: Server, http: Client) -> None:
    server.clock.set(chicago(2026, 11, 2, 20, 59))
    t = server.tenant(window_journey())
    [iid] = start(http, t, {"key": "k1", "phone": PHONE})
    server.run_worker()
    assert kinds(http, t, iid) == [(None, "started"), (1, "sms_queued"), (2, "end")]


@pytest.mark.parametrize(
    ("window_line", "step_option"),
    [("send_window: null", ""), ("", ", send_window: false")],
    ids=["journey-without-window", "step-without-window"],
)
def test_without_a_send_window_the_send_goes_out_at_2200(
    server: Server, http: Client, window_line: str, step_option: str
) -> None:
    server.clock.set(chicago(2026, 11, 2, 22, 0))
    t = server.tenant(window_journey(window_line, step_option))
    [iid] = start(http, t, {"key": "k1", "phone": PHONE})
    server.run_worker()
    assert kinds(http, t, iid) == [(None, "started"), (1, "sms_queued"), (2, "end")]
    [row] = outbox(server, t.org_id)
    assert as_utc(row.created_at) == chicago(2026, 11, 2, 22, 0) and row.status == "sent"


# ---------------------------------------------------------------- frequency cap
CAP = """
name: Cap
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
CAP_LINE
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: send_sms, to: phone, body: "hello {{ key }}"STEP_OPTION}
      - {id: 2, type: end}
"""


def cap_journey(cap_line: str = "", step_option: str = "") -> str:
    return CAP.replace("CAP_LINE\n", cap_line + "\n" if cap_line else "").replace("STEP_OPTION", step_option)


SKIP_WHEN_CAPPED = "frequency_cap: {per_day: 1, per_7_days: 3, when_capped: skip}"


def test_a_second_sms_to_the_same_phone_the_same_day_is_capped(server: Server, http: Client) -> None:
    t = server.tenant(cap_journey(SKIP_WHEN_CAPPED))
    [first] = start(http, t, {"key": "k1", "phone": PHONE})
    server.run_worker()
    server.clock.advance(timedelta(hours=3))
    [second, other] = start(
        http, t, {"key": "k2", "phone": "(555) 555-0100"}, {"key": "k3", "phone": OTHER_PHONE}
    )
    server.run_worker()
    assert kinds(http, t, first)[1] == (1, "sms_queued")
    assert kinds(http, t, second) == [(None, "started"), (1, "sms_capped"), (2, "end")]
    assert last(http, t, second, "sms_capped")["detail"] == {"limit": "1 per day"}
    assert kinds(http, t, other)[1] == (1, "sms_queued")  # another number is not affected
    assert bodies(server, t.org_id) == ["hello k1", "hello k3"]
    # The next calendar day the number may be texted again.
    server.clock.set(chicago(2026, 11, 3, 9, 0))
    [third] = start(http, t, {"key": "k4", "phone": PHONE})
    server.run_worker()
    assert kinds(http, t, third)[1] == (1, "sms_queued")
    assert bodies(server, t.org_id)[-1] == "hello k4"


@pytest.mark.parametrize(
    ("cap_line", "step_option"),
    [("", ", frequency_cap: false"), ("frequency_cap: null", "")],
    ids=["step-transactional", "journey-without-cap"],
)
def test_without_a_cap_both_sms_are_sent(
    server: Server, http: Client, cap_line: str, step_option: str
) -> None:
    t = server.tenant(cap_journey(cap_line, step_option))
    [first] = start(http, t, {"key": "k1", "phone": PHONE})
    server.run_worker()
    [second] = start(http, t, {"key": "k2", "phone": PHONE})
    server.run_worker()
    for iid in (first, second):
        assert kinds(http, t, iid) == [(None, "started"), (1, "sms_queued"), (2, "end")]
    assert bodies(server, t.org_id) == ["hello k1", "hello k2"]


def test_two_sms_to_one_phone_in_the_same_batch_send_only_one(server: Server, http: Client) -> None:
    t = server.tenant(cap_journey(SKIP_WHEN_CAPPED))
    ids = start(http, t, {"key": "k1", "phone": PHONE}, {"key": "k2", "phone": "555-555-0100"})
    server.run_worker()
    outcomes = sorted(kinds(http, t, iid)[1][1] for iid in ids)
    assert outcomes == ["sms_capped", "sms_queued"]
    assert server.count("outbox", t.org_id) == 1


def test_a_capped_sms_is_deferred_to_the_next_morning_by_default(server: Server, http: Client) -> None:
    """The default policy (when_capped: defer): the second text of the day waits for the next
    day's send window (08:00 Chicago), is listed as held meanwhile, and then goes."""
    t = server.tenant(cap_journey())
    ids = start(http, t, {"key": "k1", "phone": PHONE}, {"key": "k2", "phone": "555-555-0100"})
    server.run_worker()
    by_outcome = {kinds(http, t, iid)[1][1]: iid for iid in ids}
    assert sorted(by_outcome) == ["sms_deferred", "sms_queued"]
    deferred = by_outcome["sms_deferred"]
    morning = chicago(2026, 11, 3, 8, 0)
    assert last(http, t, deferred, "sms_deferred")["detail"] == {"until": z(morning), "limit": "1 per day"}
    assert server.count("outbox", t.org_id) == 1
    with server.engine.connect() as conn:
        held = list_outgoing(conn, server.clock.now(), t.org_id, deferred, phi_of=server.worker.vault.org)
    assert [(m.status, m.step_id, m.goes_at, m.reason) for m in held] == [
        ("held", 1, morning, "frequency cap (1 per day)")
    ]
    server.clock.set(morning - timedelta(seconds=1))
    server.run_worker()
    assert server.count("outbox", t.org_id) == 1
    server.clock.set(morning)
    server.run_worker()
    assert kinds(http, t, deferred) == [(None, "started"), (1, "sms_deferred"), (1, "sms_queued"), (2, "end")]
    assert sorted(bodies(server, t.org_id)) == ["hello k1", "hello k2"]


def test_a_deferred_sms_is_capped_when_the_next_day_is_past_its_send_before(
    server: Server, http: Client
) -> None:
    """send_before bounds the deferral: a text the cap stops on the eve of an early appointment
    is not sent after it; it is recorded as capped, with the reason. A later appointment's text
    is deferred to 08:00."""
    t = server.tenant(SEND_BEFORE)
    [first] = start(http, t, {"key": "k1", "phone": PHONE, "appt": local(chicago(2026, 11, 3, 11, 0))})
    server.run_worker()
    assert kinds(http, t, first)[1] == (1, "sms_queued")
    early, late = start(
        http,
        t,
        {"key": "k2", "phone": PHONE, "appt": local(chicago(2026, 11, 3, 7, 0))},
        {"key": "k3", "phone": PHONE, "appt": local(chicago(2026, 11, 3, 11, 0))},
    )
    server.run_worker()
    assert kinds(http, t, early) == [(None, "started"), (1, "sms_capped"), (2, "end")]
    assert last(http, t, early, "sms_capped")["detail"] == {
        "limit": "1 per day",
        "reason": "no day the cap allows before appt",
    }
    assert kinds(http, t, late)[1] == (1, "sms_deferred")
    server.clock.set(chicago(2026, 11, 3, 8, 0))
    server.run_worker()
    assert kinds(http, t, late)[2:] == [(1, "sms_queued"), (2, "end")]
    # held, deferred or late: nothing goes at or after send_before
    server.clock.set(chicago(2026, 11, 4, 12, 0))
    [past] = start(http, t, {"key": "k4", "phone": OTHER_PHONE, "appt": local(chicago(2026, 11, 4, 11, 0))})
    server.run_worker()
    assert kinds(http, t, past) == [(None, "started"), (1, "sms_skipped"), (2, "end")]
    assert last(http, t, past, "sms_skipped")["detail"] == {"reason": "appt has passed"}
    assert server.count("outbox", t.org_id) == 2


def test_a_capped_sms_is_deferred_day_by_day_until_the_week_allows_it(server: Server, http: Client) -> None:
    """3 per rolling 7 days: the fourth text is tried each morning until the oldest of the three
    is more than 7 days old."""
    t = server.tenant(WEEKLY)
    [iid] = start(http, t, {"key": "k1", "phone": PHONE})
    server.run_worker()
    for days in (1, 2, 3):
        server.clock.set(START + timedelta(days=days))
        server.run_worker()
    for day in range(6, 11):  # 08:00 each morning, Nov 6 to Nov 10
        server.clock.set(chicago(2026, 11, day, 8, 0))
        server.run_worker()
    deferrals = [e["detail"]["until"] for e in events(http, t, iid) if e["type"] == "sms_deferred"]
    assert deferrals == [z(chicago(2026, 11, d, 8, 0)) for d in range(6, 11)]
    assert [k for k in kinds(http, t, iid) if k[1] not in ("wait", "sms_deferred")] == [
        (None, "started"),
        (1, "sms_queued"),
        (3, "sms_queued"),
        (5, "sms_queued"),
        (7, "sms_queued"),  # Nov 10 08:00: only Nov 3 and 4 are in the last 7 days
    ]
    assert bodies(server, t.org_id) == ["day 0", "day 1", "day 2", "day 3"]


SEND_BEFORE = """
name: Send before
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
  - {name: appt, type: datetime}
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: send_sms, to: phone, body: "see you", send_before: appt}
      - {id: 2, type: end}
"""


WEEKLY = """
name: Weekly
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
flows:
  - id: main
    name: Main
    steps:
      - {id: 1, type: send_sms, to: phone, body: "day 0"}
      - {id: 2, type: wait, duration: 1d}
      - {id: 3, type: send_sms, to: phone, body: "day 1"}
      - {id: 4, type: wait, duration: 1d}
      - {id: 5, type: send_sms, to: phone, body: "day 2"}
      - {id: 6, type: wait, duration: 1d}
      - {id: 7, type: send_sms, to: phone, body: "day 3"}
      - {id: 8, type: wait, duration: 5d}
      - {id: 9, type: send_sms, to: phone, body: "day 8"}
      - {id: 10, type: end}
"""


def test_at_most_three_sms_per_rolling_seven_days(server: Server, http: Client) -> None:
    t = server.tenant(WEEKLY.replace("name: Weekly\n", "name: Weekly\n" + SKIP_WHEN_CAPPED + "\n"))
    [iid] = start(http, t, {"key": "k1", "phone": PHONE})
    server.run_worker()
    for days in (1, 2, 3, 8):
        server.clock.set(START + timedelta(days=days))
        server.run_worker()
    assert [k for k in kinds(http, t, iid) if k[1] != "wait"] == [
        (None, "started"),
        (1, "sms_queued"),
        (3, "sms_queued"),
        (5, "sms_queued"),
        (7, "sms_capped"),
        (9, "sms_queued"),
        (10, "end"),
    ]
    assert last(http, t, iid, "sms_capped")["detail"] == {"limit": "3 per 7 days"}
    assert bodies(server, t.org_id) == ["day 0", "day 1", "day 2", "day 8"]


# ---------------------------------------------------------------- reschedule re-plan, cancel
def example_instance(days_ahead: int, key: str = "APT-1") -> dict[str, str]:
    return {
        "patientId": "100000",
        "patientName": "Ann Example",
        "appointmentId": key,
        "appointmentDateTime": local(START + timedelta(days=days_ahead)),
        "phoneNumber": PHONE,
    }


def test_rescheduling_re_plans_the_reminder_for_the_new_time(server: Server, http: Client) -> None:
    t = server.tenant(EXAMPLE)
    old_time = START + timedelta(days=5)  # Saturday, November 7, 2026 at 10:00 AM
    new_time = START + timedelta(days=10)  # Thursday, November 12, 2026 at 10:00 AM
    [iid] = start(http, t, example_instance(5), key="appointmentId")
    server.run_worker()
    assert kinds(http, t, iid)[-1] == (20, "wait")
    assert last(http, t, iid, "wait")["detail"] == {"until": z(old_time - timedelta(hours=24))}
    assert "November 7" in bodies(server, t.org_id)[0]

    server.clock.advance(timedelta(hours=1))
    body = {
        "flowId": "rescheduled",
        "timeZone": "America/Chicago",
        "instances": [{"parameters": {"appointmentId": "APT-1", "appointmentDateTime": local(new_time)}}],
    }
    r = http.post(t.url("/bulk"), json=body, headers=t.headers)
    assert r.status_code == 204, r.text
    server.run_worker()
    sent_before = server.count("outbox", t.org_id)
    assert sent_before == 2
    assert bodies(server, t.org_id)[1] == (
        "Ann Example, your appointment has moved to Thursday, November 12, 2026 at 10:00 AM."
    )
    sub = last(http, t, iid, "subflow_started")
    assert (sub["flowId"], sub["detail"]) == ("rescheduled", {"changedParameters": ["appointmentDateTime"]})
    assert kinds(http, t, iid)[-1] == (110, "wait")
    assert last(http, t, iid, "wait")["detail"] == {"until": z(new_time - timedelta(hours=24))}

    # The old reminder time passes without a message.
    server.clock.set(old_time - timedelta(hours=24))
    server.run_worker()
    server.clock.set(old_time + timedelta(hours=3))
    server.run_worker()
    assert server.count("outbox", t.org_id) == sent_before
    assert kinds(http, t, iid)[-1] == (110, "wait")

    # The new reminder time sends the reminder, naming the new time.
    nothing_new_until(server, http, t, iid, new_time - timedelta(hours=24))
    rows = outbox(server, t.org_id)
    assert len(rows) == 3
    assert rows[2].body == (
        "Reminder: Ann Example, your appointment is tomorrow, Thursday, November 12, 2026 at 10:00 AM."
    )
    assert (rows[2].flow_id, rows[2].step_id) == ("main", 30)
    server.clock.set(new_time + timedelta(hours=2))
    server.run_worker()
    inst = get(http, t, iid)
    assert inst["status"] == "Completed"
    assert inst["events"][-1]["detail"] == {"outcome": "visit-time-passed"}
    assert inst["parameters"]["appointmentDateTime"] == local(new_time)
    for row in outbox(server, t.org_id)[1:]:
        assert "November 7" not in row.body and "Saturday" not in row.body


def test_cancel_during_a_wait_stops_everything(server: Server, http: Client) -> None:
    t = server.tenant(EXAMPLE)
    [iid] = start(http, t, example_instance(5), key="appointmentId")
    server.run_worker()
    assert kinds(http, t, iid)[-1] == (20, "wait")
    assert http.delete(t.url(f"/{iid}/execution"), headers=t.headers).status_code == 204
    cancelled = events(http, t, iid)
    assert cancelled[-1]["type"] == "cancelled"
    for days in (4, 5, 6, 30):
        server.clock.set(START + timedelta(days=days))
        server.run_worker()
    inst = get(http, t, iid)
    assert inst["status"] == "Cancelled"
    assert inst["events"] == cancelled
    assert server.count("outbox", t.org_id) == 1  # the booking confirmation, sent before the cancel


def test_cancel_while_waiting_for_a_reply_leaves_later_replies_unmatched(
    server: Server, http: Client
) -> None:
    t = server.tenant(REPLY)
    [iid] = waiting(server, http, t, PHONE)
    assert http.delete(t.url(f"/{iid}/execution"), headers=t.headers).status_code == 204
    cancelled = events(http, t, iid)
    got = reply(http, t, PHONE, "C")
    assert (got["matched"], got["instanceId"]) == (False, None)
    server.clock.advance(timedelta(days=3))
    server.run_worker()
    inst = get(http, t, iid)
    assert inst["status"] == "Cancelled"
    assert inst["events"] == cancelled
    assert "answer" not in inst["parameters"]
    assert [tuple(r) for r in inbound(server, t.org_id)] == [(PHONE, "C", None, "api")]
    assert server.count("outbox", t.org_id) == 1


def test_cancel_during_an_http_call_drops_its_result(server: Server, http: Client, remote: Remote) -> None:
    remote.answer(200, {"data": {"status": "active"}}, stall=30)
    t = server.tenant(http_journey(remote, timeout="20s"))
    [iid] = start(http, t, {"key": "k1", "patientName": "Ann", "phone": PHONE})
    worker = threading.Thread(target=server.run_worker)
    worker.start()
    deadline = time.monotonic() + 20
    while not remote.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(remote.requests) == 1  # the call is in flight, outside any transaction
    assert http.delete(t.url(f"/{iid}/execution"), headers=t.headers).status_code == 204
    remote.release.set()
    worker.join(60)
    assert not worker.is_alive()
    server.clock.advance(timedelta(minutes=5))
    server.run_worker()
    inst = get(http, t, iid)
    assert inst["status"] == "Cancelled"
    assert [e["type"] for e in inst["events"]] == ["started", "cancelled"]
    assert "ehrStatus" not in inst["parameters"]
    assert server.count("outbox", t.org_id) == 0
    assert len(remote.requests) == 1


def test_staff_can_list_replies_and_see_the_unmatched_ones(server: Server, http: Client) -> None:
    t = server.tenant(REPLY)
    [iid] = waiting(server, http, t, PHONE)
    reply(http, t, PHONE, "C")
    reply(http, t, "+1 312 555 0199", "who is this?")  # nobody waits for this number
    url = f"/api/orgs/{t.org_id}/replies"
    r = http.get(url, headers=t.headers)
    assert r.status_code == 200, r.text
    listed = r.json()
    assert [(x["body"], x["matched"], x["instanceId"]) for x in listed] == [
        ("who is this?", False, None),
        ("C", True, iid),
    ]
    assert all(x["receivedDateTime"].endswith("Z") and x["source"] == "api" for x in listed)
    only = http.get(url, params={"unmatched": "true"}, headers=t.headers).json()
    assert [(x["from"], x["body"]) for x in only] == [("+13125550199", "who is this?")]
    assert len(http.get(url, params={"limit": 1}, headers=t.headers).json()) == 1


def test_listing_replies_checks_its_input_and_auth(server: Server, http: Client) -> None:
    t = server.tenant(REPLY)
    url = f"/api/orgs/{t.org_id}/replies"
    for params in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"unmatched": "maybe"}):
        r = http.get(url, params=params, headers=t.headers)
        assert r.status_code == 400, (params, r.text)
        assert isinstance(r.json(), list) and r.json()
    assert http.get(url).status_code == 401
    create_only = server.new_token(t.org_id, [accounts.SCOPE_CREATE])
    assert http.get(url, headers={"Authorization": f"Bearer {create_only}"}).status_code == 403
    other = server.tenant(REPLY)
    assert http.get(url, headers=other.headers).status_code == 404
