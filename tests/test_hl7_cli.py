"""`journeys hl7 check|listen|send` as a user runs them: real processes, the shipped example
mapping and sample messages, TLS, a worker process next to the listener, and the bad inputs of
each command, on the suite's database (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.cli import JOURNEYS, clean_env
from support.databases import own_database
from support.mllp import EXAMPLE_JOURNEY, EXAMPLE_MAPPING, SAMPLES, Client, siu
from support.net import free_port
from support.tls import self_signed

from journeys.store.db import create_db_engine

TIMEOUT = 120
PORT_LINE = re.compile(r"listening for MLLP on 127\.0\.0\.1:(\d+)")


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[str]:
    with own_database(tmp_path) as url:
        yield url


def journeys(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOURNEYS, "--db", db, *args], env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT
    )


def _demo_org(db: str) -> str:
    """The org and journey the example mapping names: "Demo Clinic" and "Appointment Reminder"."""
    made = journeys(db, "org", "create", "Demo Clinic", "--json")
    assert made.returncode == 0, made.stderr
    org = json.loads(made.stdout)["id"]
    published = journeys(db, "journey", "publish", str(EXAMPLE_JOURNEY), "--org", org)
    assert published.returncode == 0, published.stderr
    return str(org)


class Listening:
    """`journeys hl7 listen` in its own process; its port read from what it prints."""

    def __init__(self, db: str, mapping: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*JOURNEYS, "hl7", "listen", "--db", db, "--mapping", str(mapping), "--port", "0", *extra],
            env=clean_env(JOURNEYS_LOG_LEVEL="debug"),
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        assert self.proc.stderr is not None
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            m = PORT_LINE.search(line)
            if m:
                self.port = int(m.group(1))
                return
        self.stop()
        raise AssertionError("the listener did not start: " + "".join(self.lines))

    def stop(self) -> str:
        self.proc.terminate()
        _, rest = self.proc.communicate(timeout=TIMEOUT)
        return "".join(self.lines) + (rest or "")


def send(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOURNEYS, "hl7", "send", "--port", str(port), *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    command = [*JOURNEYS, "hl7", "check", str(path)]
    return subprocess.run(command, env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT)


def test_check_accepts_the_shipped_mapping() -> None:
    proc = _check(EXAMPLE_MAPPING)
    assert proc.returncode == 0, proc.stderr
    assert "ok (feed scheduling, journey Appointment Reminder)" in proc.stdout


BAD_MAPPING = """\
feed: "no spaces allowed"
org: Demo Clinic
journey: Appointment Reminder
time_zone: Mars/Olympus
parameters:
  appointmentId: SCH-two
  patientName: {field: PID-5, transform: shout}
events:
  S12: launch
  X01: cancel
  S26: {subflow: no-show, when_missing: maybe}
filters:
  rooms: {include: [A]}
