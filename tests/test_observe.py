"""Operating a server: liveness, readiness with the database really gone, Prometheus metrics
(database gauges driven by the real engine, latency histograms labelled by route template, the
optional token), request ids, and JSON log lines from a real `journeys serve` process.

Both databases; each test that breaks or counts things has a database of its own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.databases import own_database
from support.fake_twilio import FakeTwilio, twilio_config
from support.keys import strong_key
from support.net import free_port
from support.receivers import WebhookReceiver
from support.server import Server, Tenant

from journeys.logs import JsonFormatter
from journeys.store.db import create_db_engine

PG = os.environ.get("JOURNEYS_TEST_DATABASE", "sqlite") == "postgresql"
JOURNEYS = str(Path(sys.executable).with_name("journeys"))
HEX32 = re.compile(r"[0-9a-f]{32}")
SECRET_KEY = strong_key("observe-test-secret-key")
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "observe-twilio-auth-token"
METRICS_TOKEN = "metrics-token-0123456789"

# One SMS, then a day's wait: instances stay InProgress, their messages go through Twilio.
TEXT_THEN_WAIT = """
name: Text Then Wait
send_window: null
frequency_cap: null
parameters:
  - {name: key, identifier: true}
  - {name: patientName}
  - {name: phone, type: phone}
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: send_sms, to: phone, body: "Hello {{ patientName }}"}
      - {id: 20, type: wait, duration: 1d}
      - {id: 30, type: end, outcome: done}
"""


@pytest.fixture()
def own_url(tmp_path: Path) -> Iterator[str]:
    """A database of the test's own, of the kind the suite runs on."""
    with own_database(tmp_path, "observe.db") as url:
        yield url


def metrics(http: httpx.Client, **headers: str) -> dict[str, float]:
    """`name{label="v",…}` → value, for every sample of a /metrics answer."""
    r = http.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


# ---------------------------------------------------------------- probes
def test_healthz_and_readyz_answer_ok(http: httpx.Client) -> None:
    for path in ("/healthz", "/readyz"):
        r = http.get(path)
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ok"}
        assert HEX32.fullmatch(r.headers["x-request-id"])


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_refuse_other_methods(http: httpx.Client, path: str) -> None:
    r = http.post(path, json={})
    assert r.status_code == 405
    assert r.json() == ["Method Not Allowed"]


def test_readyz_is_503_while_the_database_is_gone(own_url: str, tmp_path: Path) -> None:
    """PostgreSQL: the database is dropped under the running server. SQLite: the file is moved
    away (and back). The reason names no host, database, file or error text."""
    server = Server(own_url)
    try:
        assert server.http.get("/readyz").json() == {"status": "ok"}
        secrets = [own_url, own_url.rsplit("/", 1)[-1], "127.0.0.1", str(tmp_path)]
        if PG:
            with server.engine.connect() as conn:
                name = conn.exec_driver_sql("SELECT current_database()").scalar_one()
            _drop_database(own_url, name)
        else:
            path = Path(own_url.removeprefix("sqlite:///"))
            path.rename(path.with_suffix(".moved"))
        r = server.http.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.json() == {"status": "unavailable", "reason": "the database is unavailable"}
        assert r.headers["retry-after"] == "5"
        assert not any(s in r.text for s in secrets)
        assert server.http.get("/healthz").status_code == 200  # liveness does not touch it
        if PG:  # /metrics still answers, without the database's gauges
            up = metrics(server.http)
            assert up["journeys_database_up"] == 0
            assert "journeys_due_instances" not in up
        else:  # (the pool's open connections still read the moved file: only /readyz looks)
            path.with_suffix(".moved").rename(path)
            assert server.http.get("/readyz").json() == {"status": "ok"}
    finally:
        server.stop()


def _drop_database(url: str, name: str) -> None:
    admin = url.rsplit("/", 1)[0] + "/postgres"
    engine = create_db_engine(admin).execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    engine.dispose()


# ---------------------------------------------------------------- metrics
@pytest.fixture()
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as f:
        yield f


