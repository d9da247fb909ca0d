"""Opt-outs managed by staff (journeys extensions): GET/POST /api/orgs/{orgId}/opt-outs, DELETE
/api/orgs/{orgId}/opt-outs/{phone} and `journeys optout list|add|remove` — adding one has a
STOP's effects, removing one a START's, each change records its source and time; and consent
keywords (STOP, START, HELP …) no longer wait in the "needs a human" unmatched replies.

A real server with its own database (SQLite, or PostgreSQL with JOURNEYS_TEST_DATABASE=
postgresql), Twilio's signed webhooks and a fake Twilio REST server, as in test_consent; the
CLI runs as a subprocess against the same database."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.cli import JOURNEYS, clean_env
from support.consent import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    OTHER_PHONE,
    PHONE,
    REPLY,
    TWILIO,
    TWO_SENDS,
    ConsentServer,
    events,
    kinds,
    post_inbound,
    sms_to,
    start,
)
from support.databases import make_postgres_database, own_database, require_postgres
from support.fake_twilio import FakeTwilio
from support.server import START, Tenant

from journeys.store.db import create_db_engine
from journeys.store.migrate import upgrade

BAD_PHONE = "phone: must be a phone number with its country code (e.g. +13125550100) or 10 digits"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as f:
        yield f


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, fake: FakeTwilio) -> Iterator[ConsentServer]:
    with own_database(tmp_path_factory.mktemp("opt_outs"), "journeys.db") as url:
        server = ConsentServer(url, fake.url)
        yield server
        server.stop()
        server.engine.dispose()


@pytest.fixture(autouse=True)
def _start_clock(srv: ConsentServer, fake: FakeTwilio) -> None:
    srv.clock.set(START)
    fake.reset()


# ---------------------------------------------------------------- helpers
def url(t: Tenant, path: str = "") -> str:
    return f"/api/orgs/{t.org_id}/opt-outs{path}"


def listed(srv: ConsentServer, t: Tenant, **params: Any) -> list[dict[str, Any]]:
    r = srv.http.get(url(t), params=params, headers=t.headers)
    assert r.status_code == 200, r.text
    return list(r.json())


def consent_rows(srv: ConsentServer, org_id: str) -> list[tuple[Any, ...]]:
    """(number, status, keyword, source, reason) of each of the org's consent records, opened:
    the registry keeps a number's blind index, and the number and staff's note sealed."""
    rows = srv.rows(
        "SELECT phone, number, status, keyword, source, reason FROM sms_consent WHERE org_id = :o", org_id
    )
    phi = srv.worker.vault.org(org_id)
    return sorted(
        (
            phi.open(r.number) if r.number else r.phone,
            r.status,
            r.keyword,
            r.source,
            None if r.reason is None else phi.open(r.reason),
        )
        for r in rows
    )


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run_cli(srv: ConsentServer, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line of the server's deployment: its database and secret key."""
    return subprocess.run(
        [*JOURNEYS, "--db", srv.settings.database_url, *args],
        env=clean_env(JOURNEYS_SECRET_KEY=srv.settings.secret_key or ""),
        capture_output=True,
        text=True,
        timeout=120,
    )


def waiting_and_queued(srv: ConsentServer, fake: FakeTwilio) -> tuple[Tenant, Tenant, str, str]:
    """An org with Twilio: one instance waiting for a reply from PHONE (journey REPLY), and one
    whose SMS to PHONE is still queued (journey TWO_SENDS; Twilio failed it once, the retry is
    later). Returns the org's tenant of each journey and the two instances."""
    t = srv.tenant(REPLY, TWILIO)
    [waiting] = start(srv, t, {"key": "w1", "phone": PHONE})
    srv.run_worker()
    assert kinds(srv, t, waiting)[-1] == (20, "waiting_for_reply")
    two = srv.another_journey(t, TWO_SENDS)
    fake.fail_next(1, status=500)
    [queued] = start(srv, two, {"key": "q1", "phone": PHONE})
    srv.run_worker()
    assert [(r.body, r.status) for r in sms_to(srv, t.org_id, PHONE)][-1] == ("first", "queued")
    return t, two, waiting, queued


