"""The console's Messages page: the org's outgoing messages sent through a fake Twilio (sent,
rejected with 21211, undelivered with 30007 by a signed status callback, an unknown code), their
error codes explained, filters, keyset paging, a bad filter (400, not 500), and the audit entry
each view writes. In a real browser, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from support.api import trigger_one
from support.audit import audit_actions
from support.browser import screenshot
from support.console import make_user, session_client, sign_in
from support.databases import own_database
from support.fake_twilio import FakeTwilio, twilio_config
from support.journeys import one_sms
from support.keys import strong_key
from support.net import free_port
from support.server import START, Server, Tenant
from support.smtp import Mailbox
from twilio.request_validator import RequestValidator

from journeys.messaging import message_list
from journeys.messaging.provider_errors import explain
from journeys.messaging.providers import registry
from journeys.store.db import read_only

SID = "AC" + "fedcba9876543210" * 2
TOKEN = "twilio-auth-token-for-console-tests"
FROM = "+13125550100"
SECRET_KEY = strong_key("console-messages")
NIGHT = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)  # 03:30 in America/Chicago


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio(SID, TOKEN) as f:
        yield f


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, fake: FakeTwilio) -> Iterator[Server]:
    """A server of its own database: its org's Twilio channel (sealed with this module's key)
    must not reach the session's servers."""
    with own_database(tmp_path_factory.mktemp("console_messages")) as url:
        server = Server(
            url,
            public_url_is_own=True,
            secret_key=SECRET_KEY,
            twilio_api_base=fake.url,
            console_login_attempts=100_000,
        )
        yield server
        server.stop()
        server.engine.dispose()


@dataclass(frozen=True)
class Outreach:
    tenant: Tenant
    other: Tenant  # a second journey of the same org
    sent: str  # instance ids
    rejected: str
    undelivered: str
    unknown: str
    held: str  # waits for the send window
    queued: str  # Twilio answered 500: queued for a retry


def _send(srv: Server, t: Tenant, name: str, phone: str = "(312) 555-0142") -> str:
    iid = trigger_one(srv.http, t, {"patientName": name, "phone": phone})
    srv.run_worker()
    return iid


def _callback(srv: Server, org_id: str, params: dict[str, str]) -> None:
    url = f"{srv.base_url}/channels/twilio/{org_id}/status"
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    r = srv.http.post(url, data=params, headers={"X-Twilio-Signature": signature})
    assert r.status_code == 204, r.text


