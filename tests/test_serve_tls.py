"""`journeys serve --tls-cert --tls-key`: HTTPS without a proxy (a real TLS handshake against a
certificate made here), Strict-Transport-Security on its answers, and clear errors for missing,
unreadable, mismatched or lone files before anything starts."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from support.cli import JOURNEYS, clean_env
from support.net import free_port
from support.tls import self_signed as _certificate

TIMEOUT = 60
# TLS does not depend on the database: each test serves a SQLite file of its own.
pytestmark = pytest.mark.same_on_every_database


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOURNEYS, "--db", _db(tmp_path), "serve", "--no-worker", *args],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def _db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tls.db'}"


def test_serves_https_with_hsts(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*JOURNEYS, "--db", _db(tmp_path), "serve", "--no-worker", "--port", str(port),
             "--tls-cert", str(cert), "--tls-key", str(key)],
            cwd=tmp_path, env=clean_env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                r = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trust, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        assert r.status_code == 200
        assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        with pytest.raises(httpx.TransportError):  # no plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).raise_for_status()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_one_file_without_the_other_is_refused(tmp_path: Path) -> None:
    cert, _ = _certificate(tmp_path)
    proc = _serve(tmp_path, "--tls-cert", str(cert))
    assert proc.returncode == 1
    assert "--tls-cert and --tls-key go together" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    cert, _ = _certificate(tmp_path)
    proc = _serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(tmp_path / "nope.key"))
    assert proc.returncode == 1
    assert "TLS file not found" in proc.stderr and "nope.key" in proc.stderr


@pytest.mark.parametrize("problem", ["not pem", "another key"])
def test_unusable_files_are_refused(tmp_path: Path, problem: str) -> None:
    cert, key = _certificate(tmp_path)
    if problem == "not pem":
        key.write_text("this is not a key\n")
    else:
        _, key = _certificate(tmp_path, "other")
    proc = _serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    assert proc.returncode == 1
    assert "cannot use" in proc.stderr and "for TLS" in proc.stderr
    assert "Traceback" not in proc.stderr
