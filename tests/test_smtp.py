"""Email over SMTP, end to end: a journey triggered over HTTP queues an email, `run_worker()`
delivers it through the SMTP provider to a real aiosmtpd server started here (STARTTLS with a
self-signed certificate made for the test, AUTH required; implicit TLS; plain), and the outbox
row and timeline say what happened: sent, refused (permanent), server down (retried)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support.api import trigger_one
from support.databases import migrated_sqlite
from support.keys import strong_key
from support.net import free_port
from support.server import Server, Tenant
from support.smtp import Mailbox
from support.smtp import authenticator as password_authenticator

from journeys.config import Settings
from journeys.messaging.providers import registry
from journeys.messaging.providers.base import OutboundMessage, SendResult

pytestmark = pytest.mark.same_on_every_database  # no test here depends on JOURNEYS_TEST_DATABASE

SECRET = strong_key("test-secret-key-for-smtp")
USER, PASSWORD = "journeys", "s3cret-pass"
FROM = "reminders@clinic.example"
REFUSED = "nobody@example.com"


# ---------------------------------------------------------------- our server, with a secret key
def SmtpTestServer(database_url: str) -> Server:  # noqa: N802 - reads like the class it was
    """support.server.Server with JOURNEYS_SECRET_KEY set (the session server has none)."""
    return Server(database_url, secret_key=SECRET)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpTestServer]:
    srv = SmtpTestServer(migrated_sqlite(tmp_path_factory.mktemp("smtpdb")))
    yield srv
    srv.stop()


# ---------------------------------------------------------------- a real SMTP server
authenticator = password_authenticator(USER, PASSWORD)


@dataclass
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certificate]:
    """A self-signed certificate for 127.0.0.1, trusted by the client (SSL_CERT_FILE) here only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "journeys test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    paths = Certificate(folder / "cert.pem", folder / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSL_CERT_FILE", str(paths.cert))  # what ssl.create_default_context() trusts
        yield paths


@dataclass
class Smtp:
    recorder: Mailbox
    controller: Controller
    port: int
    kwargs: dict[str, Any]

    def stop(self) -> None:
        self.controller.stop()

    def start(self) -> None:
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port, **self.kwargs)
        self.controller.start()


def smtp_server(**kwargs: Any) -> Smtp:
    smtp = Smtp(Mailbox(refuse=REFUSED), None, free_port(), kwargs)  # type: ignore[arg-type]
    smtp.start()
    return smtp


