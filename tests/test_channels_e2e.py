"""The channels, end to end over real HTTP: a trigger, the SMS question handed to a fake Twilio,
the patient's signed inbound "C", the confirm branch with its thank-you SMS, and the signed
webhook events the clinic's receiver gets, in order.

A real server (its own database, a secret key, the fake Twilio's API base, its own URL as the
public one that Twilio signs), the fake Twilio REST server, and a local webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from support.api import trigger_one
from support.clocks import LaggingClock
from support.databases import migrated_sqlite
from support.fake_twilio import FakeTwilio, twilio_config
from support.keys import strong_key
from support.receivers import WebhookReceiver
from support.server import LOOPBACK_ALLOWED, START, Server, Tenant
from twilio.request_validator import RequestValidator

from journeys.engine.worker import Worker
from journeys.store.db import read_only
from journeys.store.tables import outbox

SECRET_KEY = strong_key("e2e-test-secret-key")
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "e2e-twilio-auth-token"
FROM = "+13125550199"
PATIENT = "+13125550142"
HOOK_SECRET = "whsec-e2e-0123456789abcdef"
REPLAY_WINDOW = 300
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

CONFIRM = """
name: Confirm by SMS
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
        timeout: 2d
        replies:
          - {outcome: confirmed, next: 30}
        on_timeout: 50
      - {id: 30, type: send_sms, to: phone, body: "Thank you, your appointment is confirmed."}
      - {id: 40, type: end, outcome: confirmed}
      - {id: 50, type: end, outcome: no_reply}
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as f:
        yield f


@pytest.fixture(scope="module")
def srv(fake: FakeTwilio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(
        migrated_sqlite(tmp_path_factory.mktemp("channels_e2e")),
        public_url_is_own=True,
        secret_key=SECRET_KEY,
        twilio_api_base=fake.url,
        outbound_allow=LOOPBACK_ALLOWED,
    )
    s.clock.set(START)
    yield s
    s.stop()
    s.engine.dispose()


@pytest.fixture()
def rec() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(HOOK_SECRET)
    yield r
    r.stop()


# ---------------------------------------------------------------- helpers
def configure_twilio(srv: Server, org_id: str) -> None:
    srv.set_channel(org_id, "sms", "twilio", twilio_config(ACCOUNT_SID, AUTH_TOKEN, FROM))


def subscribe_all(srv: Server, t: Tenant, rec: WebhookReceiver) -> None:
    body = {"url": rec.url, "secret": HOOK_SECRET, "eventTypes": ["*"]}
    r = srv.http.post(f"/api/orgs/{t.org_id}/webhooks", json=body, headers=t.headers)
    assert r.status_code == 201, r.text
    assert r.json()["verified"] is True


def post_inbound(srv: Server, org_id: str, from_: str, body: str) -> Any:
    """POST as Twilio does: form-encoded, signed with the auth token over the public URL."""
    url = f"{srv.settings.public_base_url}/channels/twilio/{org_id}/inbound"
    params = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": ACCOUNT_SID,
        "From": from_,
        "To": FROM,
        "Body": body,
        "NumMedia": "0",
    }
    sig = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    return srv.http.post(url, data=params, headers={"X-Twilio-Signature": sig})


def sent_bodies(fake: FakeTwilio) -> list[tuple[str, str, int]]:
    return [
        (r.form.get("To", ""), r.form.get("Body", ""), r.response_status)
        for r in fake.requests
        if r.path == fake.messages_path
    ]


