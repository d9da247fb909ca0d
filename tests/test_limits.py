"""Abuse resistance: rate limits per address and per token, failed authentications per address
(API tokens and Twilio signatures), 429 with Retry-After, security headers on every response,
and a deadline for request bodies. Each test builds a server with the limits it tests (the
suite's shared servers have the failed-authentication limit lifted: tests/conftest.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from support.keys import strong_key
from support.server import Server

from journeys.limits import Buckets, Failures, Rate

T0 = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)


@pytest.fixture()
def make_server(database_url: str) -> Iterator[type[Server]]:
    made: list[Server] = []

    def build(**settings: object) -> Server:
        # The suite's database holds other tests' channel providers: a server needs a key to start.
        settings.setdefault("secret_key", strong_key("limits"))
        srv = Server(database_url, **settings)
        made.append(srv)
        return srv

    yield build  # type: ignore[misc]
    for srv in made:
        srv.stop()


def _search(srv: Server, org: str, journey: str, token: str) -> int:
    url = f"/chatbotapi/external/orgs/{org}/journeys/{journey}/instances/search"
    r = srv.http.post(url, json={}, headers={"Authorization": f"Bearer {token}"})
    return r.status_code


# ------------------------------------------------------------------ the buckets (pure)
def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    buckets = Buckets(Rate(per_second=2, burst=3))
    assert [buckets.take("a", T0) for _ in range(3)] == [None, None, None]
    assert buckets.take("a", T0) == 1  # a token comes back in half a second: wait 1 s
    assert buckets.take("b", T0) is None  # keys are apart
    assert buckets.take("a", T0 + timedelta(milliseconds=500)) is None
    assert buckets.take("a", T0 + timedelta(milliseconds=500)) == 1
    assert [buckets.take("a", T0 + timedelta(seconds=10)) for _ in range(4)] == [None, None, None, 1]


def test_a_slow_bucket_says_how_long_to_wait() -> None:
    buckets = Buckets(Rate(per_second=0.1, burst=1))
    assert buckets.take("a", T0) is None
    assert buckets.take("a", T0) == 10
    assert buckets.take("a", T0 + timedelta(seconds=4)) == 6


def test_failures_block_within_the_window_only() -> None:
    failures = Failures(limit=3, window_seconds=60)
    for i in range(3):
        assert failures.blocked("x", T0) is None
        failures.failed("x", T0 + timedelta(seconds=i))
    assert failures.blocked("x", T0 + timedelta(seconds=10)) == 50  # the first leaves at 60 s
    assert failures.blocked("y", T0) is None
    assert failures.blocked("x", T0 + timedelta(seconds=60)) is None


def test_keys_are_bounded() -> None:
    buckets = Buckets(Rate(per_second=1, burst=1), max_keys=2)
    for key in ("a", "b", "c"):
        assert buckets.take(key, T0) is None
    assert buckets.take("a", T0) is None  # forgotten: a full bucket again
    failures = Failures(limit=1, window_seconds=60, max_keys=2)
    for key in ("a", "b", "c"):
        failures.failed(key, T0)
    assert failures.blocked("a", T0) is None
    assert failures.blocked("c", T0) == 60
    with pytest.raises(ValueError):
        Rate(per_second=0, burst=1)


# ------------------------------------------------------------------ over HTTP
def test_failed_authentications_block_the_address(make_server: type[Server]) -> None:
    srv = make_server(auth_failure_limit=3, auth_failure_window_seconds=60)
    tenant = srv.tenant()
    for _ in range(3):
        assert _search(srv, tenant.org_id, tenant.journey_id, "wrong-token") == 401
    r = srv.http.post(tenant.url("/search"), json={}, headers=tenant.headers)
    assert r.status_code == 429  # even a good token, from this address, for the window
    assert r.json() == ["too many failed authentications from this address; retry later"]
    assert r.headers["retry-after"] == "60"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert srv.http.get("/healthz").status_code == 200  # probes are never limited
    srv.clock.advance(timedelta(seconds=61))
    assert _search(srv, tenant.org_id, tenant.journey_id, tenant.token) == 200


def test_a_missing_token_counts_as_a_failure(make_server: type[Server]) -> None:
    srv = make_server(auth_failure_limit=2)
    tenant = srv.tenant()
    for _ in range(2):
        assert srv.http.post(tenant.url("/search"), json={}).status_code == 401
    assert srv.http.post(tenant.url("/search"), json={}, headers=tenant.headers).status_code == 429


def test_twilio_requests_with_bad_signatures_count_as_failures(make_server: type[Server]) -> None:
    srv = make_server(auth_failure_limit=2, public_url_is_own=True)
    org = srv.new_org()
    for _ in range(2):
        r = srv.http.post(f"/channels/twilio/{org}/inbound", data={"From": "+15555550100", "Body": "C"})
        assert r.status_code == 403
    r = srv.http.post(f"/channels/twilio/{org}/inbound", data={"From": "+15555550100", "Body": "C"})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1


def test_each_token_has_its_own_rate(make_server: type[Server]) -> None:
    srv = make_server(rate_limit_token_per_second=0.01, rate_limit_token_burst=3)
    tenant = srv.tenant()
    other = srv.new_token(tenant.org_id)
    for _ in range(3):
        assert _search(srv, tenant.org_id, tenant.journey_id, tenant.token) == 200
    r = srv.http.post(tenant.url("/search"), json={}, headers=tenant.headers)
    assert r.status_code == 429
    assert r.json() == ["too many requests with this token; retry later"]
    assert r.headers["retry-after"] == "100"
    assert _search(srv, tenant.org_id, tenant.journey_id, other) == 200  # another token goes on
    srv.clock.advance(timedelta(seconds=100))
    assert _search(srv, tenant.org_id, tenant.journey_id, tenant.token) == 200


def test_each_address_has_its_rate_on_every_route(make_server: type[Server]) -> None:
    srv = make_server(rate_limit_address_per_second=1, rate_limit_address_burst=2)
    assert srv.http.get("/openapi.json").status_code == 200
    assert srv.http.get("/console/login").status_code == 200
    r = srv.http.get("/console/login")
    assert r.status_code == 429  # the console's pages answer with a page
    assert r.headers["content-type"].startswith("text/html")
    assert "too many requests from this address" in r.text
    assert r.headers["retry-after"] == "1"
    assert srv.http.get("/readyz").status_code == 200
    srv.clock.advance(timedelta(seconds=1))
    assert srv.http.get("/openapi.json").status_code == 200


def test_limits_can_be_switched_off(make_server: type[Server]) -> None:
    srv = make_server(rate_limits=False, rate_limit_address_per_second=1, rate_limit_address_burst=1)
    assert all(srv.http.get("/openapi.json").status_code == 200 for _ in range(5))


@pytest.mark.parametrize(
    "setting",
    [
        {"rate_limit_address_per_second": 0},
        {"rate_limit_token_burst": 0},
        {"auth_failure_limit": 0},
        {"auth_failure_window_seconds": -1},
        {"request_body_timeout_seconds": 0},
    ],
)
def test_bad_limit_settings_are_refused(setting: dict[str, float]) -> None:
    from pydantic import ValidationError

    from journeys.config import Settings

    with pytest.raises(ValidationError):
        Settings(**setting)  # type: ignore[arg-type]


# ------------------------------------------------------------------ headers and deadlines
def test_security_headers_on_every_answer(make_server: type[Server]) -> None:
    srv = make_server()
    tenant = srv.tenant()
    for r in (
        srv.http.post(tenant.url("/search"), json={}, headers=tenant.headers),
        srv.http.get("/no/such/path"),
        srv.http.get("/healthz"),
    ):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"  # answers may carry patient data
        assert "strict-transport-security" not in r.headers  # plain HTTP: browsers ignore it
    page = srv.http.get("/console/login")
    assert page.headers.get_list("x-frame-options") == ["DENY"]  # once, not twice
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_hsts_when_served_over_https(make_server: type[Server]) -> None:
    srv = make_server(public_base_url="https://journeys.example.org")
    r = srv.http.get("/healthz")
    assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


def test_a_body_that_does_not_arrive_in_time_gets_408(make_server: type[Server]) -> None:
    srv = make_server(request_body_timeout_seconds=0.5)
    tenant = srv.tenant()
    host, port = srv.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"POST {tenant.url('/search')} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {tenant.token}\r\nContent-Type: application/json\r\n"
            'Content-Length: 100\r\n\r\n{"take"'
        )
        sock.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"]"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    assert rest.endswith(b'["the request body did not arrive within 0.5 seconds"]')
    # and the server goes on serving
    assert _search(srv, tenant.org_id, tenant.journey_id, tenant.token) == 200
