"""Inbound SMS over Twilio's webhook and SMS consent (STOP / START / HELP), end to end: a real
server with its own database, Twilio's signed form posts over real HTTP (signatures computed
with Twilio's own library), a fake Twilio REST server for the sends, `run_worker()`, the
timeline and the tables."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, NamedTuple

import httpx
import pytest
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
    form,
    inbound_url,
    kinds,
    post_inbound,
    sms_to,
    start,
)
from support.databases import own_database
from support.fake_twilio import FakeTwilio
from support.net import post_unfinished
from support.server import START, Tenant
from twilio.request_validator import RequestValidator

from journeys.messaging.providers.twilio import signature_verifies

EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as f:
        yield f


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, fake: FakeTwilio) -> Iterator[ConsentServer]:
    with own_database(tmp_path_factory.mktemp("consent"), "journeys.db") as url:
        server = ConsentServer(url, fake.url)
        yield server
        server.stop()
        server.engine.dispose()


@pytest.fixture(autouse=True)
def _start_clock(srv: ConsentServer) -> None:
    srv.clock.set(START)


OTHER_JOURNEY = """
name: Other journey
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
frequency_cap: null
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: send_sms, to: phone, body: "from the other journey"}
      - {id: 20, type: end, outcome: done}
"""


# ---------------------------------------------------------------- helpers
class Inbound(NamedTuple):  # a row, as the query's: by name or as a tuple
    from_address: str
    body: str
    instance_id: str | None
    source: str


def inbound(srv: ConsentServer, org_id: str) -> list[Inbound]:
    """The org's inbound messages (sender, text, instance, source), opened: the server seals a
    message's sender and text with the org's key."""
    rows = srv.rows(
        "SELECT from_address, body, instance_id, source FROM inbound_messages WHERE org_id = :o "
        "ORDER BY received_at, message_id",
        org_id,
    )
    phi = srv.worker.vault.org(org_id)
    return [Inbound(phi.open(r.from_address), phi.open(r.body), r.instance_id, r.source) for r in rows]


class Consent(NamedTuple):
    phone: str
    status: str
    keyword: str | None


def consent(srv: ConsentServer, org_id: str) -> list[Consent]:
    """The org's consent records (number, status, keyword), opened: the registry keeps a number's
    blind index and the number sealed with the org's key."""
    rows = srv.rows("SELECT phone, number, status, keyword FROM sms_consent WHERE org_id = :o", org_id)
    phi = srv.worker.vault.org(org_id)
    found = [Consent(phi.open(r.number) if r.number else r.phone, r.status, r.keyword) for r in rows]
    return sorted(found)