# ---------------------------------------------------------------- the API
def test_adding_an_opt_out_has_the_effects_of_a_stop(srv: ConsentServer, fake: FakeTwilio) -> None:
    ask, t, waiting, queued = waiting_and_queued(srv, fake)
    srv.clock.advance(timedelta(minutes=1))
    added_at = srv.clock.now()
    body = {"phone": "(312) 555-0100", "reason": "asked at the front desk"}
    r = srv.http.post(url(t), json=body, headers=t.headers)
    assert r.status_code == 201, r.text
    record = {
        "phone": PHONE,
        "optedOut": True,
        "source": "api",
        "keyword": None,
        "reason": "asked at the front desk",
        "updatedDateTime": z(added_at),
    }
    assert r.json() == record
    # The queued SMS is dropped and recorded; both instances are told (and go on).
    assert [(r.body, r.status, r.last_error) for r in sms_to(srv, t.org_id, PHONE)][-1] == (
        "first",
        "dropped",
        "the number opted out",
    )
    assert [(e["type"], e["stepId"], e["detail"]) for e in events(srv, t, queued)][-2:] == [
        ("sms_skipped", 10, {"messageId": events(srv, t, queued)[-2]["detail"]["messageId"],
                             "reason": "the number opted out"}),
        ("opted_out", None, {"source": "api"}),
    ]  # fmt: skip
    told = [(e["type"], e["detail"]) for e in events(srv, ask, waiting)]
    assert told[-1] == ("opted_out", {"source": "api"})
    assert consent_rows(srv, t.org_id) == [(PHONE, "opted_out", None, "api", "asked at the front desk")]

    # No SMS to the number afterwards; the retry of the dropped one never happens.
    sent = len(fake.requests)
    srv.clock.set(START + timedelta(days=1, minutes=5))
    srv.run_worker()
    assert kinds(srv, t, queued)[-3:] == [(None, "opted_out"), (30, "sms_skipped"), (40, "end")]
    assert len(fake.requests) == sent

    # Adding it again changes nothing (no new events, the record as it was).
    timeline = events(srv, ask, waiting)
    r = srv.http.post(url(t), json={"phone": "+1 312 555 0100", "reason": "again"}, headers=t.headers)
    assert r.status_code == 200 and r.json() == record
    assert events(srv, ask, waiting) == timeline
    assert listed(srv, t) == [record]
    assert listed(srv, t, phone="3125550100") == [record]
    assert listed(srv, t, phone=OTHER_PHONE) == []


def test_removing_an_opt_out_is_a_start(srv: ConsentServer) -> None:
    t = srv.tenant(TWO_SENDS, TWILIO)
    assert post_inbound(srv, t.org_id, PHONE, "Stop").status_code == 200
    assert listed(srv, t) == [
        {
            "phone": PHONE,
            "optedOut": True,
            "source": "sms",
            "keyword": "STOP",
            "reason": None,
            "updatedDateTime": z(START),
        }
    ]
    srv.clock.advance(timedelta(hours=1))
    r = srv.http.delete(url(t, "/%2B13125550100"), headers=t.headers)  # "+13125550100", encoded
    assert r.status_code == 204 and r.content == b""
    assert listed(srv, t) == []
    assert consent_rows(srv, t.org_id) == [(PHONE, "opted_in", None, "api", None)]
    r = srv.http.delete(url(t, "/3125550100"), headers=t.headers)
    assert r.status_code == 404 and r.json() == ["that phone number is not opted out"]
    # Sends resume.
    [iid] = start(srv, t, {"key": "k1", "phone": PHONE})
    srv.run_worker()
    assert kinds(srv, t, iid)[-2:] == [(10, "sms_queued"), (20, "wait")]