def _twilio_tenant(server: Server) -> Tenant:
    t = server.tenant(TEXT_THEN_WAIT)
    server.set_channel(t.org_id, "sms", "twilio", twilio_config(ACCOUNT_SID, AUTH_TOKEN, "+13125550199"))
    return t


def test_metrics_follow_due_work_the_outbox_and_webhooks(own_url: str, fake: FakeTwilio) -> None:
    server = Server(own_url, secret_key=SECRET_KEY, twilio_api_base=fake.url)
    receiver = WebhookReceiver("whsec-observe-0123456789")
    try:
        m = metrics(server.http)
        assert m["journeys_database_up"] == 1
        assert m['journeys_instances{status="InProgress"}'] == 0
        assert m["journeys_due_instances"] == 0 and m["journeys_due_oldest_age_seconds"] == 0
        assert m['journeys_build_info{version="0.1.0"}'] == 1

        t = _twilio_tenant(server)
        body = {"url": receiver.url, "secret": "whsec-observe-0123456789", "eventTypes": ["*"]}
        r = server.http.post(f"/api/orgs/{t.org_id}/webhooks", json=body, headers=t.headers)
        assert r.status_code == 201, r.text
        receiver.stop()  # from now on every delivery fails and waits for its next attempt
        people = [{"key": f"k{n}", "patientName": f"Pat {n}", "phone": f"+1312555014{n}"} for n in range(3)]
        r = server.http.post(
            t.url("/bulk"),
            json={
                "flowId": None,
                "timeZone": "America/Chicago",
                "instances": [{"parameters": p} for p in people],
            },
            headers=t.headers,
        )
        assert r.status_code == 204, r.text
        server.clock.advance(timedelta(seconds=30))
        m = metrics(server.http)
        assert m['journeys_instances{status="InProgress"}'] == 3
        assert m["journeys_due_instances"] == 3
        assert m["journeys_due_oldest_age_seconds"] == 30

        fake.fail_next(3, status=429, retry_after=60)  # Twilio says: retry in a minute
        server.run_worker()
        m = metrics(server.http)
        assert m["journeys_due_instances"] == 0 and m["journeys_due_oldest_age_seconds"] == 0
        assert m['journeys_instances{status="InProgress"}'] == 3  # waiting a day
        assert m['journeys_outbox_messages{status="queued"}'] == 3
        assert m['journeys_outbox_messages{status="sending"}'] == 0
        assert m["journeys_outbox_due_messages"] == 0  # not before the minute is up
        # Per instance, its first event's delivery failed and waits for its next attempt; the
        # later ones wait behind it (due, and counted as such: they are late too).
        pending = m['journeys_webhook_deliveries{status="pending"}']
        assert pending > 3
        assert m["journeys_webhook_due_deliveries"] == pending - 3

        server.clock.advance(timedelta(hours=2))  # past every retry time
        m = metrics(server.http)
        assert m["journeys_outbox_due_messages"] == 3
        assert 7140 <= m["journeys_outbox_oldest_due_age_seconds"] <= 7200 - 60 + 1
        assert m["journeys_webhook_due_deliveries"] == pending
        assert m["journeys_webhook_oldest_due_age_seconds"] == 7200

        text = server.http.get("/metrics").text
        for secret in [t.org_id, t.journey_id, "Pat 0", "+13125550140", receiver.url]:
            assert secret not in text, secret
        bulk_route = "/chatbotapi/external/orgs/{orgId}/journeys/{chatBotId}/instances/bulk"
        key = (
            f'journeys_http_request_duration_seconds_count{{method="POST",route="{bulk_route}",status="2xx"}}'
        )
        assert m[key] == 1
        assert (
            m['journeys_http_request_duration_seconds_count{method="GET",route="/metrics",status="2xx"}']
            == 3  # (a scrape counts once answered)
        )
    finally:
        server.stop()


