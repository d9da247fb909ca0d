"""Outbound requests to tenant-chosen URLs: webhook create/verify/deliveries and `http_request`
steps reach public addresses only (checked after DNS, the connection pinned to the checked
address, redirects not followed), JOURNEYS_OUTBOUND_ALLOW lets on-premise endpoints through,
failures do not tell what answered, and credentials in webhook URLs are never shown back.

Two real servers, each on a database of its own (SQLite, or PostgreSQL with
JOURNEYS_TEST_DATABASE=postgresql): `strict` with the default policy, `open` allowing loopback.
Real local HTTP receivers stand in for the services; each records every request it gets, so a
refused request is shown to have sent nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError
from support.api import trigger_one
from support.cli import JOURNEYS
from support.databases import own_database
from support.journeys import wait_journey
from support.keys import strong_key
from support.net import LocalHttpServer
from support.server import Server, Tenant

from journeys.config import Settings
from journeys.ids import new_id
from journeys.keys.box import SecretBox
from journeys.outbound import ADDRESS_NOT_ALLOWED, REQUEST_FAILED, OutboundPolicy, is_public, mask_url
from journeys.store import webhooks as webhooks_repo
from journeys.store.db import transaction

SECRET_KEY = strong_key("outbound-test-secret-key")
HOOK_SECRET = "whsec-outbound-0123456789"
OPEN_ALLOW = "127.0.0.1/32,localhost"

WAIT = wait_journey("Outbound wait")

# The whole URL is a template, and the answer is saved into a searchable parameter: the
# shape an attacker would use to read cloud metadata back.
FETCH = """
name: Outbound fetch
parameters:
  - {name: key, identifier: true}
  - {name: target}
  - {name: answer, required: false}
flows:
  - id: main
    name: Main
    steps:
      - id: 10
        type: http_request
        method: GET
        url: "{{ target }}"
        timeout: 5s
        save: {answer: data.secret}
        on_failure: 90
      - {id: 20, type: end, outcome: reached}
      - {id: 90, type: end, outcome: refused}