def test_opt_outs_are_per_org(srv: ConsentServer) -> None:
    t = srv.tenant(TWO_SENDS)
    other = srv.tenant(TWO_SENDS)
    r = srv.http.post(url(t), json={"phone": PHONE}, headers=t.headers)
    assert r.status_code == 201 and r.json()["reason"] is None
    assert listed(srv, other) == []
    r = srv.http.delete(url(other, f"/{PHONE}"), headers=other.headers)
    assert r.status_code == 404
    assert [x["phone"] for x in listed(srv, t)] == [PHONE]


@pytest.mark.parametrize(
    "body, messages",
    [
        ({}, [BAD_PHONE]),
        ({"phone": None}, [BAD_PHONE]),
        ({"phone": "12"}, [BAD_PHONE]),
        ({"phone": "call me"}, [BAD_PHONE]),
        ({"phone": 3125550100}, [BAD_PHONE]),
        ({"phone": "+0123456789"}, [BAD_PHONE]),
        ({"phone": "+1234567890123456"}, [BAD_PHONE]),
        ({"phone": PHONE, "reason": 5}, ["reason: must be a string of at most 500 characters"]),
        ({"phone": PHONE, "reason": "x" * 501}, ["reason: must be a string of at most 500 characters"]),
        ({"phone": PHONE, "note": "x"}, ["note: unknown field (expected: phone, reason)"]),
        ([PHONE], ["request body: must be a JSON object with 'phone' (and optionally 'reason')"]),
    ],
)
def test_bad_opt_outs_are_refused_and_record_nothing(
    srv: ConsentServer, body: Any, messages: list[str]
) -> None:
    t = srv.tenant(TWO_SENDS)
    r = srv.http.post(url(t), json=body, headers=t.headers)
    assert r.status_code == 400, r.text
    assert r.json() == messages
    assert consent_rows(srv, t.org_id) == []


def test_bad_requests_of_the_other_routes(srv: ConsentServer) -> None:
    t = srv.tenant(TWO_SENDS)
    headers = {**t.headers, "Content-Type": "application/json"}
    r = srv.http.post(url(t), content=b"", headers=headers)
    assert r.status_code == 400 and r.json() == ["request body is empty; expected a JSON object"]
    r = srv.http.post(url(t), content=b'{"phone": ', headers=headers)
    assert r.status_code == 400 and r.json()[0].startswith("request body is not valid JSON")
    r = srv.http.get(url(t), params={"phone": "nope"}, headers=t.headers)
    assert r.status_code == 400 and r.json() == [BAD_PHONE]
    for limit in ("0", "1001", "many"):
        r = srv.http.get(url(t), params={"limit": limit}, headers=t.headers)
        assert r.status_code == 400 and isinstance(r.json(), list), r.text
    r = srv.http.delete(url(t, "/not-a-number"), headers=t.headers)
    assert r.status_code == 400 and r.json() == [BAD_PHONE]
    assert consent_rows(srv, t.org_id) == []


def test_scopes_and_orgs(srv: ConsentServer) -> None:
    t = srv.tenant(TWO_SENDS)
    body = {"phone": PHONE}
    assert srv.http.get(url(t)).status_code == 401
    assert srv.http.post(url(t), json=body).status_code == 401
    assert srv.http.delete(url(t, f"/{PHONE}")).status_code == 401
    read_only = {"Authorization": f"Bearer {srv.new_token(t.org_id, scopes=['read.journey_instances'])}"}
    create_only = {"Authorization": f"Bearer {srv.new_token(t.org_id, scopes=['create.journey_instances'])}"}
    r = srv.http.post(url(t), json=body, headers=read_only)
    assert r.status_code == 403 and r.json() == ["this token lacks the create.journey_instances scope"]
    r = srv.http.delete(url(t, f"/{PHONE}"), headers=read_only)
    assert r.status_code == 403
    r = srv.http.get(url(t), headers=create_only)
    assert r.status_code == 403 and r.json() == ["this token lacks the read.journey_instances scope"]
    other = srv.tenant(TWO_SENDS)
    for r in (
        srv.http.get(url(t), headers=other.headers),
        srv.http.post(url(t), json=body, headers=other.headers),
        srv.http.delete(url(t, f"/{PHONE}"), headers=other.headers),
    ):
        assert r.status_code == 404 and r.json() == [f"org {t.org_id} not found"]
    assert consent_rows(srv, t.org_id) == []
    assert srv.http.post(url(t), json=body, headers=create_only).status_code == 201
    assert [x["phone"] for x in listed(srv, t)] == [PHONE]  # t.headers: both scopes
    assert srv.http.delete(url(t, f"/{PHONE}"), headers=create_only).status_code == 204