def reply_api(srv: ConsentServer, t: Tenant, from_: str, body: str) -> dict[str, Any]:
    r = srv.http.post(f"/api/orgs/{t.org_id}/replies", json={"from": from_, "body": body}, headers=t.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


# ---------------------------------------------------------------- the signature
def test_our_signature_check_agrees_with_twilios_library() -> None:
    url = "https://journeys.example/channels/twilio/org-1/inbound"
    params = form(PHONE, "C & more ü")
    sig = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    as_lists = {k: [v] for k, v in params.items()}
    assert signature_verifies(AUTH_TOKEN, url, as_lists, sig)
    assert not signature_verifies("another-token", url, as_lists, sig)
    assert not signature_verifies(AUTH_TOKEN, url + "x", as_lists, sig)
    assert not signature_verifies(AUTH_TOKEN, url, {**as_lists, "Body": ["D"]}, sig)
    assert not signature_verifies(AUTH_TOKEN, url, as_lists, "")


# ---------------------------------------------------------------- replies
def test_an_inbound_reply_goes_to_the_waiting_instance_which_takes_its_branch(srv: ConsentServer) -> None:
    t = srv.tenant(REPLY, TWILIO)
    [iid] = start(srv, t, {"key": "k1", "phone": PHONE})
    srv.run_worker()
    assert kinds(srv, t, iid)[-1] == (20, "waiting_for_reply")
    r = post_inbound(srv, t.org_id, "+1 (312) 555-0100", "C")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/xml")
    assert r.text == EMPTY
    [row] = inbound(srv, t.org_id)
    assert (row.from_address, row.body, row.instance_id, row.source) == (PHONE, "C", iid, "provider")
    srv.run_worker()
    assert kinds(srv, t, iid)[-3:] == [(None, "reply_arrived"), (20, "reply_received"), (30, "end")]


def test_an_inbound_message_nobody_waits_for_is_stored_unmatched(srv: ConsentServer) -> None:
    t = srv.tenant(REPLY, TWILIO)
    [iid] = start(srv, t, {"key": "k1", "phone": PHONE})
    srv.run_worker()
    r = post_inbound(srv, t.org_id, OTHER_PHONE, "hello?")
    assert r.status_code == 200 and r.text == EMPTY
    assert [tuple(x) for x in inbound(srv, t.org_id)] == [(OTHER_PHONE, "hello?", None, "provider")]
    srv.run_worker()
    assert kinds(srv, t, iid)[-1] == (20, "waiting_for_reply")


def test_a_redelivered_message_is_acknowledged_again_and_taken_once(srv: ConsentServer) -> None:
    """Twilio redelivers a webhook it did not see answered, with the same MessageSid. Taken
    twice, the second "C" would answer the next instance waiting for that number."""
    t = srv.tenant(REPLY, TWILIO)
    first, second = start(srv, t, {"key": "k1", "phone": PHONE}, {"key": "k2", "phone": PHONE})
    srv.run_worker()
    sid = "SM" + uuid.uuid4().hex
    for _ in range(2):
        r = post_inbound(srv, t.org_id, PHONE, "C", sid=sid)
        assert r.status_code == 200 and r.text == EMPTY, r.text
    [row] = inbound(srv, t.org_id)
    srv.run_worker()
    ends = {iid: kinds(srv, t, iid)[-1] for iid in (first, second)}
    assert sorted(ends.values()) == [(20, "waiting_for_reply"), (30, "end")]
    assert ends[row.instance_id] == (30, "end")
    # Another message (its own sid) with the same text is a new reply: it answers the other one.
    r = post_inbound(srv, t.org_id, PHONE, "C")
    assert r.status_code == 200
    srv.run_worker()
    assert [kinds(srv, t, iid)[-1] for iid in (first, second)] == [(30, "end"), (30, "end")]
    assert len(inbound(srv, t.org_id)) == 2


def test_concurrent_deliveries_of_one_message_are_taken_once(srv: ConsentServer) -> None:
    t = srv.tenant(REPLY, TWILIO)
    iids = start(srv, t, *({"key": f"k{i}", "phone": PHONE} for i in range(4)))
    srv.run_worker()
    sid = "SM" + uuid.uuid4().hex
    barrier = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def deliver() -> None:
        barrier.wait()
        answers.append(post_inbound(srv, t.org_id, PHONE, "R", sid=sid))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert [(a.status_code, a.text) for a in answers] == [(200, EMPTY)] * 6
    assert len(inbound(srv, t.org_id)) == 1
    srv.run_worker()
    ends = sorted(kinds(srv, t, iid)[-1] for iid in iids)
    assert ends == [(20, "waiting_for_reply")] * 3 + [(40, "end")]


def test_a_redelivered_help_is_answered_again_and_recorded_once(srv: ConsentServer) -> None:
    t = srv.tenant(REPLY, {**TWILIO, "help_text": "Call 312-555-0199."})
    sid = "SM" + uuid.uuid4().hex
    answers = [post_inbound(srv, t.org_id, PHONE, "HELP", sid=sid) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].text == answers[1].text and "Call 312-555-0199." in answers[0].text
    assert len(inbound(srv, t.org_id)) == 1


def test_a_message_sid_over_64_characters_is_refused(srv: ConsentServer) -> None:
    t = srv.tenant(REPLY, TWILIO)
    r = post_inbound(srv, t.org_id, PHONE, "C", sid="SM" + "a" * 63)
    assert r.status_code == 400
    assert r.json() == ["MessageSid: at most 64 characters"]
    assert inbound(srv, t.org_id) == []


@pytest.mark.parametrize(
    "signature", ["", "bm90IGEgc2lnbmF0dXJl", "wrong-token"], ids=["missing", "bad", "other-token"]
)
def test_a_request_whose_signature_does_not_verify_is_refused_and_nothing_recorded(
    srv: ConsentServer, signature: str
) -> None:
    t = srv.tenant(REPLY, TWILIO)
    [iid] = start(srv, t, {"key": "k1", "phone": PHONE})
    srv.run_worker()
    if signature == "wrong-token":
        r = post_inbound(srv, t.org_id, PHONE, "STOP", token="not-the-org-token")
    else:
        r = post_inbound(srv, t.org_id, PHONE, "STOP", signature=signature)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/json")
    messages = r.json()
    assert isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages)
    assert PHONE not in r.text and "STOP" not in r.text
    assert inbound(srv, t.org_id) == []
    assert consent(srv, t.org_id) == []
    srv.run_worker()
    assert kinds(srv, t, iid)[-1] == (20, "waiting_for_reply")