@pytest.fixture(scope="module")
def outreach(srv: Server, fake: FakeTwilio) -> Outreach:
    """One org, two journeys, five SMS: sent, rejected (21211), undelivered (30007), failed
    with a code the table does not know (29999), all on 2 November; and one held for the send
    window at 03:30 in Chicago on the 3rd (it goes at 08:00), and a minute later one of a
    journey without a send window, queued for a retry after Twilio answered 500."""
    srv.clock.set(START)
    t = srv.tenant(one_sms("Console messages"))
    other = Tenant(t.org_id, t.token, str(srv.publish(t.org_id, one_sms("Second journey"))["id"]), t.headers)
    srv.set_channel(t.org_id, "sms", "twilio", twilio_config(SID, TOKEN, FROM))
    sent = _send(srv, t, "Ann")
    fake.reject_next(1, status=400, code=21211)
    rejected = _send(srv, t, "Bob")
    undelivered = _send(srv, other, "Cy")
    sid = fake.requests[-1].sid
    assert sid
    _callback(srv, t.org_id, {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30007"})
    fake.reject_next(1, status=400, code=29999)
    unknown = _send(srv, other, "Di")
    srv.clock.set(NIGHT)
    held = _send(srv, t, "Eve")
    srv.clock.set(NIGHT + timedelta(minutes=1))
    anytime = one_sms("Any time").replace("parameters:", "send_window: null\nparameters:", 1)
    third = Tenant(t.org_id, t.token, str(srv.publish(t.org_id, anytime)["id"]), t.headers)
    fake.fail_next(1, status=500)
    queued = _send(srv, third, "Fay")
    return Outreach(t, other, sent, rejected, undelivered, unknown, held, queued)


def test_messages_show_text_status_and_explained_error_codes(
    srv: Server, outreach: Outreach, page: Any
) -> None:
    org = outreach.tenant.org_id
    viewer = make_user(srv, org, "viewer")
    sign_in(page, srv, viewer, next_path="/console/messages")
    assert page.url.endswith("/console/messages")
    assert page.get_by_role("heading", name="Messages").is_visible()
    rows = page.locator("table.messages tbody tr")
    assert rows.count() == 6
    text = page.locator("table.messages").inner_text()
    assert "Hi Ann, your appointment is booked." in text  # the rendered message
    assert "21211" in text and "invalid 'To' phone number" in text
    assert "30007" in text and "carrier filtered" in text
    assert "29999" in text and "not a code this console knows" in text
    # newest first: Fay's is queued for a retry, Eve's held (its text as it will go), then Di's
    assert "queued" in rows.nth(0).inner_text() and "Hi Fay" in rows.nth(0).inner_text()
    assert "20500" in rows.nth(0).inner_text() and "Twilio had an internal error" in rows.nth(0).inner_text()
    assert "held" in rows.nth(1).inner_text() and "Hi Eve" in rows.nth(1).inner_text()
    assert "goes 2026-11-03 08:00 CST" in rows.nth(1).inner_text()
    assert "outside the send window" in rows.nth(1).inner_text()
    assert "Hi Di" in rows.nth(2).inner_text()
    # each row links to its instance page
    link = rows.nth(2).get_by_role("link", name="Instance")
    assert link.get_attribute("href") == (
        f"/console/instances/{outreach.other.journey_id}/{outreach.unknown}"
    )
    screenshot(page, "messages")
    # filter by status in the form, as a person would
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    assert "status=failed" in page.url
    failed = page.locator("table.messages tbody tr")
    assert failed.count() == 3  # failed (21211, 29999) and undelivered (30007)
    assert "Hi Ann" not in page.locator("table.messages").inner_text()
    # and by journey
    page.get_by_label("Journey").select_option(label="Second journey")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    assert page.locator("table.messages tbody tr").count() == 2
    # audited: who viewed, how many, which message ids
    views = audit_actions(srv, org, "messages.view", viewer.user_id)
    assert [e.count for e in views] == [6, 3, 2]
    assert len(views[0].target_ids) == 5 and views[0].target_kind == "message"  # held: no id yet


def test_message_filters_channel_dates_and_a_bad_filter(srv: Server, outreach: Outreach) -> None:
    org = outreach.tenant.org_id
    client = session_client(srv, make_user(srv, org, "viewer"))
    day = START.date().isoformat()
    assert client.get("/console/messages?channel=email").text.count("<tr>") == 0
    r = client.get(f"/console/messages?channel=sms&from={day}&to={day}")
    assert r.status_code == 200 and r.text.count("Hi ") == 4  # all of the 2nd
    r = client.get("/console/messages?from=2026-11-03")  # the held and the queued one
    assert r.status_code == 200 and r.text.count("Hi ") == 2 and "Hi Eve" in r.text and "Hi Fay" in r.text
    r = client.get("/console/messages?status=queued")
    assert r.status_code == 200 and r.text.count("Hi ") == 1 and "Hi Fay" in r.text
    r = client.get("/console/messages?status=held")
    assert r.status_code == 200 and r.text.count("Hi ") == 1 and "Hi Eve" in r.text
    r = client.get("/console/messages?from=2026-11-04")
    assert r.status_code == 200 and "No messages match these filters" in r.text
    r = client.get("/console/messages?status=sent")
    assert r.status_code == 200 and "Hi Ann" in r.text and "Hi Bob" not in r.text
    bad = client.get("/console/messages?from=yesterday&status=lost&to=2026-01-01")
    assert bad.status_code == 400
    assert "from: must be a date such as 2026-11-02" in bad.text
    assert "status: one of queued, sent, failed, dropped, held" in bad.text
    assert client.get("/console/messages?after=not-a-cursor").status_code == 400
    assert client.get("/console/messages?after=2026-13-45T99:99:99.000000Z~x").status_code == 400
    edge = client.get("/console/messages?from=0001-01-01&to=9999-12-31")
    assert edge.status_code == 200 and edge.text.count("Hi ") == 6
    assert client.get("/console/messages?journey=" + "x" * 100).status_code == 400
    assert client.get("/console/messages?journey=a%00b&status=%00").status_code == 400


def test_messages_are_paged_newest_first_without_gaps(srv: Server, outreach: Outreach) -> None:
    org = outreach.tenant.org_id
    flt = message_list.parse_filter("", "", "", "", "")
    o = outreach
    phi = srv.worker.vault.org(org)
    for size in range(1, 8):  # the outbox and the held sends merged, whatever the page size
        seen: list[str] = []
        after = ""
        with read_only(srv.engine) as conn:
            while True:
                found = message_list.page_messages(conn, phi, srv.clock.now(), flt, after, size)
                seen += [m.message.instance_id for m in found.messages]
                if found.next_cursor is None:
                    break
                after = found.next_cursor
        assert seen == [o.queued, o.held, o.unknown, o.undelivered, o.rejected, o.sent], size
    client = session_client(srv, make_user(srv, org, "viewer"))
    html = client.get("/console/messages?status=failed").text
    assert "Older messages" not in html  # 3 rows, one page


def test_messages_need_a_session(srv: Server) -> None:
    r = srv.http.get("/console/messages", follow_redirects=False)
    assert r.status_code in (302, 303) and "/console/login" in r.headers["location"]


@pytest.mark.same_on_every_database
def test_error_codes_are_explained_with_an_honest_fallback() -> None:
    assert explain("21610", "twilio", "sms").meaning.startswith("recipient has opted out (STOP)")  # type: ignore[union-attr]
    for code in ("21211", "30003", "30005", "30006", "30007", "30008"):
        found = explain(code, "twilio")
        assert found is not None and found.known
    smtp = explain("550", "smtp", "email")
    assert smtp is not None and smtp.known and "mailbox unavailable" in smtp.meaning
    assert explain("550", None, "email") == smtp  # the channel tells which table
    unknown = explain("12345", "twilio")
    assert unknown is not None and not unknown.known and "not a code this console knows" in unknown.meaning
    assert explain("http_502", "twilio").meaning == "the provider answered with HTTP status 502"  # type: ignore[union-attr]
    assert explain(None) is None and explain("  ") is None


EMAIL_JOURNEY = """
name: Email reminder
parameters:
  - {name: key, identifier: true}
  - {name: patientName}
  - {name: email, type: email}
send_window: null
flows:
  - id: main
    name: Main
    steps:
      - id: 10
        type: send_email
        to: email
        subject: "A note for {{ patientName }}"
        body: "Hi {{ patientName }}, see you soon."
      - {id: 20, type: end}
"""


@pytest.fixture(scope="module")
def smtp() -> Iterator[Controller]:
    """A plain SMTP server on loopback that refuses nobody@example.com with a 550."""
    controller = Controller(Mailbox(refuse="nobody@example.com"), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    controller.stop()


def test_an_email_refused_by_the_mail_server_shows_its_smtp_code(srv: Server, smtp: Controller) -> None:
    t = srv.tenant(EMAIL_JOURNEY)
    config = {"host": "127.0.0.1", "port": smtp.port, "security": "none", "from_address": "a@clinic.example"}
    srv.set_channel(t.org_id, "email", "smtp", registry.check_config("smtp", "email", config))
    trigger_one(srv.http, t, {"patientName": "Gus", "email": "nobody@example.com"})
    trigger_one(srv.http, t, {"patientName": "Hal", "email": "hal@example.com"})
    srv.run_worker()
    client = session_client(srv, make_user(srv, t.org_id, "viewer"))
    page = client.get("/console/messages?channel=email&status=failed")
    assert page.status_code == 200
    assert page.text.count("Hi ") == 1 and "Hi Gus, see you soon." in page.text
    assert "A note for Gus" in page.text  # the subject
    assert "<strong>550</strong>: <span>mailbox unavailable" in page.text
    sent = client.get("/console/messages?channel=email&status=sent").text
    assert sent.count("Hi ") == 1 and "Hi Hal" in sent
    assert client.get("/console/messages?channel=sms").text.count("Hi ") == 0


@pytest.mark.same_on_every_database
def test_the_status_filter_offers_every_status_group() -> None:
    from journeys.console.pages.messages import STATUS_LABELS

    assert {s for s, _ in STATUS_LABELS} == set(message_list.STATUS_GROUPS)