# ---------------------------------------------------------------- journeys optout (the CLI)
def test_cli_optout(srv: ConsentServer, fake: FakeTwilio) -> None:
    ask, t, waiting, _ = waiting_and_queued(srv, fake)
    add = ["optout", "add", "--org", t.org_id, "--phone", "(312) 555-0100", "--reason", "by phone"]
    proc = run_cli(srv, *add, "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert {k: v for k, v in record.items() if k != "updatedDateTime"} == {
        "phone": PHONE,
        "optedOut": True,
        "source": "cli",
        "keyword": None,
        "reason": "by phone",
    }
    told = [(e["type"], e["detail"]) for e in events(srv, ask, waiting)]
    assert told[-1] == ("opted_out", {"source": "cli"})
    assert consent_rows(srv, t.org_id) == [(PHONE, "opted_out", None, "cli", "by phone")]
    proc = run_cli(srv, "optout", "add", "--org", t.org_id, "--phone", PHONE)
    assert proc.returncode == 0 and "was already opted out (unchanged)" in proc.stdout
    proc = run_cli(srv, "optout", "list", "--org", t.org_id, "--json")
    assert json.loads(proc.stdout) == [record]
    proc = run_cli(srv, "optout", "list", "--org", t.org_id)
    assert proc.returncode == 0, proc.stderr
    assert f"{PHONE}  opted out" in proc.stdout and "(by cli): by phone" in proc.stdout
    proc = run_cli(srv, "optout", "list", "--org", t.org_id, "--phone", OTHER_PHONE, "--json")
    assert json.loads(proc.stdout) == []

    proc = run_cli(srv, "optout", "remove", "--org", t.org_id, "--phone", "312-555-0100")
    assert proc.returncode == 0, proc.stderr
    assert consent_rows(srv, t.org_id) == [(PHONE, "opted_in", None, "cli", None)]
    proc = run_cli(srv, "optout", "remove", "--org", t.org_id, "--phone", PHONE)
    assert proc.returncode == 1 and "error: that phone number is not opted out" in proc.stderr
    proc = run_cli(srv, "optout", "list", "--org", t.org_id)
    assert proc.returncode == 0 and proc.stdout == "" and "no opted-out numbers" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["add", "--phone", "12"], BAD_PHONE),
        (
            ["add", "--phone", PHONE, "--reason", "x" * 501],
            "reason: must be a string of at most 500 characters",
        ),
        (["remove", "--phone", "not a number"], BAD_PHONE),
        (["list", "--phone", "x"], BAD_PHONE),
        (["add", "--phone", PHONE, "--org", "no-such-org"], "unknown org no-such-org"),
        (["remove", "--phone", PHONE, "--org", "no-such-org"], "unknown org no-such-org"),
    ],
)
def test_cli_optout_refuses_bad_input(srv: ConsentServer, args: list[str], message: str) -> None:
    t = srv.tenant(TWO_SENDS)
    if "--org" not in args:
        args = [*args, "--org", t.org_id]
    proc = run_cli(srv, "optout", *args)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert f"error: {message}" in proc.stderr
    assert consent_rows(srv, t.org_id) == []


