"""SMS through Twilio, end to end: a journey triggered over HTTP, the worker's delivery pass
against a small real HTTP server speaking Twilio's Messages API (tests/fake_twilio.py), status
callbacks signed as Twilio signs them, and the `journeys channel` CLI in subprocesses."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from support.api import trigger_one
from support.cli import JOURNEYS
from support.databases import migrated_sqlite, own_database
from support.fake_twilio import FakeTwilio, twilio_config
from support.journeys import one_sms
from support.keys import strong_key
from support.net import post_unfinished
from support.server import START, Server
from twilio.request_validator import RequestValidator

from journeys.config import Settings
from journeys.messaging.providers.base import OutboundMessage
from journeys.messaging.providers.registry import ProviderConfigError
from journeys.messaging.providers.twilio import TwilioProvider, check_config

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-auth-token-for-tests"
FROM = "+13125550100"
RAW_PHONE = "(312) 555-0142"
PHONE = "+13125550142"
BAD_PHONE = "+1 000 555 0100"  # passes the engine's light check, not phonenumbers
SECRET_KEY = strong_key("test-secret-key-for-twilio")

SMS = one_sms("Twilio SMS")



def TwilioServer(database_url: str, api_base: str) -> Server:  # noqa: N802 - reads like the class it was
    """The support Server, with a secret key, the fake's API base and its own public URL."""
    return Server(database_url, public_url_is_own=True, secret_key=SECRET_KEY, twilio_api_base=api_base)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio(SID, TOKEN) as f:
        yield f


@pytest.fixture(scope="module")
def tw(fake: FakeTwilio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwilioServer]:
    srv = TwilioServer(migrated_sqlite(tmp_path_factory.mktemp("twilio")), fake.url)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _fresh(tw: TwilioServer, fake: FakeTwilio) -> None:
    tw.clock.set(START)
    fake.reset()


# ---------------------------------------------------------------- helpers
def configured_tenant(tw: TwilioServer, config: dict[str, str] | None = None) -> Any:
    t = tw.tenant(SMS)
    checked = check_config(config) if config else twilio_config(SID, TOKEN, FROM)
    tw.set_channel(t.org_id, "sms", "twilio", checked)
    return t


def trigger(tw: TwilioServer, t: Any, phone: str = RAW_PHONE, name: str = "Ann") -> str:
    return trigger_one(tw.http, t, {"patientName": name, "phone": phone})


