"""Test fixtures: a real server over real HTTP on a real database file.

`JOURNEYS_TEST_DATABASE=postgresql` runs the suite on the PostgreSQL server at
`JOURNEYS_TEST_POSTGRES_URL` (default postgresql://postgres@127.0.0.1:5432/postgres); a
fresh database is created for the session and dropped at the end. Without PostgreSQL the
PostgreSQL-only tests skip with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

import journeys.accounts.service as accounts
import journeys.catalog.service as catalog
from journeys.api.app import create_app
from journeys.clock import ManualClock
from journeys.config import Settings
from journeys.definitions import load_definition_file, load_definition_text
from journeys.engine.worker import Worker
from journeys.store.db import create_db_engine, transaction

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "data" / "classic-reminder.yaml"
PG_ADMIN_URL = os.environ.get("JOURNEYS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
START = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)  # 10:00 in America/Chicago


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        engine = create_db_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {type(exc).__name__}"


def require_postgres() -> None:
    reason = postgres_available()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
    pytest.skip(reason)


def make_postgres_database() -> tuple[str, Any]:
    """Create a fresh database; returns (url, drop callable)."""
    name = f"journeys_test_{uuid.uuid4().hex[:10]}"
    admin = create_db_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return url, drop


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("JOURNEYS_TEST_DATABASE", "sqlite") == "postgresql":
        require_postgres()
        url, drop = make_postgres_database()
        yield url
        drop()
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'journeys.db'}"


@dataclass
class Tenant:
    org_id: str
    token: str
    journey_id: str
    headers: dict[str, str]

    def url(self, path: str = "") -> str:
        return f"/chatbotapi/external/orgs/{self.org_id}/journeys/{self.journey_id}/instances{path}"


class Server:
    """A real uvicorn server in a thread, with a manual clock and an on-demand worker."""

    def __init__(self, database_url: str, *, public_url_is_own: bool = False, **settings: Any) -> None:
        """`settings` override Settings fields (e.g. secret_key, twilio_api_base); with
        `public_url_is_own`, JOURNEYS_PUBLIC_BASE_URL is this server's own URL (what a provider
        calls back and signs)."""
        self.clock = ManualClock(START)
        # The tests' receivers (webhooks, http_request targets, fakes) listen on loopback, which
        # the outbound policy refuses by default: allowed here unless a test says otherwise.
        settings.setdefault("outbound_allow", LOOPBACK_ALLOWED)
        self.settings = Settings(database_url=database_url, worker_enabled=False, **settings)
        self.app = create_app(self.settings, clock=self.clock, run_worker=False)
        self.engine = self.app.state.engine
        self.worker: Worker = self.app.state.worker
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        if public_url_is_own:
            self.settings.public_base_url = self.base_url
        self.http = httpx.Client(base_url=self.base_url, timeout=60)

    def stop(self) -> None:
        self.http.close()
        self._server.should_exit = True
        self._thread.join(20)

    # -- set-up helpers: they call our real services, as the CLI does
    def new_org(self, name: str = "Test Clinic") -> str:
        with transaction(self.engine) as conn:
            return str(accounts.create_org(conn, name, self.clock.now())["id"])

    def new_token(
        self, org_id: str, scopes: list[str] | None = None, expires_in_days: int | None = None
    ) -> str:
        scopes = scopes or [accounts.SCOPE_CREATE, accounts.SCOPE_READ]
        with transaction(self.engine) as conn:
            return str(
                accounts.create_token(conn, org_id, "test", scopes, self.clock.now(), expires_in_days)[
                    "token"
                ]
            )

    def publish(self, org_id: str, definition: str | Path = EXAMPLE) -> dict[str, Any]:
        defn = (
            load_definition_file(definition)
            if isinstance(definition, Path)
            else load_definition_text(definition)
        )
        with transaction(self.engine) as conn:
            return catalog.publish(conn, org_id, defn, self.clock.now())

    def tenant(self, definition: str | Path = EXAMPLE) -> Tenant:
        org = self.new_org()
        token = self.new_token(org)
        journey = self.publish(org, definition)
        return Tenant(org, token, str(journey["id"]), {"Authorization": f"Bearer {token}"})

    def count(self, table: str, org_id: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(f"SELECT count(*) FROM {table} WHERE org_id = :o"), {"o": org_id}
                ).scalar_one()
            )

    def run_worker(self) -> None:
        self.worker.run_until_idle()


# The tests' receivers (webhook endpoints, http_request services) listen on loopback, which the
# outbound policy refuses unless allowed.
LOOPBACK_ALLOWED = "127.0.0.1/32"


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[Server]:
    srv = Server(database_url, outbound_allow=LOOPBACK_ALLOWED)
    yield srv
    srv.stop()


@pytest.fixture()
def http(server: Server) -> httpx.Client:
    return server.http


@pytest.fixture()
def tenant(server: Server) -> Tenant:
    """A fresh org with a token (both scopes) and the example journey published."""
    return server.tenant()


SEED_BULK_BODY = {
    "flowId": None,
    "timeZone": "America/Chicago",
    "instances": [
        {
            "parameters": {
                "patientId": "100000",
                "patientName": "John Smith",
                "appointmentId": "40-XYZ-11123",
                "appointmentDateTime": "2023-12-01 08:00:00",
            }
        },
        {
            "parameters": {
                "patientId": "100001",
                "patientName": "Jane Green",
                "appointmentId": "92-XBX-11934",
                "appointmentDateTime": "2023-12-01 08:30:00",
            }
        },
    ],
}

SEED_SEARCH_BODY = {
    "filterSpecification": {
        "type": "AndSpecification",
        "specifications": [
            {
                "type": "JourneyParameterSpecification",
                "parameterName": "PatientName",
                "operator": "equals",
                "rightOperand": "John Smith",
            }
        ],
    },
    "includeParameters": True,
}


def post_unfinished(
    base_url: str, path: str, body_start: bytes, *, declared_length: int | None, timeout: float = 20
) -> tuple[int, bytes]:
    """POST over a raw socket but send only `body_start` of the body, then wait for the answer
    without ever finishing it: with `declared_length` as its Content-Length, else chunked.

    Returns the status and body the server answered with before the body was complete. A
    server that waits for the whole body never answers: the read times out (socket.timeout)."""
    host, port = base_url.removeprefix("http://").split(":")
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/x-www-form-urlencoded",
    ]
    if declared_length is None:
        head.append("Transfer-Encoding: chunked")
        step = 16 * 1024
        pieces = (body_start[i : i + step] for i in range(0, len(body_start), step))
        payload = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    else:
        head.append(f"Content-Length: {declared_length}")
        payload = body_start
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("ascii"))
        try:
            sock.sendall(payload)
        except OSError:
            pass  # the server may have answered and stopped reading already
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        header_text, _, body = data.partition(b"\r\n\r\n")
        lines = header_text.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = dict(line.partition(":")[::2] for line in lines[1:])
        length = int({k.lower(): v for k, v in fields.items()}.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, body


def pytest_report_header() -> str:
    """The wall clock the run sees (`make test-hours` shifts it): no test may depend on it."""
    return f"wall clock: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (a {datetime.now(UTC):%A})"