"""


class Receiver:
    """A real HTTP endpoint on `host`: answers the webhook challenge, GETs with a JSON "secret",
    POSTs with 200, or everything with a redirect to `redirect_to`; records every request."""

    def __init__(self, host: str = "127.0.0.1", redirect_to: str | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.redirect_to = redirect_to
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                rec.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers.items()),
                        "body": self.rfile.read(length) if length else b"",
                    }
                )

            def do_GET(self) -> None:  # noqa: N802
                self._record()
                if rec.redirect_to:
                    return self._answer(302, b"", {"Location": rec.redirect_to})
                code = parse_qs(urlsplit(self.path).query).get("challengeCode", [""])[0]
                if code:
                    answer = hmac.new(HOOK_SECRET.encode(), code.encode(), hashlib.sha256).hexdigest()
                    return self._answer(200, answer.encode())
                self._answer(200, json.dumps({"data": {"secret": "metadata-credentials"}}).encode())

            def do_POST(self) -> None:  # noqa: N802
                self._record()
                if rec.redirect_to:
                    return self._answer(307, b"", {"Location": rec.redirect_to})
                self._answer(200, b"")

        self._server = LocalHttpServer(Handler, host)
        self.port = self._server.port
        self.url = f"{self._server.base_url}/hooks"

    def stop(self) -> None:
        self._server.stop()


def _server(tmp: Path, **settings: Any) -> Iterator[Server]:
    with own_database(tmp) as url:
        s = Server(url, secret_key=SECRET_KEY, **settings)
        try:
            yield s
        finally:
            s.stop()
            s.engine.dispose()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server(tmp_path_factory.mktemp("strict"), outbound_allow="")  # the default


@pytest.fixture(scope="module")
def open_(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server(tmp_path_factory.mktemp("open"), outbound_allow=OPEN_ALLOW)


@pytest.fixture()
def rec() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def blocked_urls(port: int) -> list[str]:
    """Every spelling of an internal address; those with `port` point at a live receiver."""
    return [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        f"http://127.0.0.1:{port}/hooks",
        f"http://localhost:{port}/hooks",
        f"http://0x7f000001:{port}/hooks",
        f"http://2130706433:{port}/hooks",
        f"http://127.1:{port}/hooks",
        f"http://[::1]:{port}/hooks",
        f"http://[::ffff:127.0.0.1]:{port}/hooks",
        f"http://0.0.0.0:{port}/hooks",
        "http://10.1.2.3/hooks",
        "http://192.168.1.10/hooks",
        "http://172.16.0.1/hooks",
        "http://100.64.0.1/hooks",
        "http://[fd00::1]/hooks",
        "http://[fe80::1]/hooks",
        "https://[::ffff:169.254.169.254]/hooks",
    ]


BLOCKED_IDS = [
    "metadata",
    "loopback",
    "localhost",
    "hex",
    "decimal",
    "short",
    "ipv6-loopback",
    "ipv4-mapped",
    "unspecified",
    "10",
    "192.168",
    "172.16",
    "cgnat",
    "unique-local",
    "ipv6-link-local",
    "mapped-metadata",
]


# ---------------------------------------------------------------- helpers
def hooks(t: Tenant, path: str = "") -> str:
    return f"/api/orgs/{t.org_id}/webhooks{path}"


def stored_subscription(srv: Server, t: Tenant, url: str, verified: bool) -> str:
    """A subscription stored as it would have been before this policy existed (or before the
    allow-list was narrowed), written by the store's own function."""
    sid = new_id()
    now = srv.clock.now()
    row = {
        "org_id": t.org_id,
        "subscription_id": sid,
        "url": url,
        "secret_encrypted": SecretBox(SECRET_KEY).seal({"secret": HOOK_SECRET}),
        "event_types": "*",
        "verified_at": now if verified else None,
        "created_at": now,
        "disabled_at": None,
    }
    with transaction(srv.engine) as conn:
        webhooks_repo.insert_subscription(conn, row)
    return sid