def events(tw: TwilioServer, t: Any, iid: str) -> list[dict[str, Any]]:
    r = tw.http.get(t.url(f"/{iid}"), headers=t.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


def of_kind(tw: TwilioServer, t: Any, iid: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in events(tw, t, iid) if e["type"] == kind]


def outbox_row(tw: TwilioServer, org_id: str) -> Any:
    with tw.engine.connect() as conn:
        [row] = conn.execute(
            sa.text(
                "SELECT message_id, status, provider, provider_message_id, error_code, last_error, attempts, "
                "idempotency_key, to_address FROM outbox WHERE org_id = :o"
            ),
            {"o": org_id},
        ).all()
    return row


def sent_to_fake(fake: FakeTwilio) -> list[Any]:
    return [r for r in fake.requests if r.path == fake.messages_path]


def sign(url: str, params: dict[str, str], token: str = TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


def callback(tw: TwilioServer, org_id: str, params: dict[str, str], signature: str | None) -> httpx.Response:
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    return tw.http.post(f"/channels/twilio/{org_id}/status", data=params, headers=headers)


def delivered(tw: TwilioServer, fake: FakeTwilio) -> tuple[Any, str, str]:
    """A tenant with one SMS sent through the fake; returns (tenant, instance id, sid)."""
    t = configured_tenant(tw)
    iid = trigger(tw, t)
    tw.run_worker()
    row = outbox_row(tw, t.org_id)
    assert row.status == "sent"
    return t, iid, str(row.provider_message_id)


# ---------------------------------------------------------------- sending
@pytest.mark.same_on_every_database
def test_an_sms_step_is_sent_through_twilio_once_with_auth_e164_and_the_idempotency_key(
    tw: TwilioServer, fake: FakeTwilio
) -> None:
    t = configured_tenant(tw)
    iid = trigger(tw, t)
    tw.run_worker()
    tw.run_worker()  # nothing more to do: exactly one request
    [req] = fake.requests
    assert req.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert req.response_status == 201
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    row = outbox_row(tw, t.org_id)
    assert req.form == {
        "To": PHONE,
        "From": FROM,
        "Body": "Hi Ann, your appointment is booked.",
        "StatusCallback": f"{tw.base_url}/channels/twilio/{t.org_id}/status",
    }
    assert req.headers["I-Twilio-Idempotency-Token"] == row.idempotency_key
    assert (row.status, row.provider, row.provider_message_id) == ("sent", "twilio", req.sid)
    assert req.sid and req.sid.startswith("SM") and len(req.sid) == 34
    [sent] = of_kind(tw, t, iid, "sms_sent")
    assert sent["detail"]["messageId"] == row.message_id
    assert sent["detail"]["provider"] == "twilio"


@pytest.mark.same_on_every_database
def test_a_messaging_service_is_used_instead_of_from(tw: TwilioServer, fake: FakeTwilio) -> None:
    service = "MG" + "f" * 32
    t = configured_tenant(tw, {"account_sid": SID, "auth_token": TOKEN, "messaging_service_sid": service})
    trigger(tw, t)
    tw.run_worker()
    [req] = fake.requests
    assert req.form["MessagingServiceSid"] == service and "From" not in req.form
    assert outbox_row(tw, t.org_id).status == "sent"


@pytest.mark.same_on_every_database
def test_a_twilio_500_is_retried_after_the_backoff_with_the_same_idempotency_key(
    tw: TwilioServer, fake: FakeTwilio
) -> None:
    t = configured_tenant(tw)
    iid = trigger(tw, t)
    fake.fail_next(1, status=500)
    tw.run_worker()
    row = outbox_row(tw, t.org_id)
    assert (row.status, row.error_code, row.last_error) == ("queued", "20500", "Twilio error 20500")
    [retry] = of_kind(tw, t, iid, "sms_retry")
    assert retry["detail"]["errorCode"] == "20500"
    assert 2 <= retry["detail"]["retryInSeconds"] <= 5  # the dispatcher's first backoff: 2.5-5 s
    assert len(sent_to_fake(fake)) == 1
    tw.run_worker()  # not due yet
    assert len(sent_to_fake(fake)) == 1
    tw.clock.advance(timedelta(seconds=6))
    tw.run_worker()
    first, second = sent_to_fake(fake)
    assert (first.response_status, second.response_status) == (500, 201)
    key = first.headers["I-Twilio-Idempotency-Token"]
    assert key and second.headers["I-Twilio-Idempotency-Token"] == key
    row = outbox_row(tw, t.org_id)
    assert (row.status, row.provider_message_id, row.attempts) == ("sent", second.sid, 2)
    assert len(of_kind(tw, t, iid, "sms_retry")) == 1
    assert len(of_kind(tw, t, iid, "sms_sent")) == 1


@pytest.mark.same_on_every_database
def test_a_twilio_429_is_retried_only_after_its_retry_after(tw: TwilioServer, fake: FakeTwilio) -> None:
    t = configured_tenant(tw)
    iid = trigger(tw, t)
    fake.fail_next(1, status=429, retry_after=120)
    tw.run_worker()
    [retry] = of_kind(tw, t, iid, "sms_retry")
    assert retry["detail"]["retryInSeconds"] == 120
    tw.clock.advance(timedelta(seconds=119))
    tw.run_worker()
    assert len(sent_to_fake(fake)) == 1
    assert outbox_row(tw, t.org_id).status == "queued"
    tw.clock.advance(timedelta(seconds=2))
    tw.run_worker()
    assert [r.response_status for r in sent_to_fake(fake)] == [429, 201]
    assert outbox_row(tw, t.org_id).status == "sent"


@pytest.mark.same_on_every_database
def test_a_twilio_400_fails_the_message_permanently_with_twilios_code(
    tw: TwilioServer, fake: FakeTwilio
) -> None:
    t = configured_tenant(tw)
    iid = trigger(tw, t)
    fake.reject_next(1, status=400, code=21211)
    tw.run_worker()
    tw.clock.advance(timedelta(hours=2))
    tw.run_worker()
    assert len(sent_to_fake(fake)) == 1  # never retried
    row = outbox_row(tw, t.org_id)
    assert (row.status, row.error_code, row.last_error) == ("failed", "21211", "Twilio error 21211")
    [failed] = of_kind(tw, t, iid, "sms_failed")
    assert failed["detail"]["errorCode"] == "21211"
    assert PHONE not in json.dumps(events(tw, t, iid))  # Twilio's message echoes the number: not kept


@pytest.mark.same_on_every_database
def test_wrong_credentials_fail_permanently_with_20003(tw: TwilioServer, fake: FakeTwilio) -> None:
    t = configured_tenant(tw, {"account_sid": SID, "auth_token": "wrong", "from": FROM})
    iid = trigger(tw, t)
    tw.run_worker()
    assert [r.response_status for r in fake.requests] == [401]
    assert outbox_row(tw, t.org_id).error_code == "20003"
    assert len(of_kind(tw, t, iid, "sms_failed")) == 1


@pytest.mark.same_on_every_database
def test_a_number_phonenumbers_rejects_fails_without_calling_twilio(
    tw: TwilioServer, fake: FakeTwilio
) -> None:
    t = configured_tenant(tw)
    iid = trigger(tw, t, phone=BAD_PHONE)
    tw.run_worker()
    assert fake.requests == []
    row = outbox_row(tw, t.org_id)
    assert (row.status, row.error_code, row.last_error) == (
        "failed",
        "invalid_number",
        "invalid phone number",
    )
    [failed] = of_kind(tw, t, iid, "sms_failed")
    assert failed["detail"]["errorCode"] == "invalid_number"


@pytest.mark.same_on_every_database
def test_a_timeout_is_a_transient_failure(fake: FakeTwilio) -> None:
    settings = Settings(twilio_api_base=fake.url, public_base_url=None)
    provider = TwilioProvider({"account_sid": SID, "auth_token": TOKEN, "from": FROM}, settings, timeout=0.3)
    message = OutboundMessage("org", "msg-1", "sms", PHONE, None, "Hello", None, "idem-1")
    fake.sleep_next(1, seconds=1.0)
    result = provider.send(message)
    assert (result.ok, result.permanent, result.error_code) == (False, False, "timeout")
    assert result.error == "Twilio timeout"
    ok = provider.send(message)
    assert ok.ok and ok.provider_message_id and "StatusCallback" not in fake.requests[-1].form
    provider.close()


@pytest.mark.same_on_every_database
def test_an_unreachable_twilio_is_a_transient_failure() -> None:
    settings = Settings(twilio_api_base="http://127.0.0.1:9", public_base_url=None)
    provider = TwilioProvider({"account_sid": SID, "auth_token": TOKEN, "from": FROM}, settings, timeout=2)
    result = provider.send(OutboundMessage("org", "m", "sms", PHONE, None, "Hello", None, "k"))
    assert (result.ok, result.permanent, result.error_code) == (False, False, "network")
    assert PHONE not in (result.error or "")


# ---------------------------------------------------------------- status callbacks
@pytest.mark.same_on_every_database
def test_a_signed_delivered_callback_updates_the_outbox_and_the_timeline(
    tw: TwilioServer, fake: FakeTwilio
) -> None:
    t, iid, sid = delivered(tw, fake)
    url = f"{tw.base_url}/channels/twilio/{t.org_id}/status"
    params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": SID, "To": PHONE}
    r = callback(tw, t.org_id, params, sign(url, params))
    assert r.status_code == 204, r.text
    assert outbox_row(tw, t.org_id).status == "delivered"
    [status] = of_kind(tw, t, iid, "sms_status")
    assert status["detail"] == {
        "messageId": outbox_row(tw, t.org_id).message_id,
        "status": "delivered",
        "errorCode": None,
    }


@pytest.mark.same_on_every_database
def test_an_undelivered_callback_records_twilios_error_code(tw: TwilioServer, fake: FakeTwilio) -> None:
    t, iid, sid = delivered(tw, fake)
    url = f"{tw.base_url}/channels/twilio/{t.org_id}/status"
    params = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert callback(tw, t.org_id, params, sign(url, params)).status_code == 204
    row = outbox_row(tw, t.org_id)
    assert (row.status, row.error_code) == ("undelivered", "30003")
    [status] = of_kind(tw, t, iid, "sms_status")
    assert status["detail"]["errorCode"] == "30003"


@pytest.mark.same_on_every_database
def test_an_intermediate_status_never_requeues_the_message(tw: TwilioServer, fake: FakeTwilio) -> None:
    t, iid, sid = delivered(tw, fake)
    url = f"{tw.base_url}/channels/twilio/{t.org_id}/status"
    params = {"MessageSid": sid, "MessageStatus": "queued"}
    assert callback(tw, t.org_id, params, sign(url, params)).status_code == 204
    tw.run_worker()
    assert outbox_row(tw, t.org_id).status == "sent"
    assert len(sent_to_fake(fake)) == 1
    assert of_kind(tw, t, iid, "sms_status") == []


@pytest.fixture()
def tw_db(fake: FakeTwilio, tmp_path: Path) -> Iterator[TwilioServer]:
    """A server on the database the suite runs on (the module's `tw` is SQLite only)."""
    with own_database(tmp_path, "journeys.db") as url:
        srv = TwilioServer(url, fake.url)
        srv.clock.set(START)
        yield srv
        srv.stop()
        srv.engine.dispose()


def early_statuses(tw: TwilioServer, org_id: str) -> list[Any]:
    with tw.engine.connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT provider_message_id, status FROM early_delivery_statuses WHERE org_id = :o"),
                {"o": org_id},
            )
        )


