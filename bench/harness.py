"""What the benchmarks run against: a fresh database per figure group, and the real processes —
`journeys serve --no-worker` and `journeys worker` — started as subprocesses, as in production.

Peak memory is each process's own high-water mark (VmHWM in /proc/<pid>/status), read just
before it is stopped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import journeys.accounts.service as accounts
import journeys.catalog.service as catalog
from journeys.definitions import load_definition_file
from journeys.store import migrate
from journeys.store.db import create_db_engine, normalise_url, transaction
from journeys.store.tables import worker_heartbeats

ROOT = Path(__file__).resolve().parent.parent
JOURNEYS = Path(sys.executable).parent / "journeys"
APPOINTMENT = ROOT / "examples" / "appointment-reminder.yaml"
SEND_ONCE = ROOT / "bench" / "journeys" / "send-once.yaml"
LOG_DIR = Path(tempfile.gettempdir()) / "journeys-bench-logs"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Database:
    label: str  # "sqlite" or "postgresql"
    url: str
    engine: Engine
    _drop: Any = None

    @property
    def is_pg(self) -> bool:
        return self.label == "postgresql"

    def close(self) -> None:
        self.engine.dispose()
        if self._drop is not None:
            self._drop()


def fresh_database(label: str, base: str, name: str) -> Database:
    """A new, migrated database: a file in `base` (SQLite) or a new database on the server
    `base` points at (PostgreSQL), dropped again by close()."""
    if label == "sqlite":
        url = f"sqlite:///{base}/{name}.db"
        engine = create_db_engine(url)
        migrate.upgrade(engine)
        return Database(label, url, engine)
    dbname = f"journeys_bench_{name}_{uuid.uuid4().hex[:6]}"
    admin = create_db_engine(base).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{dbname}"')
    url = normalise_url(base).rsplit("/", 1)[0] + f"/{dbname}"
    engine = create_db_engine(url, pool_size=4)
    migrate.upgrade(engine)

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.dispose()

    return Database(label, url, engine, drop)


def postgres_reachable(url: str) -> str | None:
    """None when PostgreSQL answers at `url`, else why not."""
    try:
        engine = create_db_engine(url)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "skip PostgreSQL"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@dataclass
class Tenant:
    org_id: str
    token: str
    journey_id: str
    version: int = 1

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def instances_url(self, base: str) -> str:
        return f"{base}/chatbotapi/external/orgs/{self.org_id}/journeys/{self.journey_id}/instances"


def make_tenant(db: Database, definition: Path) -> Tenant:
    now = utcnow()
    with transaction(db.engine) as conn:
        org = accounts.create_org(conn, f"bench-{uuid.uuid4().hex[:6]}", now).id
        token = accounts.create_token(conn, org, "bench", list(accounts.KNOWN_SCOPES), now).token
        journey = catalog.publish(conn, org, load_definition_file(definition), now)
    return Tenant(org, token, journey.journey_id, journey.version)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A `journeys` subprocess; its output goes to a log file under LOG_DIR."""

    name: str
    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    peak_rss_mb: float = 0.0
    log_path: Path = field(default_factory=Path)

    def start(self) -> Proc:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{self.name}-{uuid.uuid4().hex[:6]}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(JOURNEYS), *self.args],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def rss_mb(self) -> float:
        """The process's peak resident set so far (MB)."""
        assert self.proc is not None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_mb = max(self.peak_rss_mb, int(line.split()[1]) / 1024)
        except OSError:
            pass
        return self.peak_rss_mb

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.rss_mb()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# JOURNEYS_BENCH_ENCRYPTED=1: the server and workers run with a secret key, so patient data is
# sealed and searched through blind indexes (journeys.keys.phi); compare with a run without it.
BENCH_SECRET_KEY = "bench-secret-key-" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"


def encrypted() -> bool:
    return os.environ.get("JOURNEYS_BENCH_ENCRYPTED", "") == "1"


def _env(db: Database, **extra: str) -> dict[str, str]:
    key = {"JOURNEYS_SECRET_KEY": BENCH_SECRET_KEY} if encrypted() else {}
    return {"JOURNEYS_DATABASE_URL": db.url, "JOURNEYS_LOG_LEVEL": "WARNING", **key, **extra}


def start_server(db: Database) -> tuple[Proc, str]:
    """`journeys serve --no-worker` on a free port; returns it once /healthz answers."""
    port = _free_port()
    proc = Proc("server", ["serve", "--no-worker", "--port", str(port)], _env(db)).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"the server did not answer within 60 s; see {proc.log_path}")


def start_workers(db: Database, n: int) -> list[Proc]:
    """`n` × `journeys worker`; returns once every one has written its first heartbeat."""
    procs = [Proc(f"worker{i}", ["worker"], _env(db)).start() for i in range(n)]
    pids = [p.proc.pid for p in procs if p.proc is not None]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for p in procs:
            p.check_alive()
        with db.engine.connect() as conn:
            seen = conn.execute(
                sa.select(sa.func.count()).where(
                    worker_heartbeats.c.pid.in_(pids), worker_heartbeats.c.stopped_at.is_(None)
                )
            ).scalar_one()
        if seen >= n:
            return procs
        time.sleep(0.1)
    for p in procs:
        p.stop()
    raise RuntimeError("the workers did not start within 60 s")