def test_a_signature_over_another_url_is_refused(srv: ConsentServer) -> None:
    t = srv.tenant(REPLY, TWILIO)
    other = srv.tenant(REPLY, TWILIO)  # same auth token, but the URL names the other org
    params = form(PHONE, "C")
    sig = RequestValidator(AUTH_TOKEN).compute_signature(inbound_url(srv, other.org_id), params)
    r = srv.http.post(inbound_url(srv, t.org_id), data=params, headers={"X-Twilio-Signature": sig})
    assert r.status_code == 403
    assert inbound(srv, t.org_id) == [] and inbound(srv, other.org_id) == []


def test_an_unknown_org_or_one_without_twilio_is_refused(srv: ConsentServer) -> None:
    r = post_inbound(srv, "no-such-org", PHONE, "C")
    assert r.status_code == 403 and isinstance(r.json(), list)
    plain = srv.tenant(REPLY)  # no sms channel configured
    r = post_inbound(srv, plain.org_id, PHONE, "C")
    assert r.status_code == 403
    assert inbound(srv, plain.org_id) == []


def test_an_oversized_request_is_refused(srv: ConsentServer) -> None:
    t = srv.tenant(REPLY, TWILIO)
    r = post_inbound(srv, t.org_id, PHONE, "x" * (srv.settings.max_twilio_body_bytes + 1))
    assert r.status_code == 413 and isinstance(r.json(), list)
    assert inbound(srv, t.org_id) == []


@pytest.mark.parametrize(
    ("from_", "body", "error"),
    [
        (PHONE, "C\u0000", "body: must not contain NUL characters (\\u0000)"),
        ("+1312555\u00000100", "C", "from: must not contain NUL characters (\\u0000)"),
    ],
)
def test_a_reply_with_nul_through_the_api_is_a_clear_400(
    srv: ConsentServer, from_: str, body: str, error: str
) -> None:
    # PostgreSQL cannot store NUL in text: it was a 500 there.
    t = srv.tenant(REPLY, TWILIO)
    [iid] = start(srv, t, {"key": "k1", "phone": PHONE})
    srv.run_worker()
    r = srv.http.post(f"/api/orgs/{t.org_id}/replies", json={"from": from_, "body": body}, headers=t.headers)
    assert r.status_code == 400 and r.json() == [error]
    assert inbound(srv, t.org_id) == []
    assert kinds(srv, t, iid)[-1] == (20, "waiting_for_reply")


def test_nul_in_a_twilio_inbound_message_is_dropped_and_the_message_taken(srv: ConsentServer) -> None:
    """Twilio is answered 200 (a 400 or 500 would make it retry and log errors); the NUL
    characters, which PostgreSQL cannot store, are dropped after the signature is checked."""
    t = srv.tenant(REPLY, TWILIO)
    [iid] = start(srv, t, {"key": "k1", "phone": PHONE})
    srv.run_worker()
    sid = "SM" + uuid.uuid4().hex
    r = post_inbound(srv, t.org_id, PHONE + "\u0000", "C\u0000", sid=sid + "\u0000")
    assert r.status_code == 200 and r.text == EMPTY, r.text
    [row] = inbound(srv, t.org_id)
    assert (row.from_address, row.body, row.instance_id) == (PHONE, "C", iid)
    srv.run_worker()
    assert kinds(srv, t, iid)[-1] == (30, "end")
    assert srv.rows(
        "SELECT provider_message_id FROM inbound_messages WHERE org_id = :o", t.org_id
    )[0].provider_message_id == sid


def test_nul_in_the_inbound_path_is_a_clear_400(srv: ConsentServer) -> None:
    r = srv.http.post(f"{srv.base_url}/channels/twilio/org%00x/inbound", data=form(PHONE, "C"))
    assert r.status_code == 400 and r.json() == ["orgId: must not contain NUL characters (\\u0000)"]