@pytest.mark.parametrize(("status", "code"), [("delivered", None), ("failed", "30007")])
def test_a_final_status_called_back_before_the_send_is_recorded_is_applied_once_it_is(
    tw_db: TwilioServer, fake: FakeTwilio, status: str, code: str | None
) -> None:
    tw = tw_db
    t = configured_tenant(tw)
    fake.call_back_first(status, t.org_id)
    iid = trigger(tw, t)
    tw.run_worker()
    sends = [(r.response_status, r.sid) for r in fake.requests]
    assert len(fake.callbacks) == 1, (fake.callbacks, sends)
    [(sid, called, answer)] = fake.callbacks
    assert (called, answer) == (status, 204)  # acknowledged, though no message had that sid yet
    row = outbox_row(tw, t.org_id)
    assert (row.provider_message_id, row.status) == (sid, status)
    [event] = of_kind(tw, t, iid, "sms_status")
    assert event["detail"] == {"messageId": row.message_id, "status": status, "errorCode": None}
    kinds = [e["type"] for e in events(tw, t, iid)]
    assert kinds.index("sms_sent") < kinds.index("sms_status")
    assert early_statuses(tw, t.org_id) == []
    # Twilio's later (duplicate) callback changes the status again but nothing else breaks.
    url = f"{tw.base_url}/channels/twilio/{t.org_id}/status"
    params = {"MessageSid": sid, "MessageStatus": status}
    if code:
        params["ErrorCode"] = code
    assert callback(tw, t.org_id, params, sign(url, params)).status_code == 204
    assert outbox_row(tw, t.org_id).status == status