"""


@pytest.mark.same_on_every_database
def test_check_names_every_problem_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_MAPPING)
    proc = _check(bad)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.splitlines()

    def has(start: str) -> bool:
        return any(line.startswith(f"{bad}:{start}") for line in lines)

    assert f"{bad}:1: feed: must be a name of letters, digits, . _ : @ + - (at most 64 characters)" in lines
    assert f"{bad}:4: time_zone: 'Mars/Olympus' is not an IANA time zone (e.g. America/Chicago)" in lines
    assert has("6: parameters.appointmentId: 'SCH-two' is not a field")
    assert has("7: parameters.patientName.transform: must be one of")
    assert has("9: events.S12: must be one of start, cancel, ignore")
    assert has("10: events.X01: not an SIU event")
    assert has("11: events.S26.when_missing: must be one of")
    assert has("13: filters.rooms: unknown filter")


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the mapping is empty"),
        ("feed: [unclosed\n", "YAML syntax error"),
        ("- a list\n", "expected a mapping"),
        ("feed: x\nfeed: y\n", "duplicate key 'feed'"),
        (b"\xff\xfe".decode("latin-1"), "cannot read the file: not UTF-8"),
    ],
)
def test_check_refuses_what_is_not_a_mapping(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content.encode("latin-1"))
    proc = _check(bad)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_against_the_database_names_what_does_not_fit(db: str, tmp_path: Path) -> None:
    org = _demo_org(db)
    text = EXAMPLE_MAPPING.read_text()
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        text.replace("patientId: PID-3.1", "patientNumber: PID-3.1").replace("no-show}", "missed}")
    )
    proc = journeys(db, "hl7", "check", str(wrong), "--db-check")
    assert proc.returncode == 1
    assert "parameters.patientNumber: not a parameter of journey 'Appointment Reminder'" in proc.stderr
    assert "parameters: patientId is required by the journey and must be mapped" in proc.stderr
    assert "events.S26.subflow: 'missed' is not a subflow (subflows: rescheduled, no-show)" in proc.stderr
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(text.replace("org: Demo Clinic", "org: Nowhere Clinic"))
    proc = journeys(db, "hl7", "check", str(elsewhere), "--db-check")
    assert proc.returncode == 1 and "no org has the id or name 'Nowhere Clinic'" in proc.stderr
    assert journeys(db, "hl7", "check", str(EXAMPLE_MAPPING), "--db-check").returncode == 0, org


def test_the_shipped_samples_through_a_listener_process_next_to_a_worker(db: str) -> None:
    org = _demo_org(db)
    listener = Listening(db, EXAMPLE_MAPPING)
    worker = subprocess.Popen([*JOURNEYS, "--db", db, "worker"], env=clean_env(), stderr=subprocess.DEVNULL)
    try:
        samples = sorted(str(p) for p in SAMPLES.glob("*.hl7"))
        first = send(listener.port, *samples, "--json")
        assert first.returncode == 0, first.stdout + first.stderr
        acks = [json.loads(line) for line in first.stdout.splitlines()]
        assert len(acks) == len(samples) and {a["ack"] for a in acks} == {"AA"}
        by_id = {a["controlId"]: a["text"] for a in acks}
        assert by_id["EPIC-100003"].startswith("cancelled instance")
        assert by_id["CRN0000799"].startswith("started subflow no-show")
        again = send(listener.port, samples[0])
        assert again.returncode == 0 and again.stdout.split()[2:] == by_id[acks[0]["controlId"]].split()
        # the worker process runs what the listener process started
        engine = create_db_engine(db)
        deadline = time.monotonic() + TIMEOUT
        ran = 0
        while time.monotonic() < deadline and not ran:
            with engine.connect() as conn:
                ran = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM instance_events WHERE org_id = :o"
                        " AND kind NOT IN ('started', 'subflow_started', 'cancelled')"
                    ),
                    {"o": org},
                ).scalar_one()
            time.sleep(0.2)
        engine.dispose()
        assert ran, "the worker ran no step of the feed's instances"
    finally:
        worker.terminate()
        worker.wait(TIMEOUT)
        log = listener.stop()
    assert "EPIC-100001 S12 -> AA" in log and "(redelivered)" in log
    for secret in ("SMITH", "Smith", "5550123", "GARCIA", "MRN100234", "APPT-5001"):
        assert secret not in log


def test_listening_with_tls(db: str, tmp_path: Path) -> None:
    _demo_org(db)
    cert, key = self_signed(tmp_path)
    listener = Listening(db, EXAMPLE_MAPPING, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert "(TLS)" in listener.lines[-1]
        tls = send(listener.port, "--tls", str(SAMPLES / "v2.4-athena-s12.hl7"))
        assert tls.returncode == 0 and " AA " in tls.stdout, tls.stdout + tls.stderr
        with Client(listener.port, timeout=10) as plain:  # without TLS: no acknowledgement
            plain.send_raw(b"\x0b" + siu("S12", "plain-1", "PLAIN") + b"\x1c\r")
            assert plain.read_ack() is None
    finally:
        listener.stop()


def test_listen_refuses_bad_arguments(db: str, tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    lone = journeys(db, "hl7", "listen", "--mapping", str(EXAMPLE_MAPPING), "--tls-cert", str(cert))
    assert lone.returncode == 2 and "--tls-cert and --tls-key go together" in lone.stderr
    missing = journeys(db, "hl7", "listen", "--mapping", str(tmp_path / "none.yaml"))
    assert missing.returncode == 1 and "cannot read the file: No such file or directory" in missing.stderr
    no_org = journeys(db, "hl7", "listen", "--mapping", str(EXAMPLE_MAPPING))
    assert no_org.returncode == 1 and "no org has the id or name 'Demo Clinic'" in no_org.stderr
    _demo_org(db)
    tls_args = ("--tls-cert", str(cert), "--tls-key", str(cert))
    bad_key = journeys(db, "hl7", "listen", "--mapping", str(EXAMPLE_MAPPING), *tls_args)
    assert bad_key.returncode == 2 and "cannot use the TLS certificate or key" in bad_key.stderr
    first = Listening(db, EXAMPLE_MAPPING)
    try:
        taken = journeys(db, "hl7", "listen", "--mapping", str(EXAMPLE_MAPPING), "--port", str(first.port))
        assert taken.returncode == 1 and f"cannot listen on 127.0.0.1:{first.port}" in taken.stderr
    finally:
        first.stop()
    for proc in (lone, missing, no_org, bad_key, taken):
        assert "Traceback" not in proc.stderr


@pytest.mark.same_on_every_database
def test_send_refuses_bad_arguments(tmp_path: Path) -> None:
    empty = tmp_path / "empty.hl7"
    empty.write_text("PID|1\n")
    none = send(free_port(), str(empty))
    assert none.returncode == 2 and "no HL7 messages in the files" in none.stderr
    closed = send(free_port(), str(SAMPLES / "v2.3-cerner-s12.hl7"))
    assert closed.returncode == 1 and "cannot connect to 127.0.0.1:" in closed.stderr
    unreadable = send(free_port(), str(tmp_path / "missing.hl7"))
    assert unreadable.returncode == 2 and "cannot read" in unreadable.stderr


def test_client_certificates_and_allowed_addresses(db: str, tmp_path: Path) -> None:
    """--tls-client-ca: only a client presenting a certificate that CA signed is heard (mutual
    TLS); --allow-from: only connections from those addresses."""
    _demo_org(db)
    server_cert, server_key = self_signed(tmp_path, "server")
    client_cert, client_key = self_signed(tmp_path, "client")
    sample = str(SAMPLES / "v2.4-athena-s12.hl7")
    mutual = Listening(
        db, EXAMPLE_MAPPING, "--tls-cert", str(server_cert), "--tls-key", str(server_key),
        "--tls-client-ca", str(client_cert),
    )  # fmt: skip
    try:
        mine = ("--tls-cert", str(client_cert), "--tls-key", str(client_key))
        signed = send(mutual.port, "--tls", *mine, sample)
        assert signed.returncode == 0 and " AA " in signed.stdout, signed.stdout + signed.stderr
        anonymous = send(mutual.port, "--tls", sample)
        # refused in the handshake (TLS 1.3 tells the client at its first read): closed, or an alert
        assert anonymous.returncode == 1 and anonymous.stdout == ""
        assert (
            "the listener closed the connection without acknowledging" in anonymous.stderr
            or f"the connection to 127.0.0.1:{mutual.port} failed" in anonymous.stderr
        ), anonymous.stderr
        assert "Traceback" not in anonymous.stderr
    finally:
        mutual.stop()
    elsewhere = Listening(db, EXAMPLE_MAPPING, "--allow-from", "10.0.0.0/8, 192.168.7.7")
    try:
        refused = send(elsewhere.port, sample)
        # closed at once, with the message unread: the client sees the close, or a reset
        assert refused.returncode == 1 and refused.stdout == ""
        assert (
            "closed the connection without acknowledging" in refused.stderr
            or f"the connection to 127.0.0.1:{elsewhere.port} failed" in refused.stderr
        ), refused.stderr
    finally:
        log = elsewhere.stop()
    assert "a connection from 127.0.0.1 refused (not in --allow-from)" in log
    local = Listening(db, EXAMPLE_MAPPING, "--allow-from", "127.0.0.0/8")
    try:
        assert send(local.port, sample).returncode == 0
    finally:
        local.stop()
    listen = ("hl7", "listen", "--mapping", str(EXAMPLE_MAPPING))
    bad = journeys(db, *listen, "--allow-from", "10.0.0.0/33")
    assert bad.returncode == 2
    assert "--allow-from: '10.0.0.0/33' is not an IP address or CIDR network" in bad.stderr
    lone = journeys(db, *listen, "--tls-client-ca", str(client_cert))
    assert lone.returncode == 2 and "--tls-client-ca needs --tls-cert and --tls-key" in lone.stderr