def instance(srv: Server, t: Tenant, iid: str) -> dict[str, Any]:
    r = srv.http.get(t.url(f"/{iid}"), headers=t.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def fetch(srv: Server, t: Tenant, target: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the FETCH journey for `target`: (its http event's detail, the instance)."""
    iid = trigger_one(srv.http, t, {"target": target}, time_zone="UTC")
    srv.run_worker()
    inst = instance(srv, t, iid)
    [event] = [e for e in inst["events"] if e["type"] in ("http_request", "http_failed")]
    return {"type": event["type"], **event["detail"]}, inst


def deliveries(srv: Server, t: Tenant, sid: str) -> list[dict[str, Any]]:
    r = srv.http.get(hooks(t, f"/{sid}/deliveries"), headers=t.headers)
    assert r.status_code == 200, r.text
    return list(r.json())


# ---------------------------------------------------------------- webhook create
@pytest.mark.parametrize("index", range(len(BLOCKED_IDS)), ids=BLOCKED_IDS)
def test_webhook_create_refuses_internal_addresses_and_stores_nothing(
    strict: Server, rec: Receiver, index: int
) -> None:
    t = strict.tenant(WAIT)
    url = blocked_urls(rec.port)[index]
    r = strict.http.post(
        hooks(t), json={"url": url, "secret": HOOK_SECRET, "eventTypes": ["*"]}, headers=t.headers
    )
    assert r.status_code == 400, r.text
    assert r.json() == [f"url: {ADDRESS_NOT_ALLOWED}"]
    assert strict.count("webhook_subscriptions", t.org_id) == 0
    assert rec.requests == []


def test_the_allow_list_lets_the_loopback_receiver_through(open_: Server, rec: Receiver) -> None:
    t = open_.tenant(WAIT)
    for url in (rec.url, f"http://localhost:{rec.port}/hooks"):  # a CIDR entry, a host name entry
        r = open_.http.post(
            hooks(t), json={"url": url, "secret": HOOK_SECRET, "eventTypes": ["*"]}, headers=t.headers
        )
        assert r.status_code == 201, r.text
        assert r.json()["verified"] is True
    assert [q["method"] for q in rec.requests] == ["GET", "GET"]
    # Only what is listed: the rest of loopback and the private ranges stay refused.
    for url in (f"http://0x7f000002:{rec.port}/hooks", "http://10.1.2.3/hooks", "http://[::1]/hooks"):
        r = open_.http.post(
            hooks(t), json={"url": url, "secret": HOOK_SECRET, "eventTypes": ["*"]}, headers=t.headers
        )
        assert r.status_code == 400 and r.json() == [f"url: {ADDRESS_NOT_ALLOWED}"], url


# ---------------------------------------------------------------- webhook verify and deliveries
@pytest.mark.parametrize("index", range(len(BLOCKED_IDS)), ids=BLOCKED_IDS)
def test_webhook_verify_refuses_internal_addresses(strict: Server, rec: Receiver, index: int) -> None:
    t = strict.tenant(WAIT)
    sid = stored_subscription(strict, t, blocked_urls(rec.port)[index], verified=False)
    r = strict.http.post(hooks(t, f"/{sid}/verify"), headers=t.headers)
    assert r.status_code == 400, r.text
    assert r.json() == [f"webhook {sid} was not verified: {ADDRESS_NOT_ALLOWED} (it is kept, unverified)"]
    [hook] = strict.http.get(hooks(t), headers=t.headers).json()
    assert hook["verified"] is False
    assert rec.requests == []


@pytest.mark.parametrize("index", [1, 2, 3, 7], ids=[BLOCKED_IDS[i] for i in (1, 2, 3, 7)])
def test_deliveries_to_an_internal_address_are_refused_and_recorded(
    strict: Server, rec: Receiver, index: int
) -> None:
    t = strict.tenant(WAIT)
    sid = stored_subscription(strict, t, blocked_urls(rec.port)[index], verified=True)
    trigger_one(strict.http, t, {}, time_zone="UTC")
    strict.run_worker()
    listed = deliveries(strict, t, sid)
    assert listed and all(d["status"] == "pending" for d in listed)
    assert {(d["lastError"], d["lastStatusCode"]) for d in listed if d["attempts"]} == {
        (ADDRESS_NOT_ALLOWED, None)
    }
    assert rec.requests == []


# ---------------------------------------------------------------- http_request steps
@pytest.mark.parametrize("index", range(len(BLOCKED_IDS)), ids=BLOCKED_IDS)
def test_http_request_refuses_internal_addresses_and_saves_nothing(
    strict: Server, rec: Receiver, index: int
) -> None:
    t = strict.tenant(FETCH)
    detail, inst = fetch(strict, t, blocked_urls(rec.port)[index])
    assert detail == {"type": "http_failed", "status": None, "ok": False, "error": ADDRESS_NOT_ALLOWED}
    assert inst["events"][-1]["detail"] == {"outcome": "refused"}
    assert "answer" not in inst["parameters"]
    assert rec.requests == []


def test_http_request_to_an_allowed_receiver_saves_its_answer(open_: Server, rec: Receiver) -> None:
    t = open_.tenant(FETCH)
    for target in (f"{rec.url}?n=1", f"http://localhost:{rec.port}/x"):
        detail, inst = fetch(open_, t, target)
        assert detail == {"type": "http_request", "status": 200, "ok": True, "saved": ["answer"]}
        assert inst["parameters"]["answer"] == "metadata-credentials"
    assert len(rec.requests) == 2
    detail, inst = fetch(open_, t, f"http://0x7f000002:{rec.port}/x")  # loopback, but not listed
    assert detail["error"] == ADDRESS_NOT_ALLOWED and len(rec.requests) == 2


def test_network_failures_all_read_the_same(open_: Server, rec: Receiver) -> None:
    """A closed port and an open one that hangs up say the same: no port scanning by error text."""
    t = open_.tenant(FETCH)
    closed = Receiver()
    closed.stop()  # its port is now closed
    detail, _ = fetch(open_, t, closed.url)
    assert detail == {"type": "http_failed", "status": None, "ok": False, "error": REQUEST_FAILED}
    r = open_.http.post(
        hooks(t), json={"url": closed.url, "secret": HOOK_SECRET, "eventTypes": ["*"]}, headers=t.headers
    )
    assert r.status_code == 400 and "could not be reached (it is kept" in r.json()[0]


# ---------------------------------------------------------------- redirects
@pytest.fixture()
def redirecting() -> Iterator[tuple[Receiver, Receiver]]:
    """An allowed receiver (127.0.0.1) that redirects everything to one that is not (127.0.0.2)."""
    target = Receiver("127.0.0.2")
    front = Receiver("127.0.0.1", redirect_to=f"{target.url}?challengeCode=x")
    yield front, target
    front.stop()
    target.stop()


def test_a_redirect_to_an_internal_address_is_not_followed(
    open_: Server, redirecting: tuple[Receiver, Receiver]
) -> None:
    front, target = redirecting
    # http_request: the 302 is the answer (a failure); the target is never asked.
    t = open_.tenant(FETCH)
    detail, inst = fetch(open_, t, front.url)
    assert detail == {"type": "http_failed", "status": 302, "ok": False, "error": "HTTP 302"}
    assert "answer" not in inst["parameters"]
    # webhook create: the challenge is answered by a redirect, not followed.
    t = open_.tenant(WAIT)
    body = {"url": front.url, "secret": HOOK_SECRET, "eventTypes": ["*"]}
    r = open_.http.post(hooks(t), json=body, headers=t.headers)
    assert r.status_code == 400 and "answered the challenge with HTTP 302" in r.json()[0], r.text
    [hook] = open_.http.get(hooks(t), headers=t.headers).json()
    # webhook verify: the same.
    r = open_.http.post(hooks(t, f"/{hook['id']}/verify"), headers=t.headers)
    assert r.status_code == 400 and "HTTP 302" in r.json()[0]
    # a delivery: the redirect is a failed attempt (HTTP 307), retried later, never followed.
    sid = stored_subscription(open_, t, front.url, verified=True)
    trigger_one(open_.http, t, {}, time_zone="UTC")
    open_.run_worker()
    attempted = [d for d in deliveries(open_, t, sid) if d["attempts"]]
    assert attempted and {(d["lastStatusCode"], d["lastError"]) for d in attempted} == {(307, "HTTP 307")}
    assert [q["method"] for q in front.requests] == ["GET", "GET", "GET", "POST"]
    assert target.requests == []


# ---------------------------------------------------------------- credentials in webhook URLs
def run_cli(srv: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
    env.update(JOURNEYS_SECRET_KEY=SECRET_KEY, JOURNEYS_OUTBOUND_ALLOW=OPEN_ALLOW)
    return subprocess.run(
        [*JOURNEYS, "--db", srv.settings.database_url, "webhook", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_credentials_in_a_webhook_url_are_used_but_never_shown(open_: Server, rec: Receiver) -> None:
    t = open_.tenant(WAIT)
    url = f"http://hook-user:hook-pass-7Q2@127.0.0.1:{rec.port}/hooks?token=tok-9Z4K&v=2"
    masked = f"http://***:***@127.0.0.1:{rec.port}/hooks?token=***&v=***"
    r = open_.http.post(
        hooks(t), json={"url": url, "secret": HOOK_SECRET, "eventTypes": ["*"]}, headers=t.headers
    )
    assert r.status_code == 201, r.text
    assert r.json()["url"] == masked
    reader = {"Authorization": f"Bearer {open_.new_token(t.org_id, ['read.journey_instances'])}"}
    r = open_.http.get(hooks(t), headers=reader)
    assert r.status_code == 200 and [h["url"] for h in r.json()] == [masked]
    p = run_cli(open_, "list", "--org", t.org_id, "--json")
    assert p.returncode == 0, p.stderr
    assert [h["url"] for h in json.loads(p.stdout)] == [masked]
    p2 = run_cli(open_, "list", "--org", t.org_id)
    assert p2.returncode == 0 and masked in p2.stdout
    p3 = run_cli(
        open_, "create", "--org", t.org_id, "--url", url, "--secret", HOOK_SECRET, "--events", "*", "--json"
    )
    assert p3.returncode == 0, p3.stderr
    assert json.loads(p3.stdout)["url"] == masked
    for text in (r.text, p.stdout + p.stderr, p2.stdout + p2.stderr, p3.stdout + p3.stderr):
        for secret in ("hook-user", "hook-pass-7Q2", "tok-9Z4K"):
            assert secret not in text
    # The real URL is still the one called: its credentials go as basic auth, its query as sent.
    trigger_one(open_.http, t, {}, time_zone="UTC")
    open_.run_worker()
    posts = [q for q in rec.requests if q["method"] == "POST"]
    assert posts and all(q["headers"]["Authorization"].startswith("Basic ") for q in posts)
    assert all(q["path"] == "/hooks?token=tok-9Z4K&v=2" for q in posts)


def test_cli_create_refuses_an_internal_address(open_: Server) -> None:
    t = open_.tenant(WAIT)
    p = run_cli(
        open_, "create", "--org", t.org_id, "--url", "http://169.254.169.254/x", "--secret", HOOK_SECRET
    )
    assert p.returncode == 1 and ADDRESS_NOT_ALLOWED in p.stderr, p.stderr
    assert open_.count("webhook_subscriptions", t.org_id) == 0


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        (
            "JOURNEYS_OUTBOUND_ALLOW",
            "10.0.0.0/8,not a/cidr",
            "not a CIDR, an IP address or a host name: 'a/cidr'",
        ),
        ("JOURNEYS_OUTBOUND_ALLOW", "https://ehr.local", "'https://ehr.local'"),
        ("JOURNEYS_LOG_LEVEL", "LOUD", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ],
)
def test_serve_reports_a_bad_setting_without_starting(
    tmp_path: Path, variable: str, value: str, needle: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
    env[variable] = value
    p = subprocess.run(
        [*JOURNEYS, "--db", f"sqlite:///{tmp_path / 'x.db'}", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 1
    assert f"error: {variable}: " in p.stderr and needle in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "x.db").exists()


# ---------------------------------------------------------------- the policy itself
@pytest.mark.same_on_every_database
def test_the_allow_list_setting_parses_cidrs_addresses_and_host_names() -> None:
    policy = Settings(outbound_allow=" 10.0.0.0/8, 127.0.0.1 ,[::1] EHR.local.").outbound_policy()
    assert [str(n) for n in policy.networks] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
    assert policy.hosts == frozenset({"ehr.local"})
    assert OutboundPolicy.parse("") == OutboundPolicy()


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    "value", ["10.0.0.0/33", "999.1.2.3", "http://ehr.local", "ehr..local", "a b/c", "-x-"]
)
def test_a_bad_allow_list_is_refused_naming_the_entry(value: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Settings(outbound_allow=value)
    assert "not a CIDR, an IP address or a host name" in str(exc.value)


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:4700::1111", True),
        ("::ffff:93.184.216.34", True),
        ("64:ff9b::5db8:d822", True),  # NAT64 of a public address
        ("169.254.169.254", False),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.31.255.255", False),
        ("192.168.0.1", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.1.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("192.0.2.1", False),
        ("::1", False),
        ("::", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("fd12:3456::1", False),
        ("fe80::1", False),
        ("ff02::1", False),
        ("2001:db8::1", False),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    import ipaddress

    assert is_public(ipaddress.ip_address(address)) is public


@pytest.mark.same_on_every_database
def test_mask_url() -> None:
    assert mask_url("https://u:p@h.example:8443/a?x=1&y") == "https://***:***@h.example:8443/a?x=***&***"
    assert mask_url("https://token@h.example/a#frag") == "https://***@h.example/a"
    assert mask_url("https://h.example/a") == "https://h.example/a"