def test_http_latency_is_labelled_by_route_template_method_and_status_class(
    server: Server, http: httpx.Client, tenant: Tenant
) -> None:
    missing = str(uuid.uuid4())
    for _ in range(2):
        assert http.get(tenant.url(f"/{missing}"), headers=tenant.headers).status_code == 404
    assert http.request("BREW", "/healthz").status_code == 405
    assert http.get(f"/no/such/{missing}").status_code == 404
    text = http.get("/metrics").text
    assert missing not in text and tenant.org_id not in text
    m = metrics(http)
    get_route = "/chatbotapi/external/orgs/{orgId}/journeys/{chatBotId}/instances/{journeyInstanceId}"
    assert (
        m[f'journeys_http_request_duration_seconds_count{{method="GET",route="{get_route}",status="4xx"}}']
        >= 2
    )
    assert (
        m['journeys_http_request_duration_seconds_count{method="other",route="/healthz",status="4xx"}'] >= 1
    )
    assert m['journeys_http_request_duration_seconds_count{method="GET",route="unmatched",status="4xx"}'] >= 1


def test_metrics_token(own_url: str) -> None:
    server = Server(own_url, metrics_token=METRICS_TOKEN)
    try:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-0123456789"},
            {"Authorization": METRICS_TOKEN},
        ):
            r = server.http.get("/metrics", headers=headers)
            assert r.status_code == 401, r.text
            assert r.json() == [
                "missing or invalid metrics token (Authorization: Bearer <JOURNEYS_METRICS_TOKEN>)"
            ]
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert metrics(server.http, Authorization=f"Bearer {METRICS_TOKEN}")["journeys_database_up"] == 1
        assert server.http.get("/readyz").status_code == 200  # probes need no token
    finally:
        server.stop()


# ---------------------------------------------------------------- request ids
@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("req-7f3a9c.01:b_2", True),
        (str(uuid.uuid4()), True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ("-leading-dash", False),
        ("name\u00e9", False),
        ("", False),
    ],
)
def test_request_id_is_taken_when_valid_else_generated(http: httpx.Client, given: str, kept: bool) -> None:
    r = http.get("/healthz", headers={"X-Request-Id": given.encode("utf-8")})  # type: ignore[dict-item]
    assert r.status_code == 200
    if kept:
        assert r.headers["x-request-id"] == given
    else:
        assert HEX32.fullmatch(r.headers["x-request-id"])


# ---------------------------------------------------------------- processes: JSON logs, worker counters
def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
    env.update({"PYTHONUNBUFFERED": "1", "JOURNEYS_DATABASE_URL": url, **extra})
    return env


