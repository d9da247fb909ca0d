"""A real server over real HTTP for the tests: uvicorn in a thread, a manual clock, and the
worker run on demand; and the tenant (org, token, published journey) the tests act as."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn

import journeys.accounts.service as accounts
import journeys.catalog.service as catalog
from journeys.api.app import create_app
from journeys.api.schemas import journey_json
from journeys.clock import ManualClock
from journeys.config import Settings
from journeys.definitions import load_definition_file, load_definition_text
from journeys.engine.worker import Worker
from journeys.keys.box import SecretBox
from journeys.store import channels
from journeys.store.db import transaction

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "tests" / "data" / "classic-reminder.yaml"
START = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)  # Monday 10:00 in America/Chicago (CST)
# The tests' receivers (webhook endpoints, http_request services, fakes) listen on loopback,
# which the outbound policy refuses unless allowed.
LOOPBACK_ALLOWED = "127.0.0.1/32"


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
        # The retention sweep would reach other tests' orgs on the suite's shared database when a
        # test moves its clock past a year: only the retention tests turn it on.
        settings.setdefault("retention_purge", False)
        self.settings = Settings(database_url=database_url, worker_enabled=False, **settings)
        self.app = create_app(self.settings, clock=self.clock, run_worker=False)
        self.engine = self.app.state.engine
        self.worker: Worker = self.app.state.worker
        # A long keep-alive: the tests' client reuses its connection after pauses (a browser starting),
        # and a server closing it just as the client sends would reset the request.
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", timeout_keep_alive=300
        )
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
            return accounts.create_org(conn, name, self.clock.now()).id

    def new_token(
        self, org_id: str, scopes: list[str] | None = None, expires_in_days: int | None = None
    ) -> str:
        scopes = scopes or [accounts.SCOPE_CREATE, accounts.SCOPE_READ]
        with transaction(self.engine) as conn:
            made = accounts.create_token(conn, org_id, "test", scopes, self.clock.now(), expires_in_days)
        return made.token

    def publish(self, org_id: str, definition: str | Path = EXAMPLE) -> dict[str, Any]:
        defn = (
            load_definition_file(definition)
            if isinstance(definition, Path)
            else load_definition_text(definition)
        )
        with transaction(self.engine) as conn:  # the journey as the API lists it
            return journey_json(catalog.publish(conn, org_id, defn, self.clock.now()))

    def tenant(self, definition: str | Path = EXAMPLE) -> Tenant:
        org = self.new_org()
        token = self.new_token(org)
        journey = self.publish(org, definition)
        return Tenant(org, token, str(journey["id"]), {"Authorization": f"Bearer {token}"})

    def set_channel(self, org_id: str, channel: str, provider: str, config: dict[str, Any]) -> None:
        """What `journeys channel set` does with a checked config: sealed with this server's
        secret key and stored for the org."""
        assert self.settings.secret_key, "a server that stores channel configs needs a secret_key"
        sealed = SecretBox(self.settings.secret_key).seal(config)
        with transaction(self.engine) as conn:
            channels.set_channel(conn, org_id, channel, provider, sealed, self.clock.now())

    def count(self, table: str, org_id: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(f"SELECT count(*) FROM {table} WHERE org_id = :o"), {"o": org_id}
                ).scalar_one()
            )

    def run_worker(self) -> None:
        self.worker.run_until_idle()