def check_signature(post: dict[str, Any], now: datetime) -> dict[str, Any]:
    header = post["headers"]["X-Journeys-Signature"]
    parts = dict(p.split("=", 1) for p in header.split(","))
    ts = int(parts["t"])
    expected = hmac.new(HOOK_SECRET.encode(), f"{ts}.".encode() + post["raw"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert abs(now.timestamp() - ts) <= REPLAY_WINDOW
    event = dict(json.loads(post["raw"]))
    assert post["headers"]["X-Journeys-Event"] == event["type"]
    return event


def in_order(types: list[str], expected: list[str]) -> bool:
    """`expected` is a subsequence of `types`."""
    it = iter(types)
    return all(any(t == e for t in it) for e in expected)


# ---------------------------------------------------------------- the journey
@pytest.mark.same_on_every_database
def test_sms_question_signed_reply_confirm_branch_and_signed_webhooks_in_order(
    srv: Server, fake: FakeTwilio, rec: WebhookReceiver
) -> None:
    t = srv.tenant(CONFIRM)
    configure_twilio(srv, t.org_id)
    subscribe_all(srv, t, rec)
    fake.reset()

    iid = trigger_one(srv.http, t, {"phone": "(312) 555-0142"})
    srv.run_worker()
    assert sent_bodies(fake) == [(PATIENT, "Reply C to confirm", 201)]
    assert fake.requests[0].form["From"] == FROM

    r = post_inbound(srv, t.org_id, PATIENT, "C")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/xml")
    assert r.text == EMPTY_TWIML

    srv.run_worker()
    assert sent_bodies(fake) == [
        (PATIENT, "Reply C to confirm", 201),
        (PATIENT, "Thank you, your appointment is confirmed.", 201),
    ]
    got = srv.http.get(t.url(f"/{iid}"), headers=t.headers)
    assert got.status_code == 200, got.text
    instance = got.json()
    assert instance["status"] == "Completed"
    [received] = [e for e in instance["events"] if e["type"] == "reply_received"]
    assert received["stepId"] == 20
    assert "confirmed" in json.dumps(received)
    assert [e["stepId"] for e in instance["events"] if e["type"] == "end"] == [40]

    # Every delivery handed over (a last pass if the dispatcher's events came after the batch).
    srv.run_worker()
    now = srv.clock.now()
    events = [check_signature(p, now) for p in rec.posts]
    mine = [e for e in events if e["instanceId"] == iid]
    types = [e["type"] for e in mine]
    assert types[0] == "instance.started"
    assert types.count("instance.started") == 1 and types.count("instance.completed") == 1
    assert types.count("reply.received") == 1 and types.count("message.sent") == 2
    assert in_order(
        types,
        [
            "instance.started",
            "step.executed",
            "message.sent",  # the question
            "reply.received",
            "instance.completed",
        ],
    ), types
    [reply] = [e for e in mine if e["type"] == "reply.received"]
    assert reply["stepId"] == 20 and reply["detail"]["outcome"] == "confirmed"
    [completed] = [e for e in mine if e["type"] == "instance.completed"]
    assert completed["stepId"] == 40 and completed["detail"]["outcome"] == "confirmed"
    sent = [e for e in mine if e["type"] == "message.sent"]
    assert [e["stepId"] for e in sent] == [10, 30]
    assert types.index("message.sent") < types.index("reply.received")
    # Each event delivered exactly once, and no PHI in any payload.
    assert len({e["id"] for e in events}) == len(events)
    raw = b"".join(p["raw"] for p in rec.posts)
    for phi in (PATIENT[2:], "555-0142", FROM[2:], "Reply C", "Thank you"):
        assert phi.encode() not in raw


@pytest.mark.same_on_every_database
def test_queued_sms_of_a_cancelled_instance_never_reaches_the_provider(srv: Server, fake: FakeTwilio) -> None:
    t = srv.tenant(CONFIRM)
    configure_twilio(srv, t.org_id)
    srv.run_worker()
    fake.reset()
    cancelled_id = trigger_one(srv.http, t, {"phone": "(312) 555-0101"})
    control_id = trigger_one(srv.http, t, {"phone": "(312) 555-0102"})
    lagging = LaggingClock(srv.clock.now())  # a second worker of the deployment: its key too
    result = Worker(srv.engine, lagging, batch_size=10_000, vault=srv.worker.vault).run_batch()
    assert result.claimed >= 2 and result.delivered == 0
    assert sorted((m["instance_id"], m["status"]) for m in outbox_rows(srv, t.org_id)) == sorted(
        [(cancelled_id, "queued"), (control_id, "queued")]
    )

    r = srv.http.delete(t.url(f"/{cancelled_id}/execution"), headers=t.headers)
    assert r.status_code == 204, r.text
    rows = {m["instance_id"]: m for m in outbox_rows(srv, t.org_id)}
    assert rows[cancelled_id]["status"] == "dropped"
    assert rows[cancelled_id]["last_error"] == "instance cancelled"
    assert rows[control_id]["status"] == "queued"

    srv.run_worker()  # the delivery pass sends what is queued, and only that
    rows = {m["instance_id"]: m for m in outbox_rows(srv, t.org_id)}
    assert rows[cancelled_id]["status"] == "dropped" and rows[cancelled_id]["sent_at"] is None
    assert rows[control_id]["status"] == "sent"
    assert sent_bodies(fake) == [("+13125550102", "Reply C to confirm", 201)]
    r = srv.http.get(t.url(f"/{cancelled_id}"), headers=t.headers)
    assert [(e["type"], e["stepId"]) for e in r.json()["events"]] == [
        ("started", None),
        ("sms_queued", 10),
        ("waiting_for_reply", 20),
        ("cancelled", None),
    ]


def outbox_rows(srv: Server, org_id: str) -> list[dict[str, Any]]:
    with read_only(srv.engine) as conn:
        q = sa.select(outbox).where(outbox.c.org_id == org_id).order_by(outbox.c.created_at, outbox.c.step_id)
        return [dict(r) for r in conn.execute(q).mappings()]


RESCHEDULE = """
name: Reschedule drops the old text
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
  - {name: appt, type: datetime}
frequency_cap: null
send_window: null
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: send_sms, to: phone, body: "See you {{ appt }}"}
      - {id: 20, type: wait, duration: 1d}
  - id: rescheduled
    name: Rescheduled
    steps:
      - {id: 100, type: send_sms, to: phone, body: "Moved to {{ appt }}"}
      - {id: 110, type: wait, duration: 1d}
"""


@pytest.fixture()
def any_db_srv(fake: FakeTwilio, database_url: str) -> Iterator[Server]:
    """A server with a Twilio provider on the suite's database (SQLite or PostgreSQL)."""
    s = Server(database_url, public_url_is_own=True, secret_key=SECRET_KEY, twilio_api_base=fake.url)
    s.clock.set(START)
    yield s
    s.stop()


def test_a_reschedule_records_the_queued_text_it_drops_on_the_timeline(
    any_db_srv: Server, fake: FakeTwilio
) -> None:
    """A text queued (not yet sent) when the appointment moves was written with the old time: it
    is dropped, never sent, and the instance's timeline says so (sms_dropped, with the reason)."""
    srv = any_db_srv
    t = srv.tenant(RESCHEDULE)
    configure_twilio(srv, t.org_id)
    fake.reset()
    iid = trigger_one(srv.http, t, {"phone": "(312) 555-0103", "appt": "2026-11-20 09:00"})
    lagging = LaggingClock(srv.clock.now())  # a second worker of the deployment: its key too
    result = Worker(srv.engine, lagging, batch_size=10_000, vault=srv.worker.vault).run_batch()
    assert result.claimed >= 1 and result.delivered == 0
    [old] = outbox_rows(srv, t.org_id)
    assert old["status"] == "queued"

    key = srv.http.get(t.url(f"/{iid}"), headers=t.headers).json()["parameters"]["key"]
    body = {
        "flowId": "rescheduled",
        "timeZone": "America/Chicago",
        "instances": [{"parameters": {"key": key, "appt": "2026-11-21 09:00"}}],
    }
    r = srv.http.post(t.url("/bulk"), json=body, headers=t.headers)
    assert r.status_code == 204, r.text
    srv.run_worker()
    rows = {m["message_id"]: m for m in outbox_rows(srv, t.org_id)}
    assert (rows[old["message_id"]]["status"], rows[old["message_id"]]["last_error"]) == (
        "dropped",
        "superseded by a subflow",
    )
    assert [b for _, b, _ in sent_bodies(fake)] == ["Moved to Saturday, November 21, 2026 at 9:00 AM"]
    events = srv.http.get(t.url(f"/{iid}"), headers=t.headers).json()["events"]
    assert [(e["type"], e["stepId"]) for e in events] == [
        ("started", None),
        ("sms_queued", 10),
        ("wait", 20),
        ("subflow_started", None),
        ("sms_dropped", 10),
        ("sms_queued", 100),
        ("wait", 110),
        ("sms_sent", 100),  # recorded by the delivery pass, after the batch
    ]
    dropped = [e for e in events if e["type"] == "sms_dropped"][0]
    assert dropped["detail"] == {"messageId": old["message_id"], "reason": "superseded by a subflow"}
    assert dropped["flowId"] == "main"