def _start(args: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([JOURNEYS, *args], env=env, cwd=cwd, stdout=out, stderr=out)


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no answer in 60 s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _setup(url: str, cwd: Path, definition: str) -> Tenant:
    def cli(*args: str) -> Any:
        proc = subprocess.run(
            [JOURNEYS, *args, "--json"], env=_env(url), cwd=cwd, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    org = cli("org", "create", "Observed Clinic")["id"]
    token = cli("token", "create", "--org", org, "--name", "t")["token"]
    path = cwd / "journey.yaml"
    path.write_text(definition)
    journey = cli("journey", "publish", str(path), "--org", org)["id"]
    return Tenant(org, token, journey, {"Authorization": f"Bearer {token}"})


NOW_JOURNEY = """
name: Right Away
send_window: null
frequency_cap: null
parameters:
  - {name: key, identifier: true}
  - {name: patientName}
  - {name: phone, type: phone}
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: send_sms, to: phone, body: "Hello {{ patientName }}"}
      - {id: 20, type: end, outcome: done}
"""


def test_json_logs_and_worker_counters_from_real_processes(own_url: str, tmp_path: Path) -> None:
    """`journeys serve --no-worker` with JOURNEYS_LOG_FORMAT=json and a separate `journeys
    worker`: every stderr line of the server is one JSON object; request lines carry the
    request id the response returned; no patient data appears; the worker's step count reaches
    the server's /metrics through the database."""
    tenant = _setup(own_url, tmp_path, NOW_JOURNEY)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    env = _env(own_url, JOURNEYS_LOG_FORMAT="json", JOURNEYS_LOG_LEVEL="INFO")
    server = _start(["serve", "--no-worker", "--port", str(port)], env, server_log, tmp_path)
    worker = _start(["worker"], env, worker_log, tmp_path)
    phi = ["Zoe Quintana", "+13125550177"]
    try:
        _wait_ready(base, server, server_log)
        with httpx.Client(base_url=base, timeout=30, headers=tenant.headers) as http:
            people = [{"key": f"k{n}", "patientName": phi[0], "phone": phi[1]} for n in range(5)]
            body = {
                "flowId": None,
                "timeZone": "America/Chicago",
                "instances": [{"parameters": p} for p in people],
            }
            r = http.post(tenant.url("/bulk"), json=body, headers={"X-Request-Id": "load-42"})
            assert r.status_code == 204, r.text
            assert r.headers["x-request-id"] == "load-42"
            bad = http.post(tenant.url("/search"), json={"take": 0}, headers={"X-Request-Id": "bad id"})
            assert bad.status_code == 400
            generated = bad.headers["x-request-id"]
            assert HEX32.fullmatch(generated)
            deadline = time.monotonic() + 60
            while True:  # heartbeats every 5 s carry the worker's running totals
                m = metrics(http)
                if (
                    m["journeys_worker_steps_total"] >= 10
                    and m['journeys_instances{status="InProgress"}'] == 0
                ):
                    break
                assert time.monotonic() < deadline, (m, worker_log.read_text())
                time.sleep(0.5)
            assert m["journeys_workers_alive"] >= 1
            _stop(worker)
            assert worker.returncode == 0, worker_log.read_text()
            final = metrics(http)
            assert final["journeys_worker_steps_total"] == 10  # 5 instances × (send, end)
            assert final["journeys_workers_alive"] == 0  # stopped, says its last heartbeat
    finally:
        _stop(worker)
        _stop(server)
    assert server.returncode == 0, server_log.read_text()
    lines = [line for line in server_log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # each line is one JSON object
    for rec in records:
        assert {"time", "level", "logger", "message"} <= set(rec), rec
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["time"]), rec
    access = [r for r in records if r["logger"] == "journeys.access"]
    bulk_line = next(r for r in access if r.get("requestId") == "load-42")
    assert bulk_line["route"] == "/chatbotapi/external/orgs/{orgId}/journeys/{chatBotId}/instances/bulk"
    assert bulk_line["method"] == "POST" and bulk_line["status"] == 204
    assert any(r.get("requestId") == generated and r["status"] == 400 for r in access)
    assert not any(r.get("route") == "/metrics" for r in access)  # scrapes are not logged
    assert any(r["logger"] == "uvicorn.error" for r in records)  # third-party lines are JSON too
    everything = server_log.read_text() + worker_log.read_text()
    for secret in [*phi, tenant.token, tenant.org_id]:
        assert secret not in everything, secret
    for line in worker_log.read_text().splitlines():
        if line.strip():
            json.loads(line)


@pytest.mark.same_on_every_database
def test_a_json_line_names_the_exception_class_never_its_message() -> None:
    try:
        raise ValueError("patient Zoe Quintana, +13125550177")
    except ValueError:
        record = logging.LogRecord(
            "journeys.worker", logging.ERROR, __file__, 1, "step failed", (), sys.exc_info()
        )
    out = json.loads(JsonFormatter().format(record))
    assert out["exception"] == "ValueError"
    assert out["message"] == "step failed"
    assert out["stack"] and all(" in " in frame for frame in out["stack"])
    assert "Zoe" not in json.dumps(out)


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("JOURNEYS_LOG_FORMAT", "xml", "JOURNEYS_LOG_FORMAT: Input should be 'text' or 'json'"),
        (
            "JOURNEYS_METRICS_TOKEN",
            "short",
            "JOURNEYS_METRICS_TOKEN: String should have at least 16 characters",
        ),
        ("JOURNEYS_READY_TIMEOUT", "0", "JOURNEYS_READY_TIMEOUT: Input should be greater than 0"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_bad_settings_stop_the_process_with_a_clear_error(
    tmp_path: Path, command: str, variable: str, value: str, message: str
) -> None:
    proc = subprocess.run(
        [JOURNEYS, command],
        env=_env(f"sqlite:///{tmp_path / 'x.db'}", **{variable: value}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stderr.strip() == f"error: {message}"
    assert value not in proc.stderr or value == "0"
    assert not (tmp_path / "x.db").exists()