def test_a_status_for_a_sid_no_message_has_is_held_then_pruned(tw_db: TwilioServer) -> None:
    tw = tw_db
    t = configured_tenant(tw)
    url = f"{tw.base_url}/channels/twilio/{t.org_id}/status"
    first = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered"}
    assert callback(tw, t.org_id, first, sign(url, first)).status_code == 204
    assert [tuple(r) for r in early_statuses(tw, t.org_id)] == [(first["MessageSid"], "delivered")]
    # Intermediate statuses are not held.
    queued = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "sent"}
    assert callback(tw, t.org_id, queued, sign(url, queued)).status_code == 204
    assert len(early_statuses(tw, t.org_id)) == 1
    tw.clock.advance(timedelta(days=1, minutes=1))
    later = {"MessageSid": "SM" + "c" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert callback(tw, t.org_id, later, sign(url, later)).status_code == 204
    assert [tuple(r) for r in early_statuses(tw, t.org_id)] == [(later["MessageSid"], "undelivered")]


def test_nul_in_a_signed_callback_is_dropped_never_a_500(tw_db: TwilioServer, fake: FakeTwilio) -> None:
    """PostgreSQL cannot store or compare NUL: it is dropped once the signature verified."""
    tw = tw_db
    t, iid, sid = delivered(tw, fake)
    url = f"{tw.base_url}/channels/twilio/{t.org_id}/status"
    params = {"MessageSid": sid + "\u0000", "MessageStatus": "undelivered\u0000", "ErrorCode": "300\u000003"}
    r = callback(tw, t.org_id, params, sign(url, params))
    assert r.status_code == 204, r.text
    row = outbox_row(tw, t.org_id)
    assert (row.status, row.error_code) == ("undelivered", "30003")
    unknown = {"MessageSid": "\u0000SM" + "d" * 32, "MessageStatus": "delivered"}
    assert callback(tw, t.org_id, unknown, sign(url, unknown)).status_code == 204
    assert [tuple(r) for r in early_statuses(tw, t.org_id)] == [("SM" + "d" * 32, "delivered")]
    headers = {"X-Twilio-Signature": "x"}
    r = tw.http.post(f"/channels/twilio/{t.org_id}%00/status", data=params, headers=headers)
    assert r.status_code == 400 and r.json() == ["orgId: must not contain NUL characters (\\u0000)"]


def big_stream(total: int = 64 * 1024 * 1024, piece: int = 1024 * 1024) -> Iterator[bytes]:
    """A form body of `total` bytes, produced as it is sent (never held whole)."""
    yield b"MessageSid=SM1&MessageStatus=delivered&ErrorCode="
    chunk = b"x" * piece
    for _ in range(total // piece):
        yield chunk


def test_a_large_streamed_callback_is_413_before_the_signature_is_checked(tw_db: TwilioServer) -> None:
    tw = tw_db
    t = configured_tenant(tw)
    limit = tw.settings.max_twilio_body_bytes
    assert limit == 64 * 1024
    headers = {"X-Twilio-Signature": "x"}
    r = tw.http.post(f"/channels/twilio/{t.org_id}/status", content=big_stream(), headers=headers)
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413, r.text
    assert r.json() == [f"request body is larger than the {limit} byte limit"]
    assert early_statuses(tw, t.org_id) == []


@pytest.mark.same_on_every_database
@pytest.mark.parametrize("declared", [250 * 1024 * 1024, None], ids=["content-length", "chunked"])
def test_an_oversized_callback_is_answered_413_before_its_body_is_read(
    tw: TwilioServer, declared: int | None
) -> None:
    """The answer comes while the body is still unfinished: the server does not wait for (and
    buffer) all of it — an unsigned 250 MB post once took it from 100 MB to 500 MB."""
    t = configured_tenant(tw)
    path = f"/channels/twilio/{t.org_id}/status"
    body = b"MessageSid=SM1&MessageStatus=delivered&ErrorCode=" + b"x" * (128 * 1024)
    status, answer = post_unfinished(tw.base_url, path, body, declared_length=declared)
    assert status == 413, answer


@pytest.mark.same_on_every_database
def test_a_callback_with_an_overlong_sid_is_refused(tw: TwilioServer, fake: FakeTwilio) -> None:
    t = configured_tenant(tw)
    url = f"{tw.base_url}/channels/twilio/{t.org_id}/status"
    params = {"MessageSid": "SM" + "a" * 63, "MessageStatus": "delivered"}
    r = callback(tw, t.org_id, params, sign(url, params))
    assert r.status_code == 400 and r.json() == ["MessageSid: at most 64 characters"]
    assert early_statuses(tw, t.org_id) == []


@pytest.mark.same_on_every_database
@pytest.mark.parametrize("case", ["bad signature", "no signature", "other token", "tampered"])
def test_an_unverified_callback_is_refused_and_changes_nothing(
    tw: TwilioServer, fake: FakeTwilio, case: str
) -> None:
    t, iid, sid = delivered(tw, fake)
    url = f"{tw.base_url}/channels/twilio/{t.org_id}/status"
    params = {"MessageSid": sid, "MessageStatus": "delivered"}
    signature = {
        "bad signature": "bm90IGEgc2lnbmF0dXJl",
        "no signature": None,
        "other token": sign(url, params, token="someone-else"),
        "tampered": sign(url, {**params, "MessageStatus": "failed"}),
    }[case]
    r = callback(tw, t.org_id, params, signature)
    assert r.status_code == 403
    assert isinstance(r.json(), list) and r.json()
    assert outbox_row(tw, t.org_id).status == "sent"
    assert of_kind(tw, t, iid, "sms_status") == []


@pytest.mark.same_on_every_database
def test_a_callback_for_an_unknown_org_or_an_org_without_twilio_is_refused(
    tw: TwilioServer, fake: FakeTwilio
) -> None:
    for org_id in ("no-such-org", tw.tenant(SMS).org_id):
        url = f"{tw.base_url}/channels/twilio/{org_id}/status"
        params = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
        r = callback(tw, org_id, params, sign(url, params))
        assert r.status_code == 403
        assert isinstance(r.json(), list)


@pytest.mark.same_on_every_database
def test_a_callback_signed_for_another_org_is_refused(tw: TwilioServer, fake: FakeTwilio) -> None:
    t, iid, sid = delivered(tw, fake)
    other = configured_tenant(tw)
    url = f"{tw.base_url}/channels/twilio/{other.org_id}/status"  # signed for the other org's URL
    params = {"MessageSid": sid, "MessageStatus": "delivered"}
    assert callback(tw, t.org_id, params, sign(url, params)).status_code == 403
    assert outbox_row(tw, t.org_id).status == "sent"


# ---------------------------------------------------------------- configuration and the CLI
@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"auth_token": TOKEN, "from": FROM}, "account_sid is required"),
        ({"account_sid": "XX123", "auth_token": TOKEN, "from": FROM}, "starting with 'AC'"),
        ({"account_sid": SID, "from": FROM}, "auth_token is required"),
        ({"account_sid": SID, "auth_token": TOKEN}, "one of from"),
        ({"account_sid": SID, "auth_token": TOKEN, "from": FROM, "messaging_service_sid": "MG1"}, "not both"),
        ({"account_sid": SID, "auth_token": TOKEN, "messaging_service_sid": "XY1"}, "starting with 'MG'"),
        ({"account_sid": SID, "auth_token": TOKEN, "from": "12"}, "valid phone number"),
        ({"account_sid": SID, "auth_token": TOKEN, "from": FROM, "colour": "red"}, "unknown key(s) colour"),
    ],
)
def test_check_config_rejects_bad_configurations(config: dict[str, str], expected: str) -> None:
    with pytest.raises(ProviderConfigError) as info:
        check_config(config)
    assert expected in str(info.value)
    assert TOKEN not in str(info.value)