# ---------------------------------------------------------------- replies: keywords were handled
def test_consent_keywords_are_not_unmatched_replies(srv: ConsentServer) -> None:
    t = srv.tenant(REPLY, TWILIO)
    [iid] = start(srv, t, {"key": "k1", "phone": PHONE})
    srv.run_worker()
    for body in ("STOP", " start ", "help", "who is this?"):
        srv.clock.advance(timedelta(seconds=1))
        assert post_inbound(srv, t.org_id, OTHER_PHONE, body).status_code == 200
    srv.clock.advance(timedelta(seconds=1))
    assert post_inbound(srv, t.org_id, PHONE, "C").status_code == 200

    r = srv.http.get(f"/api/orgs/{t.org_id}/replies", headers=t.headers)
    assert r.status_code == 200, r.text
    assert [(x["body"], x["kind"], x["matched"]) for x in r.json()] == [
        ("C", "reply", True),
        ("who is this?", "reply", False),
        ("help", "help", False),
        (" start ", "optIn", False),
        ("STOP", "optOut", False),
    ]
    assert r.json()[0]["instanceId"] == iid
    r = srv.http.get(f"/api/orgs/{t.org_id}/replies", params={"unmatched": "true"}, headers=t.headers)
    assert [(x["body"], x["kind"]) for x in r.json()] == [("who is this?", "reply")]

    proc = run_cli(srv, "replies", "--org", t.org_id, "--unmatched", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [x["body"] for x in json.loads(proc.stdout)] == ["who is this?"]
    proc = run_cli(srv, "replies", "--org", t.org_id)
    lines = proc.stdout.splitlines()
    assert len(lines) == 5
    assert "opt-out keyword: STOP" in lines[4] and "opt-in keyword" in lines[3] and "HELP keyword" in lines[2]
    assert "UNMATCHED: who is this?" in lines[1] and f"instance {iid}: C" in lines[0]


def _old_database(tmp_path: Path) -> tuple[str, Any]:
    if os.environ.get("JOURNEYS_TEST_DATABASE", "sqlite") == "postgresql":
        require_postgres()
        return make_postgres_database()
    return f"sqlite:///{tmp_path / 'old.db'}", None


def test_the_migration_marks_keywords_already_stored(tmp_path: Path) -> None:
    """Revision 0009 on a database written before it: stored keywords get their kind (so they
    leave the unmatched list), consent rows set by keywords get the source `sms`."""
    url, drop = _old_database(tmp_path)
    engine = create_db_engine(url)
    try:
        upgrade(engine, "0008")
        received = datetime(2026, 11, 1, tzinfo=UTC)
        with engine.begin() as conn:
            for n, body in enumerate(["STOP", " quit ", "Unstop", "HELP", "stop please", "hello", "C"]):
                conn.execute(
                    sa.text(
                        "INSERT INTO inbound_messages (org_id, message_id, channel, from_address, "
                        "body, received_at, instance_id, source) "
                        "VALUES ('o1', :m, 'sms', :p, :b, :at, :i, 'provider')"
                    ),
                    {"m": f"m{n}", "p": PHONE, "b": body, "at": received, "i": "i1" if body == "C" else None},
                )
            conn.execute(
                sa.text(
                    "INSERT INTO sms_consent (org_id, phone, status, keyword, updated_at) "
                    "VALUES ('o1', :p, 'opted_out', 'STOP', :at)"
                ),
                {"p": PHONE, "at": received},
            )
        upgrade(engine)
        with engine.connect() as conn:
            kinds_by_id = dict(conn.execute(sa.text("SELECT message_id, kind FROM inbound_messages")).all())
            consent = conn.execute(sa.text("SELECT keyword, source, reason FROM sms_consent")).all()
        assert kinds_by_id == {
            "m0": "opt_out",
            "m1": "opt_out",
            "m2": "opt_in",
            "m3": "help",
            "m4": "reply",
            "m5": "reply",
            "m6": "reply",
        }
        assert [tuple(r) for r in consent] == [("STOP", "sms", None)]
    finally:
        engine.dispose()
        if drop is not None:
            drop()
