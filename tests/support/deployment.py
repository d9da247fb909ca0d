"""A deployment made of real processes, set up through the CLI as an operator would: API
servers (`journeys serve --no-worker`) and workers (`journeys worker`) on one database,
observed through HTTP and read-only SQL. Every subprocess writes its output to a log file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import sqlalchemy as sa

from journeys.store.db import create_db_engine, read_only
from support.net import free_port

JOURNEYS = str(Path(sys.executable).with_name("journeys"))


def key(i: int) -> str:
    return f"K{i:05d}"


def phone(i: int) -> str:
    return f"+1312{i:07d}"


def alt_phone(i: int) -> str:
    return f"+1773{i:07d}"


def key_and_phone(i: int) -> dict[str, str]:
    """The parameters of the i-th triggered instance (a journey with `key` and `phone`)."""
    return {"key": key(i), "phone": phone(i)}


class Deployment:
    """The CLI, API server subprocesses and worker subprocesses on one database.

    `engine` is what the test reads the database with (by default one made as the product
    makes it); `parameters(i)` are the i-th triggered instance's parameters."""

    def __init__(
        self,
        url: str,
        logs: Path,
        *,
        engine: sa.Engine | None = None,
        log_level: str = "WARNING",
        worker_poll_interval: float = 0.1,
        parameters: Callable[[int], dict[str, str]] = key_and_phone,
    ) -> None:
        self.url = url
        self.logs = logs
        self.engine = engine if engine is not None else create_db_engine(url)
        self.log_level = log_level
        self.worker_poll_interval = worker_poll_interval
        self.parameters = parameters
        self.procs: list[subprocess.Popen[bytes]] = []
        self.clients: list[httpx.Client] = []
        self.org_id = ""
        self.journey_id = ""
        self.headers: dict[str, str] = {}
        self._n = 0

    # -- processes
    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
        env.update({"JOURNEYS_LOG_LEVEL": self.log_level, **extra})
        return env

    def cli(self, *args: str) -> Any:
        done = subprocess.run(
            [JOURNEYS, "--db", self.url, *args], capture_output=True, env=self.env(), timeout=120
        )
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout)

    def spawn(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        self._n += 1
        log = (self.logs / f"{self._n:02d}-{args[0]}.log").open("wb")
        proc = subprocess.Popen(
            [JOURNEYS, "--db", self.url, *args], stdout=log, stderr=subprocess.STDOUT, env=self.env(**env)
        )
        log.close()
        self.procs.append(proc)
        return proc

    def serve(self) -> tuple[subprocess.Popen[bytes], httpx.Client]:
        """An API server without a worker, up and answering /healthz, and a client of it."""
        port = free_port()
        proc = self.spawn("serve", "--no-worker", "--port", str(port), JOURNEYS_LOG_LEVEL="WARNING")
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        self.clients.append(client)
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the API server exited with {proc.returncode}"
            assert time.monotonic() < deadline, "the API server did not come up"
            try:
                if client.get("/healthz").status_code == 200:
                    return proc, client
            except httpx.TransportError:
                pass
            time.sleep(0.02)

    def worker(self, batch_size: int = 200) -> subprocess.Popen[bytes]:
        return self.spawn(
            "worker",
            JOURNEYS_WORKER_BATCH_SIZE=str(batch_size),
            JOURNEYS_WORKER_POLL_INTERVAL=str(self.worker_poll_interval),
            JOURNEYS_WORKER_LEASE_SECONDS="5",  # short leases: a killed worker's batch returns quickly
        )

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a kill -9 does not hang
                pass
        self.engine.dispose()

    def dump_logs(self) -> None:
        for path in sorted(self.logs.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()
            print(f"\n===== {path.name} ({len(lines)} lines; the last 200) =====")
            print("\n".join(lines[-200:]))

    # -- the tenant
    def set_up(self, definition: str, org_name: str = "Test Clinic") -> None:
        path = self.logs / "journey.yaml"
        path.write_text(definition)
        self.org_id = self.cli("org", "create", org_name, "--json")["id"]
        token = self.cli("token", "create", "--org", self.org_id, "--name", "test", "--json")["token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        self.journey_id = self.cli("journey", "publish", str(path), "--org", self.org_id, "--json")["id"]

    def instances_url(self, path: str = "") -> str:
        return f"/chatbotapi/external/orgs/{self.org_id}/journeys/{self.journey_id}/instances{path}"

    def bulk_body(self, start: int, count: int) -> dict[str, Any]:
        return {
            "flowId": None,
            "timeZone": "America/Chicago",
            "instances": [{"parameters": self.parameters(i)} for i in range(start, start + count)],
        }

    def trigger(self, clients: Sequence[httpx.Client], n: int, chunk: int = 1000) -> None:
        """n instances in requests of `chunk`, alternating between the API servers; each server
        gets its share from its own thread, so the servers take triggers at the same time."""
        starts = list(range(0, n, chunk))

        def send(server: int) -> None:
            for start in starts[server :: len(clients)]:
                body = self.bulk_body(start, min(chunk, n - start))
                r = clients[server].post(self.instances_url("/bulk"), json=body, headers=self.headers)
                assert r.status_code == 204, r.text

        with ThreadPoolExecutor(len(clients)) as pool:
            list(pool.map(send, range(len(clients))))

    # -- read-only SQL (`:o` is the org's id)
    def scalar(self, sql: str, **params: Any) -> Any:
        with read_only(self.engine) as conn:
            return conn.execute(sa.text(sql), {"o": self.org_id, **params}).scalar_one()

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with read_only(self.engine) as conn:
            return [dict(r) for r in conn.execute(sa.text(sql), {"o": self.org_id, **params}).mappings()]

    def sms_queued(self) -> int:
        return int(
            self.scalar("SELECT count(*) FROM instance_events WHERE org_id = :o AND kind = 'sms_queued'")
        )

    def all_done(self) -> bool:
        """Every instance has ended and no message is left queued."""
        return bool(
            self.scalar("SELECT count(*) FROM journey_instances WHERE org_id = :o AND status = 'InProgress'")
            == 0
            and self.scalar("SELECT count(*) FROM outbox WHERE org_id = :o AND status = 'queued'") == 0
        )


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


def wait_for(
    what: str,
    check: Callable[[], bool],
    deadline: float,
    alive: Sequence[subprocess.Popen[bytes]] = (),
    interval: float = 0.05,
) -> None:
    """Poll `check` every `interval` until it holds; fail at the deadline (a time.monotonic()),
    or at once if a process in `alive` has exited."""
    while True:
        for proc in alive:
            command = cast(list[str], proc.args)[3]  # journeys --db URL <command>
            assert proc.poll() is None, f"{command} (pid {proc.pid}) exited with {proc.returncode}"
        if check():
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