@pytest.mark.same_on_every_database
def test_check_config_normalises_from_to_e164() -> None:
    config = check_config({"account_sid": SID, "auth_token": TOKEN, "from": "+1 (312) 555-0100"})
    assert config == {"account_sid": SID, "auth_token": TOKEN, "from": FROM}


def run_cli(tmp_path: Path, *args: str, secret: str | None = SECRET_KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
    if secret is not None:
        env["JOURNEYS_SECRET_KEY"] = secret
    return subprocess.run(
        [*JOURNEYS, "--db", f"sqlite:///{tmp_path / 'cli.db'}", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.same_on_every_database
def test_the_cli_configures_twilio_validates_and_never_prints_secrets(tmp_path: Path) -> None:
    created = run_cli(tmp_path, "org", "create", "Clinic", "--json")
    assert created.returncode == 0, created.stderr
    org = json.loads(created.stdout)["id"]
    base = ["channel", "set", "--org", org, "--channel", "sms", "--provider", "twilio"]

    missing = run_cli(tmp_path, *base, "--set", f"account_sid={SID}", "--set", f"from={FROM}")
    assert missing.returncode != 0
    assert "auth_token is required" in missing.stderr

    bad_sid = run_cli(
        tmp_path, *base, "--set", "account_sid=XY1", "--set", f"auth_token={TOKEN}", "--set", f"from={FROM}"
    )
    assert bad_sid.returncode != 0
    assert "account_sid must be a Twilio Account SID" in bad_sid.stderr
    assert TOKEN not in bad_sid.stderr + bad_sid.stdout

    good = [*base, "--set", f"account_sid={SID}", "--set", f"auth_token={TOKEN}", "--set", f"from={FROM}"]
    no_key = run_cli(tmp_path, *good, secret=None)
    assert no_key.returncode != 0
    assert "JOURNEYS_SECRET_KEY is not set" in no_key.stderr
    assert TOKEN not in no_key.stderr + no_key.stdout

    ok = run_cli(tmp_path, *good)
    assert ok.returncode == 0, ok.stderr
    assert (ok.stdout, ok.stderr) == (f"sms for org {org} now goes through twilio\n", "")
    for args in (["channel", "list"], ["channel", "list", "--json"]):
        listed = run_cli(tmp_path, *args)
        assert listed.returncode == 0, listed.stderr
        assert "twilio" in listed.stdout
        for secret in (TOKEN, SID, SECRET_KEY):
            assert secret not in listed.stdout + listed.stderr

    removed = run_cli(tmp_path, "channel", "remove", "--org", org, "--channel", "sms")
    assert (removed.returncode, removed.stdout, removed.stderr) == (
        0,
        f"removed the sms provider of org {org}\n",
        "",
    )
    again = run_cli(tmp_path, "channel", "remove", "--org", org, "--channel", "sms")
    assert (again.returncode, again.stdout) == (1, "")
    assert again.stderr == f"error: org {org} has no provider for sms\n"