@pytest.fixture(scope="module")
def starttls_smtp(certificate: Certificate) -> Iterator[Smtp]:
    """STARTTLS required, AUTH required (and only over TLS)."""
    smtp = smtp_server(
        tls_context=certificate.server_context(),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    yield smtp
    smtp.stop()


# ---------------------------------------------------------------- helpers
JOURNEY = """
name: Email reminder
parameters:
  - {name: key, identifier: true}
  - {name: patientName}
  - {name: email, type: email}
flows:
  - id: main
    name: Main
    steps:
      - id: 10
        type: send_email
        to: email
        subject: "A note for {{ patientName }}"
        body: "Hi {{ patientName }}, see you soon."
        html: "<p>Hi {{ patientName }},</p><p>see you soon.</p>"
      - {id: 20, type: end}
"""


def configure(srv: SmtpTestServer, org_id: str, config: dict[str, Any]) -> None:
    """What `journeys channel set --channel email --provider smtp` does."""
    srv.set_channel(org_id, "email", "smtp", registry.check_config("smtp", "email", config))


def smtp_tenant(srv: SmtpTestServer, smtp: Smtp, **config: Any) -> Tenant:
    t = srv.tenant(JOURNEY)
    base = {"host": "127.0.0.1", "port": smtp.port, "from_address": FROM, "from_name": "Lakeside Clinic"}
    configure(srv, t.org_id, {**base, "timeout": 5, **config})
    return t


def trigger(srv: SmtpTestServer, t: Tenant, name: str, to: str) -> str:
    return trigger_one(srv.http, t, {"patientName": name, "email": to}, value="k1")


def timeline(srv: SmtpTestServer, t: Tenant, iid: str) -> list[dict[str, Any]]:
    r = srv.http.get(t.url(f"/{iid}"), headers=t.headers)
    assert r.status_code == 200, r.text
    return [e for e in r.json()["events"] if e["type"].startswith("email_")]


def outbox_row(srv: SmtpTestServer, org_id: str) -> Any:
    with srv.engine.connect() as conn:
        [row] = conn.execute(
            sa.text(
                "SELECT status, provider, provider_message_id, error_code, last_error, attempts, "
                "idempotency_key FROM outbox WHERE org_id = :o"
            ),
            {"o": org_id},
        ).all()
    return row


def parts(msg: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in msg.walk() if not part.is_multipart()}


# ---------------------------------------------------------------- end to end
def test_email_is_delivered_over_starttls_with_auth(app_server: SmtpTestServer, starttls_smtp: Smtp) -> None:
    srv, smtp = app_server, starttls_smtp
    before = len(smtp.recorder.received)
    t = smtp_tenant(srv, smtp, security="starttls", username=USER, password=PASSWORD)
    iid = trigger(srv, t, "Ann Lee", "ann@example.com")
    srv.run_worker()

    [(mail_from, rcpt_tos, msg, authenticated)] = smtp.recorder.received[before:]
    assert (mail_from, rcpt_tos, authenticated) == (FROM, ["ann@example.com"], True)
    assert msg["To"] == "ann@example.com"
    assert msg["From"] == f"Lakeside Clinic <{FROM}>"
    assert msg["Subject"] == "A note for Ann Lee"
    assert msg.get_content_type() == "multipart/alternative"
    assert {k: v.strip() for k, v in parts(msg).items()} == {
        "text/plain": "Hi Ann Lee, see you soon.",
        "text/html": "<p>Hi Ann Lee,</p><p>see you soon.</p>",
    }
    row = outbox_row(srv, t.org_id)
    instance_id, event_id = row.idempotency_key.split(":")
    assert msg["Message-ID"] == f"<{instance_id}.{event_id}@clinic.example>"
    assert (row.status, row.provider, row.provider_message_id, row.attempts) == ("sent", "smtp", "Q1", 1)
    [sent] = [e for e in timeline(srv, t, iid) if e["type"] == "email_sent"]
    assert sent["detail"] == {"messageId": sent["detail"]["messageId"], "provider": "smtp", "attempt": 1}


def test_a_refused_recipient_fails_permanently_without_the_address_in_the_error(
    app_server: SmtpTestServer, starttls_smtp: Smtp, caplog: pytest.LogCaptureFixture
) -> None:
    srv, smtp = app_server, starttls_smtp
    before = len(smtp.recorder.received)
    t = smtp_tenant(srv, smtp, username=USER, password=PASSWORD)  # security defaults to starttls
    iid = trigger(srv, t, "Secret Name", REFUSED)
    srv.run_worker()

    assert smtp.recorder.received[before:] == []
    row = outbox_row(srv, t.org_id)
    assert (row.status, row.error_code, row.attempts) == ("failed", "550", 1)
    assert (
        row.last_error == "recipient refused: 550 5.1.1 <address>: Recipient address rejected: User unknown"
    )
    [failed] = [e for e in timeline(srv, t, iid) if e["type"] == "email_failed"]
    assert failed["detail"]["errorCode"] == "550"
    assert "nobody" not in failed["detail"]["error"]
    assert "nobody" not in caplog.text and "Secret Name" not in caplog.text
    # Nothing more happens later: a permanent failure is not retried.
    srv.clock.advance(dt.timedelta(hours=2))
    srv.run_worker()
    assert outbox_row(srv, t.org_id).attempts == 1


def test_server_down_is_retried_and_delivered_once_after_it_is_back(
    app_server: SmtpTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    srv = app_server
    smtp = smtp_server()  # plain, no AUTH
    try:
        t = smtp_tenant(srv, smtp, security="none")
        smtp.stop()
        iid = trigger(srv, t, "Bo Diddley", "bo@example.com")
        srv.run_worker()

        row = outbox_row(srv, t.org_id)
        assert (row.status, row.attempts) == ("queued", 1)
        assert row.last_error == "cannot reach the SMTP server: SMTPConnectError"
        [retry] = [e for e in timeline(srv, t, iid) if e["type"] == "email_retry"]
        assert retry["detail"]["errorCode"] is None and 0 < retry["detail"]["retryInSeconds"] <= 5
        assert "bo@example.com" not in caplog.text

        smtp.start()
        srv.run_worker()  # not due yet: the backoff holds it
        assert smtp.recorder.received == []
        srv.clock.advance(dt.timedelta(seconds=6))
        srv.run_worker()
        srv.clock.advance(dt.timedelta(minutes=5))
        srv.run_worker()
        [(_, rcpt_tos, msg, authenticated)] = smtp.recorder.received
        assert (rcpt_tos, authenticated, msg["Subject"]) == (
            ["bo@example.com"],
            False,
            "A note for Bo Diddley",
        )
        row = outbox_row(srv, t.org_id)
        assert (row.status, row.provider, row.attempts) == ("sent", "smtp", 2)
        assert [e["type"] for e in timeline(srv, t, iid)] == ["email_queued", "email_retry", "email_sent"]
    finally:
        smtp.stop()


def test_a_resend_after_a_4xx_carries_the_same_message_id(
    app_server: SmtpTestServer, certificate: Certificate
) -> None:
    srv = app_server
    smtp = smtp_server(ssl_context=certificate.server_context())  # implicit TLS
    smtp.recorder.defer_data = 1
    try:
        t = smtp_tenant(srv, smtp, security="tls")
        iid = trigger(srv, t, "Cy Young", "cy@example.com")
        srv.run_worker()
        row = outbox_row(srv, t.org_id)
        assert (row.status, row.error_code, row.last_error) == (
            "queued",
            "451",
            "message refused: 451 4.3.0 Try again later",
        )
        srv.clock.advance(dt.timedelta(seconds=6))
        srv.run_worker()
        [(_, _, msg, _)] = smtp.recorder.received
        assert outbox_row(srv, t.org_id).status == "sent"
        assert [e["type"] for e in timeline(srv, t, iid)] == ["email_queued", "email_retry", "email_sent"]
        instance_id, event_id = row.idempotency_key.split(":")
        assert msg["Message-ID"] == f"<{instance_id}.{event_id}@clinic.example>"
    finally:
        smtp.stop()


def test_wrong_credentials_are_retried_not_failed(app_server: SmtpTestServer, starttls_smtp: Smtp) -> None:
    """Bad credentials are the org's configuration, not this message: it waits for a fix."""
    srv, smtp = app_server, starttls_smtp
    t = smtp_tenant(srv, smtp, username=USER, password="wrong")
    iid = trigger(srv, t, "Di Prince", "di@example.com")
    srv.run_worker()
    row = outbox_row(srv, t.org_id)
    assert (row.status, row.error_code) == ("queued", "535"), row.last_error
    assert row.last_error.startswith("authentication failed: 535")
    # The operator fixes the password; the retry delivers.
    before = len(smtp.recorder.received)
    srv.clock.advance(dt.timedelta(seconds=1))  # the dispatcher notices a change by its updated_at
    configure(
        srv,
        t.org_id,
        {
            "host": "127.0.0.1",
            "port": smtp.port,
            "from_address": FROM,
            "username": USER,
            "password": PASSWORD,
        },
    )
    srv.clock.advance(dt.timedelta(seconds=6))
    srv.run_worker()
    assert len(smtp.recorder.received) == before + 1
    assert outbox_row(srv, t.org_id).status == "sent"
    assert [e["type"] for e in timeline(srv, t, iid)] == ["email_queued", "email_retry", "email_sent"]


def test_starttls_is_required_when_asked_for(app_server: SmtpTestServer) -> None:
    """security starttls never falls back to plain text (the server here offers no STARTTLS)."""
    srv = app_server
    smtp = smtp_server()
    try:
        t = smtp_tenant(srv, smtp, security="starttls")
        trigger(srv, t, "Ed Wood", "ed@example.com")
        srv.run_worker()
        row = outbox_row(srv, t.org_id)
        assert row.status == "queued"
        assert row.last_error == "SMTP error: SMTP STARTTLS extension not supported by server."
        assert smtp.recorder.received == []
    finally:
        smtp.stop()


# ---------------------------------------------------------------- configuration
def test_check_config_normalises() -> None:
    assert registry.check_config("smtp", "email", {"host": " mail.example ", "from_address": FROM}) == {
        "host": "mail.example",
        "port": 587,
        "security": "starttls",
        "from_address": FROM,
        "timeout": 15.0,
    }
    # Values from `--set key=value` arrive as strings.
    assert registry.check_config(
        "smtp",
        "email",
        {
            "host": "mail.example",
            "security": "TLS",
            "timeout": "7.5",
            "from_address": FROM,
            "from_name": "Clinic",
            "username": "u",
            "password": "p",
        },
    ) == {
        "host": "mail.example",
        "port": 465,
        "security": "tls",
        "from_address": FROM,
        "from_name": "Clinic",
        "timeout": 7.5,
        "username": "u",
        "password": "p",
    }
    assert (
        registry.check_config("smtp", "email", {"host": "h", "port": "2525", "from_address": FROM})["port"]
        == 2525
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"from_address": FROM}, "smtp: host is required"),
        ({"host": " ", "from_address": FROM}, "smtp: host is required"),
        ({"host": "h"}, "smtp: from_address is required"),
        ({"host": "h", "from_address": "clinic"}, "smtp: from_address 'clinic' is not an email address"),
        ({"host": "h", "from_address": FROM, "port": "smtp"}, "smtp: port must be a number, got 'smtp'"),
        (
            {"host": "h", "from_address": FROM, "port": 70000},
            "smtp: port must be a whole number from 1 to 65535, got 70000",
        ),
        (
            {"host": "h", "from_address": FROM, "port": 0},
            "smtp: port must be a whole number from 1 to 65535, got 0",
        ),
        (
            {"host": "h", "from_address": FROM, "security": "ssl"},
            "smtp: security must be one of starttls, tls, none, got 'ssl'",
        ),
        (
            {"host": "h", "from_address": FROM, "username": "u"},
            "smtp: username is set but password is not (give both or neither)",
        ),
        (
            {"host": "h", "from_address": FROM, "password": "p"},
            "smtp: password is set but username is not (give both or neither)",
        ),
        (
            {"host": "h", "from_address": FROM, "timeout": 0},
            "smtp: timeout must be more than 0 and at most 300 seconds",
        ),
        (
            {"host": "h", "from_address": FROM, "from_name": "A\r\nBcc: x@y.z"},
            "smtp: from_name must not contain line breaks",
        ),
        (
            {"host": "h", "from_address": FROM, "sender": "x"},
            "smtp: unknown key sender (known: host, port, security, username, password, from_address, "
            "from_name, timeout)",
        ),
    ],
)
def test_check_config_rejects_bad_input_clearly(config: dict[str, Any], message: str) -> None:
    with pytest.raises(registry.ProviderConfigError) as err:
        registry.check_config("smtp", "email", config)
    assert str(err.value) == message


def test_send_works_from_inside_a_running_event_loop() -> None:
    """The provider is synchronous; called where an event loop already runs, it still sends."""
    smtp = smtp_server()
    try:
        provider = registry.build(
            "smtp",
            registry.check_config(
                "smtp",
                "email",
                {
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "security": "none",
                    "from_address": FROM,
                    "from_name": "Clínica Ñ",
                },
            ),
            Settings.defaults(),
        )
        message = OutboundMessage("org", "m1", "email", "zoe@example.com", "Hola", "Texto", None, "i-1:e-1")

        async def inside_a_loop() -> SendResult:
            return provider.send(message)

        assert asyncio.run(inside_a_loop()) == SendResult(ok=True, provider_message_id="Q1")
        [(_, _, msg, _)] = smtp.recorder.received
        assert (msg["From"], msg.get_content_type(), msg["Message-ID"]) == (
            f"Clínica Ñ <{FROM}>",
            "text/plain",
            "<i-1.e-1@clinic.example>",
        )
    finally:
        smtp.stop()
