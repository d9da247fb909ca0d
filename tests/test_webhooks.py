"""Event webhooks: the challenge, signed ordered deliveries, retries, the API and the CLI.

A real server (its own module-scoped one, with a secret key and a fake Twilio), and a real
local HTTP receiver standing in for the clinic's system."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from support.api import trigger_one
from support.cli import JOURNEYS
from support.databases import migrated_sqlite, own_database
from support.fake_twilio import FakeTwilio, twilio_config
from support.journeys import one_sms
from support.keys import strong_key
from support.receivers import WebhookReceiver
from support.server import LOOPBACK_ALLOWED, START, Server

SECRET_KEY = strong_key("test-secret-key-for-webhooks")
SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-auth-token-for-tests"
FROM = "+13125550100"
HOOK_SECRET = "whsec-0123456789abcdef"
REPLAY_WINDOW = 300

SMS = one_sms("Webhook SMS")

WAIT = """
name: Webhook wait
parameters:
  - {name: key, identifier: true}
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: wait, duration: 1d}
      - {id: 20, type: end}
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio(SID, TOKEN) as f:
        yield f


@pytest.fixture(scope="module")
def srv(fake: FakeTwilio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(
        migrated_sqlite(tmp_path_factory.mktemp("webhooks")),
        secret_key=SECRET_KEY,
        twilio_api_base=fake.url,
        outbound_allow=LOOPBACK_ALLOWED,
    )
    yield s
    s.stop()


@pytest.fixture()
def rec() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(HOOK_SECRET, challenge_suffix="\n")
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def _fresh(srv: Server, fake: FakeTwilio) -> None:
    srv.clock.set(START)
    fake.reset()


# ---------------------------------------------------------------- helpers
def sms_tenant(srv: Server) -> Any:
    t = srv.tenant(SMS)
    srv.set_channel(t.org_id, "sms", "twilio", twilio_config(SID, TOKEN, FROM))
    return t


def hooks_url(t: Any, path: str = "") -> str:
    return f"/api/orgs/{t.org_id}/webhooks{path}"


def subscribe(srv: Server, t: Any, rec: WebhookReceiver, types: list[str] | None = None) -> dict[str, Any]:
    body = {"url": rec.url, "secret": HOOK_SECRET, "eventTypes": types or ["*"]}
    r = srv.http.post(hooks_url(t), json=body, headers=t.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def check_signature(post: dict[str, Any], now: datetime) -> None:
    header = post["headers"]["X-Journeys-Signature"]
    parts = dict(p.split("=", 1) for p in header.split(","))
    ts = int(parts["t"])
    expected = hmac.new(HOOK_SECRET.encode(), f"{ts}.".encode() + post["raw"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert abs(now.timestamp() - ts) <= REPLAY_WINDOW
    event = json.loads(post["raw"])
    assert post["headers"]["X-Journeys-Event"] == event["type"]
    assert post["headers"]["X-Journeys-Delivery"] == event["id"]
    assert post["headers"]["Content-Type"] == "application/json"


def deliveries(srv: Server, t: Any, hook_id: str, status: str | None = None) -> list[dict[str, Any]]:
    params = {"status": status} if status else {}
    r = srv.http.get(hooks_url(t, f"/{hook_id}/deliveries"), params=params, headers=t.headers)
    assert r.status_code == 200, r.text
    return list(r.json())


# ---------------------------------------------------------------- verification
@pytest.mark.same_on_every_database
def test_create_challenges_the_endpoint_and_lists_without_the_secret(
    srv: Server, rec: WebhookReceiver
) -> None:
    t = srv.tenant(WAIT)
    hook = subscribe(srv, t, rec, ["instance.started", "instance.completed"])
    assert hook["verified"] is True and hook["eventTypes"] == ["instance.started", "instance.completed"]
    assert len(rec.challenges) == 1 and len(rec.challenges[0]) == 32
    r = srv.http.get(hooks_url(t), headers=t.headers)
    assert r.status_code == 200 and [h["id"] for h in r.json()] == [hook["id"]]
    assert HOOK_SECRET not in r.text
    with srv.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT secret_encrypted FROM webhook_subscriptions")).scalars().all()
    assert all(HOOK_SECRET not in s for s in stored)


@pytest.mark.same_on_every_database
def test_a_wrong_answer_leaves_the_subscription_unverified_and_no_events_flow(
    srv: Server, rec: WebhookReceiver
) -> None:
    t = srv.tenant(WAIT)
    rec.wrong = True
    r = srv.http.post(
        hooks_url(t), json={"url": rec.url, "secret": HOOK_SECRET, "eventTypes": ["*"]}, headers=t.headers
    )
    assert r.status_code == 400
    assert "not verified" in r.json()[0] and "HMAC-SHA256" in r.json()[0]
    [hook] = srv.http.get(hooks_url(t), headers=t.headers).json()
    assert hook["verified"] is False
    trigger_one(srv.http, t, {})
    srv.run_worker()
    assert srv.count("webhook_deliveries", t.org_id) == 0 and rec.posts == []
    # Fixed endpoint: verify again, and events flow from then on.
    rec.wrong = False
    r = srv.http.post(hooks_url(t, f"/{hook['id']}/verify"), headers=t.headers)
    assert r.status_code == 200 and r.json()["verified"] is True
    iid = trigger_one(srv.http, t, {})
    srv.run_worker()
    assert [e["type"] for e in rec.ok_events()] == ["instance.started", "step.executed"]
    assert {e["instanceId"] for e in rec.ok_events()} == {iid}


@pytest.mark.same_on_every_database
def test_unreachable_endpoint_is_a_clear_400(srv: Server) -> None:
    t = srv.tenant(WAIT)
    body = {"url": "http://127.0.0.1:9/nothing", "secret": HOOK_SECRET, "eventTypes": ["*"]}
    r = srv.http.post(hooks_url(t), json=body, headers=t.headers)
    assert r.status_code == 400 and "could not be reached" in r.json()[0]


# ---------------------------------------------------------------- deliveries
@pytest.mark.same_on_every_database
def test_events_are_signed_and_in_order(srv: Server, rec: WebhookReceiver, fake: FakeTwilio) -> None:
    t = sms_tenant(srv)
    hook = subscribe(srv, t, rec)
    iid = trigger_one(srv.http, t, {"patientName": "Ann", "phone": "(312) 555-0142"})
    srv.run_worker()
    events = rec.ok_events(iid)
    assert [e["type"] for e in events] == [
        "instance.started",
        "step.executed",  # 10: sms queued
        "step.executed",  # 20: end
        "instance.completed",
        "message.sent",  # the dispatcher hands the SMS to Twilio after the batch
    ]
    assert [e["stepId"] for e in events] == [None, 10, 20, 20, 10]
    for post in rec.posts:
        check_signature(post, srv.clock.now())
    started = events[0]
    assert started["orgId"] == t.org_id and started["flowId"] == "main"
    assert {e["journeyId"] for e in events} == {t.journey_id}
    assert started["occurredDateTime"].endswith("Z")
    # No PHI in any payload.
    raw = b"".join(p["raw"] for p in rec.posts)
    # (the number itself, not any "555": random ids may contain that)
    assert b"Ann" not in raw and b"3125550142" not in raw and b"555-0142" not in raw
    listed = deliveries(srv, t, hook["id"])
    assert len(listed) == 5 and all(d["status"] == "delivered" and d["attempts"] == 1 for d in listed)
    assert all(d["lastStatusCode"] == 200 and d["deliveredDateTime"] for d in listed)


@pytest.mark.same_on_every_database
def test_filtered_types_only(srv: Server, rec: WebhookReceiver) -> None:
    t = srv.tenant(WAIT)
    subscribe(srv, t, rec, ["instance.completed"])
    trigger_one(srv.http, t, {})
    srv.run_worker()
    assert rec.posts == []
    srv.clock.advance(timedelta(days=1, seconds=1))
    srv.run_worker()
    assert [e["type"] for e in rec.ok_events()] == ["instance.completed"]


@pytest.mark.same_on_every_database
def test_failures_retry_with_backoff_and_keep_the_order(srv: Server, rec: WebhookReceiver) -> None:
    t = srv.tenant(WAIT)
    hook = subscribe(srv, t, rec)
    rec.fail = 3
    iid = trigger_one(srv.http, t, {})
    srv.run_worker()
    assert len(rec.posts) == 1 and rec.posts[0]["failed"]  # the second event waits for the first
    [first] = deliveries(srv, t, hook["id"], "pending")[-1:]
    assert first["type"] == "instance.started" and first["attempts"] == 1
    assert first["lastStatusCode"] == 500 and first["lastError"] == "HTTP 500"
    srv.run_worker()
    assert len(rec.posts) == 1  # not due yet: backoff
    for expected_posts in (2, 3):
        srv.clock.advance(timedelta(hours=1, minutes=15))
        srv.run_worker()
        assert len(rec.posts) == expected_posts
    srv.clock.advance(timedelta(hours=1, minutes=15))
    srv.run_worker()
    assert [e["type"] for e in rec.ok_events(iid)] == ["instance.started", "step.executed"]
    [started] = [d for d in deliveries(srv, t, hook["id"]) if d["type"] == "instance.started"]
    assert started["status"] == "delivered" and started["attempts"] == 4


@pytest.mark.same_on_every_database
def test_backoff_grows(srv: Server, rec: WebhookReceiver) -> None:
    t = srv.tenant(WAIT)
    hook = subscribe(srv, t, rec, ["instance.started"])
    rec.fail = 100
    trigger_one(srv.http, t, {})
    srv.run_worker()
    gaps = []
    for _ in range(4):
        [d] = deliveries(srv, t, hook["id"])
        due = datetime.fromisoformat(d["nextAttemptDateTime"].replace("Z", "+00:00"))
        gaps.append((due - srv.clock.now()).total_seconds())
        srv.clock.set(due)
        srv.run_worker()
    assert 20 <= gaps[0] <= 40
    assert all(b > a for a, b in zip(gaps, gaps[1:], strict=False))


@pytest.mark.same_on_every_database
def test_gives_up_after_24_hours_and_8_attempts(srv: Server, rec: WebhookReceiver) -> None:
    t = srv.tenant(WAIT)
    hook = subscribe(srv, t, rec, ["instance.started"])
    rec.fail = 1000
    trigger_one(srv.http, t, {})
    srv.run_worker()
    for _ in range(40):
        srv.clock.advance(timedelta(hours=1, minutes=15))
        srv.run_worker()
    [d] = deliveries(srv, t, hook["id"], "failed")
    assert d["attempts"] >= 8 and d["lastStatusCode"] == 500
    sent = len(rec.posts)
    srv.clock.advance(timedelta(hours=3))
    srv.run_worker()
    assert len(rec.posts) == sent  # given up: no more attempts


@pytest.mark.same_on_every_database
def test_cancel_sends_instance_cancelled(srv: Server, rec: WebhookReceiver) -> None:
    t = srv.tenant(WAIT)
    subscribe(srv, t, rec, ["instance.cancelled"])
    iid = trigger_one(srv.http, t, {})
    srv.run_worker()
    r = srv.http.delete(t.url(f"/{iid}/execution"), headers=t.headers)
    assert r.status_code in (200, 204), r.text
    srv.run_worker()
    assert [e["type"] for e in rec.ok_events(iid)] == ["instance.cancelled"]


@pytest.mark.same_on_every_database
def test_delete_stops_events(srv: Server, rec: WebhookReceiver) -> None:
    t = srv.tenant(WAIT)
    hook = subscribe(srv, t, rec)
    r = srv.http.delete(hooks_url(t, f"/{hook['id']}"), headers=t.headers)
    assert r.status_code == 204
    assert srv.http.get(hooks_url(t), headers=t.headers).json() == []
    trigger_one(srv.http, t, {})
    srv.run_worker()
    assert rec.posts == []
    assert srv.http.delete(hooks_url(t, f"/{hook['id']}"), headers=t.headers).status_code == 404


# ---------------------------------------------------------------- bad inputs and auth
@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"url": "ftp://x.example/h", "secret": HOOK_SECRET, "eventTypes": ["*"]}, "http or https"),
        ({"url": "not a url", "secret": HOOK_SECRET, "eventTypes": ["*"]}, "http or https"),
        ({"url": "https://x.example/h", "eventTypes": ["*"]}, "secret is required"),
        ({"url": "https://x.example/h", "secret": "short", "eventTypes": ["*"]}, "16 to"),
        ({"url": "https://x.example/h", "secret": HOOK_SECRET, "eventTypes": ["sms.bogus"]}, "sms.bogus"),
        ({"url": "https://x.example/h", "secret": HOOK_SECRET, "eventTypes": []}, "eventTypes"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_create_rejects_bad_input(srv: Server, body: Any, needle: str) -> None:
    t = srv.tenant(WAIT)
    r = srv.http.post(hooks_url(t), json=body, headers=t.headers)
    assert r.status_code == 400, r.text
    assert any(needle in e for e in r.json()), r.json()
    assert srv.count("webhook_subscriptions", t.org_id) == 0


@pytest.fixture(scope="module")
def srv_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a secret key on the database the suite runs on (`srv` is SQLite only)."""
    with own_database(tmp_path_factory.mktemp("webhooks-db"), "journeys.db") as url:
        s = Server(url, secret_key=SECRET_KEY)
        yield s
        s.stop()
        s.engine.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://x.example/h\u0000", "url must not contain NUL characters (\\u0000)"),
        ("https://x.exa\u0000mple/h", "url must not contain NUL characters (\\u0000)"),
        ("https://x.example/h\r\nX-Injected: 1", "url must not contain control characters"),
        ("https://x.example/" + "h" * 2048, "url must be at most 2048 characters long"),
    ],
)
def test_create_rejects_a_url_that_cannot_be_stored_or_called(srv_db: Server, url: str, message: str) -> None:
    # NUL was a 500 on PostgreSQL and, on SQLite, a stored subscription that could never work.
    t = srv_db.tenant(WAIT)
    body = {"url": url, "secret": HOOK_SECRET, "eventTypes": ["*"]}
    r = srv_db.http.post(hooks_url(t), json=body, headers=t.headers)
    assert r.status_code == 400, r.text
    assert [e for e in r.json() if e.startswith(message)], r.json()
    assert srv_db.count("webhook_subscriptions", t.org_id) == 0


def test_nul_in_a_webhook_id_or_query_is_a_clear_400(srv_db: Server) -> None:
    t = srv_db.tenant(WAIT)
    nul = "must not contain NUL characters (\\u0000)"
    for method, path in [("DELETE", "/a%00"), ("POST", "/a%00/verify"), ("GET", "/a%00/deliveries")]:
        r = srv_db.http.request(method, hooks_url(t, path), headers=t.headers)
        assert r.status_code == 400 and r.json() == [f"webhookId: {nul}"], r.text
    r = srv_db.http.get(hooks_url(t, "/a/deliveries"), params={"status": "x\u0000"}, headers=t.headers)
    assert r.status_code == 400 and r.json() == [f"query parameter 'status': {nul}"], r.text


@pytest.mark.same_on_every_database
def test_unknown_ids_and_bad_status(srv: Server) -> None:
    t = srv.tenant(WAIT)
    for method, path in [
        ("DELETE", "/nope"),
        ("POST", "/nope/verify"),
        ("GET", "/nope/deliveries"),
    ]:
        r = srv.http.request(method, hooks_url(t, path), headers=t.headers)
        assert r.status_code == 404 and "not found" in r.json()[0]
    r = srv.http.get(hooks_url(t, "/nope/deliveries"), params={"status": "weird"}, headers=t.headers)
    assert r.status_code == 400


@pytest.mark.same_on_every_database
def test_auth(srv: Server) -> None:
    t = srv.tenant(WAIT)
    other = srv.tenant(WAIT)
    read_only = {"Authorization": f"Bearer {srv.new_token(t.org_id, ['read.journey_instances'])}"}
    routes = [("POST", ""), ("GET", ""), ("DELETE", "/x"), ("POST", "/x/verify"), ("GET", "/x/deliveries")]
    for method, path in routes:
        assert srv.http.request(method, hooks_url(t, path)).status_code == 401
        assert srv.http.request(method, hooks_url(t, path), headers=other.headers).status_code == 404
    for method, path in [("POST", ""), ("DELETE", "/x"), ("POST", "/x/verify")]:
        assert srv.http.request(method, hooks_url(t, path), json={}, headers=read_only).status_code == 403
    assert srv.http.get(hooks_url(t), headers=read_only).status_code == 200


# ---------------------------------------------------------------- CLI
def run_cli(srv: Server, *args: str, secret_key: str | None = SECRET_KEY) -> subprocess.CompletedProcess[str]:

    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
    env["JOURNEYS_OUTBOUND_ALLOW"] = LOOPBACK_ALLOWED
    if secret_key:
        env["JOURNEYS_SECRET_KEY"] = secret_key
    return subprocess.run(
        [*JOURNEYS, "--db", srv.settings.database_url, "webhook", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.same_on_every_database
def test_cli(srv: Server, rec: WebhookReceiver) -> None:
    t = srv.tenant(WAIT)
    p = run_cli(
        srv,
        "create",
        "--org",
        t.org_id,
        "--url",
        rec.url,
        "--secret",
        HOOK_SECRET,
        "--events",
        "instance.started,instance.completed",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    hook = json.loads(p.stdout)
    assert hook["verified"] and hook["eventTypes"] == ["instance.started", "instance.completed"]
    assert HOOK_SECRET not in p.stdout + p.stderr
    listed = json.loads(run_cli(srv, "list", "--org", t.org_id, "--json").stdout)
    assert [h["id"] for h in listed] == [hook["id"]]
    trigger_one(srv.http, t, {})
    srv.run_worker()
    rows = json.loads(run_cli(srv, "deliveries", "--org", t.org_id, "--json").stdout)
    assert [(d["type"], d["status"], d["lastStatusCode"]) for d in rows] == [
        ("instance.started", "delivered", 200)
    ]
    assert (
        run_cli(srv, "deliveries", "--org", t.org_id, "--status", "failed", "--json").stdout.strip() == "[]"
    )
    verified = run_cli(srv, "verify", hook["id"], "--org", t.org_id)
    assert (verified.returncode, verified.stderr) == (0, "")
    assert verified.stdout == f"webhook {hook['id']} verified\n"
    deleted = run_cli(srv, "delete", hook["id"], "--org", t.org_id)
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, f"deleted webhook {hook['id']}\n", "")
    assert json.loads(run_cli(srv, "list", "--org", t.org_id, "--json").stdout) == []


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["create", "--url", "ftp://x/h", "--secret", HOOK_SECRET], "http or https"),
        (
            ["create", "--url", "https://x.example/h", "--secret", HOOK_SECRET, "--events", "nope"],
            "unknown event types: nope",
        ),
        (["create", "--url", "https://x.example/h", "--secret", ""], "secret is required"),
        (["delete", "missing"], "not found"),
        (["verify", "missing"], "not found"),
        (["deliveries", "--status", "odd"], "status must be one of"),
        (["deliveries", "--webhook", "missing"], "not found"),
    ],
)
def test_cli_bad_input(srv: Server, args: list[str], needle: str) -> None:
    t = srv.tenant(WAIT)
    p = run_cli(srv, *args, "--org", t.org_id)
    assert p.returncode != 0 and needle in p.stderr, p.stderr


@pytest.mark.same_on_every_database
def test_cli_unknown_org_and_missing_secret_key(srv: Server, rec: WebhookReceiver) -> None:
    p = run_cli(srv, "list", "--org", "no-such-org")
    assert p.returncode == 1 and "unknown org" in p.stderr
    t = srv.tenant(WAIT)
    p = run_cli(srv, "create", "--org", t.org_id, "--url", rec.url, "--secret", HOOK_SECRET, secret_key=None)
    assert p.returncode == 1 and "JOURNEYS_SECRET_KEY" in p.stderr