def big_stream(total: int = 64 * 1024 * 1024, piece: int = 1024 * 1024) -> Iterator[bytes]:
    """A form body of `total` bytes, produced as it is sent (never held whole)."""
    yield b"Body="
    chunk = b"x" * piece
    for _ in range(total // piece):
        yield chunk


def test_a_large_streamed_inbound_post_is_413_and_records_nothing(srv: ConsentServer) -> None:
    t = srv.tenant(REPLY, TWILIO)
    limit = srv.settings.max_twilio_body_bytes
    assert limit == 64 * 1024
    r = srv.http.post(inbound_url(srv, t.org_id), content=big_stream(), headers={"X-Twilio-Signature": "x"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413, r.text
    assert r.json() == [f"request body is larger than the {limit} byte limit"]
    assert inbound(srv, t.org_id) == []


@pytest.mark.parametrize("declared", [250 * 1024 * 1024, None], ids=["content-length", "chunked"])
def test_an_oversized_inbound_post_is_answered_413_before_its_body_is_read(
    srv: ConsentServer, declared: int | None
) -> None:
    """The answer comes while the body is still unfinished: the server does not wait for (and
    buffer) all of it — an unsigned 250 MB post once took it from 100 MB to 500 MB."""
    t = srv.tenant(REPLY, TWILIO)
    path = f"/channels/twilio/{t.org_id}/inbound"
    start = b"Body=" + b"x" * (128 * 1024)
    status, body = post_unfinished(srv.base_url, path, start, declared_length=declared)
    assert status == 413, body
    assert inbound(srv, t.org_id) == []


# ---------------------------------------------------------------- consent keywords
@pytest.mark.parametrize("text", ["STOP", " stop ", "Unsubscribe", "quit", "END", "cancel", "StopAll"])
def test_stop_keywords_opt_the_number_out_and_are_not_a_reply(srv: ConsentServer, text: str) -> None:
    t = srv.tenant(REPLY, TWILIO)
    [iid] = start(srv, t, {"key": "k1", "phone": PHONE})
    srv.run_worker()
    r = post_inbound(srv, t.org_id, PHONE, text)
    assert r.status_code == 200 and r.text == EMPTY
    assert [tuple(x) for x in consent(srv, t.org_id)] == [(PHONE, "opted_out", text.strip().upper())]
    # Recorded as an inbound message, but not handed to the waiting instance as its reply.
    assert [tuple(x) for x in inbound(srv, t.org_id)] == [(PHONE, text, None, "provider")]
    srv.run_worker()
    # The waiting instance is told (timeline event `opted_out`, hence the `opted_out` webhook)
    # and keeps waiting: opting out is not cancelling.
    assert kinds(srv, t, iid)[-2:] == [(20, "waiting_for_reply"), (None, "opted_out")]
    assert events(srv, t, iid)[-1]["detail"] == {"keyword": text.strip().upper()}
    assert "reply_arrived" not in [e["type"] for e in events(srv, t, iid)]


@pytest.mark.parametrize("text", ["STOP please", "stopp", "YES", "start now"])
def test_a_keyword_must_be_the_whole_message(srv: ConsentServer, text: str) -> None:
    t = srv.tenant(REPLY, TWILIO)
    [iid] = start(srv, t, {"key": "k1", "phone": PHONE})
    srv.run_worker()
    assert post_inbound(srv, t.org_id, PHONE, text).status_code == 200
    assert consent(srv, t.org_id) == []
    assert inbound(srv, t.org_id)[0].instance_id == iid  # an ordinary reply


def test_start_opts_back_in(srv: ConsentServer) -> None:
    t = srv.tenant(REPLY, TWILIO)
    assert post_inbound(srv, t.org_id, PHONE, "STOP").status_code == 200
    assert post_inbound(srv, t.org_id, PHONE, "start").status_code == 200
    assert [tuple(x) for x in consent(srv, t.org_id)] == [(PHONE, "opted_in", "START")]
    assert post_inbound(srv, t.org_id, PHONE, "quit").status_code == 200
    assert post_inbound(srv, t.org_id, PHONE, " Unstop").status_code == 200
    assert [tuple(x) for x in consent(srv, t.org_id)] == [(PHONE, "opted_in", "UNSTOP")]
    assert len(inbound(srv, t.org_id)) == 4


def test_consent_is_per_org(srv: ConsentServer) -> None:
    t = srv.tenant(REPLY, TWILIO)
    other = srv.tenant(REPLY, TWILIO)
    assert post_inbound(srv, t.org_id, PHONE, "STOP").status_code == 200
    assert len(consent(srv, t.org_id)) == 1
    assert consent(srv, other.org_id) == []


def test_help_answers_with_the_orgs_help_text(srv: ConsentServer) -> None:
    default = srv.tenant(REPLY, TWILIO)
    r = post_inbound(srv, default.org_id, PHONE, " help ")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert r.text == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
        "Reply STOP to opt out. For help call your clinic.</Message></Response>"
    )
    custom = srv.tenant(
        REPLY, {**TWILIO, "help_text": "Acme Clinic: call 555-0100 <weekdays> & reply STOP to stop."}
    )
    r = post_inbound(srv, custom.org_id, PHONE, "HELP")
    assert r.text == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
        "Acme Clinic: call 555-0100 &lt;weekdays&gt; &amp; reply STOP to stop.</Message></Response>"
    )
    assert consent(srv, custom.org_id) == []
    assert [tuple(x) for x in inbound(srv, custom.org_id)] == [(PHONE, "HELP", None, "provider")]


def test_stop_through_the_replies_api_opts_out_too(srv: ConsentServer) -> None:
    t = srv.tenant(REPLY)  # the replies API needs no provider
    [iid] = start(srv, t, {"key": "k1", "phone": PHONE})
    srv.run_worker()
    got = reply_api(srv, t, "(312) 555-0100", "Stop")
    assert got["matched"] is False and got["instanceId"] is None
    assert [tuple(x) for x in consent(srv, t.org_id)] == [(PHONE, "opted_out", "STOP")]
    assert [tuple(x) for x in inbound(srv, t.org_id)] == [(PHONE, "Stop", None, "api")]
    srv.run_worker()
    assert kinds(srv, t, iid)[-2:] == [(20, "waiting_for_reply"), (None, "opted_out")]
    reply_api(srv, t, PHONE, "START")
    assert [tuple(x) for x in consent(srv, t.org_id)] == [(PHONE, "opted_in", "START")]


def test_sms_already_queued_to_a_number_that_opts_out_is_dropped(
    srv: ConsentServer, fake: FakeTwilio
) -> None:
    t = srv.tenant(TWO_SENDS, TWILIO)
    [iid] = start(srv, t, {"key": "k1", "phone": PHONE})
    fake.fail_next(1, status=500)  # the first send is retried later: still queued at the STOP
    srv.run_worker()
    [row] = sms_to(srv, t.org_id, PHONE)
    assert (row.body, row.status) == ("first", "queued")
    assert post_inbound(srv, t.org_id, PHONE, "STOP").status_code == 200
    [row] = sms_to(srv, t.org_id, PHONE)
    assert (row.status, row.last_error) == ("dropped", "the number opted out")
    skipped = [e for e in events(srv, t, iid) if e["type"] == "sms_skipped"]
    assert [(e["stepId"], e["detail"]["reason"]) for e in skipped] == [(10, "the number opted out")]
    srv.clock.set(START + timedelta(minutes=30))
    sent = len(fake.requests)
    srv.run_worker()
    assert len(fake.requests) == sent  # never retried


# ---------------------------------------------------------------- opted-out numbers get no SMS
def test_no_sms_goes_to_an_opted_out_number_from_any_journey_until_start(srv: ConsentServer) -> None:
    t = srv.tenant(TWO_SENDS, TWILIO)
    other = srv.another_journey(t, OTHER_JOURNEY)
    [iid] = start(srv, t, {"key": "k1", "phone": PHONE})
    srv.run_worker()
    assert [r.body for r in sms_to(srv, t.org_id, PHONE)] == ["first"]
    assert post_inbound(srv, t.org_id, PHONE, "STOP").status_code == 200
    # The instance goes on (opting out cancels nothing), but its next SMS is skipped ...
    srv.clock.set(START + timedelta(days=1))
    srv.run_worker()
    assert kinds(srv, t, iid)[-3:] == [(20, "wait"), (30, "sms_skipped"), (40, "end")]
    assert events(srv, t, iid)[-2]["detail"] == {"reason": "the number opted out"}
    # ... and so is any other journey's, while other numbers still get theirs.
    [o1, o2] = start(srv, other, {"key": "o1", "phone": PHONE}, {"key": "o2", "phone": OTHER_PHONE})
    srv.run_worker()
    assert kinds(srv, other, o1)[-2:] == [(10, "sms_skipped"), (20, "end")]
    assert kinds(srv, other, o2)[-2:] == [(10, "sms_queued"), (20, "end")]
    assert [r.body for r in sms_to(srv, t.org_id, PHONE)] == ["first"]
    # START: sends resume.
    assert post_inbound(srv, t.org_id, PHONE, "START").status_code == 200
    [o3] = start(srv, other, {"key": "o3", "phone": PHONE})
    srv.run_worker()
    assert kinds(srv, other, o3)[-2:] == [(10, "sms_queued"), (20, "end")]
    assert [r.body for r in sms_to(srv, t.org_id, PHONE)] == ["first", "from the other journey"]


def test_an_opt_out_through_the_replies_api_stops_sends_too(srv: ConsentServer) -> None:
    t = srv.tenant(OTHER_JOURNEY)
    reply_api(srv, t, PHONE, "unsubscribe")
    [iid] = start(srv, t, {"key": "k1", "phone": PHONE})
    srv.run_worker()
    assert kinds(srv, t, iid)[-2:] == [(10, "sms_skipped"), (20, "end")]
    assert sms_to(srv, t.org_id, PHONE) == []
