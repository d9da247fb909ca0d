"""The HL7 feed's figure: SIU messages per second end to end — `journeys hl7 listen` as its own
process, messages over MLLP on concurrent connections, each connection sending its next message
only when the last one's ACK (sent after its commit) is in."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

from bench.figures import Row, result
from bench.harness import APPOINTMENT, ROOT, Database, Proc, _env, _free_port, make_tenant, utcnow

MAPPING = ROOT / "examples" / "feeds" / "appointment-reminder.hl7.yaml"
VT, FS_CR = b"\x0b", b"\x1c\r"


def _message(event: str, control: str, appointment: str, start: str) -> bytes:
    segs = [
        f"MSH|^~\\&|BENCH|SITE|JOURNEYS|TEST|20300101080000||SIU^{event}^SIU_S12|{control}|P|2.5.1",
        f"SCH|P{appointment}^EHR|{appointment}^EHR||||ROUTINE|FOLLOWUP^Follow-up|FOLLOWUP|30|min",
        f"PID|1||MRN{appointment}^^^H^MR||SMITH^JOHN||19800101|M|||||^PRN^CP^^1^312^5550123",
        "RGS|1|A",
        f"AIS|1|A|99213^Office visit|{start}",
        "AIL|1|A|CARD^^^MAIN",
    ]
    return VT + ("\r".join(segs) + "\r").encode() + FS_CR


def _connection(port: int, messages: list[bytes], codes: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        buffer = b""
        for message in messages:
            sock.sendall(message)
            while FS_CR not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the listener closed a connection")
                buffer += chunk
            reply, _, buffer = buffer.partition(FS_CR)
            msa = next(s for s in reply.decode().split("\r") if s.startswith("MSA|"))
            codes.append(msa.split("|")[1])


def _listen(db: Database, mapping: Path) -> tuple[Proc, int]:
    port = _free_port()
    args = ["hl7", "listen", "--mapping", str(mapping), "--port", str(port)]
    proc = Proc("hl7-listener", args, _env(db)).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"the HL7 listener did not listen within 60 s; see {proc.log_path}")


def hl7(
    db: Database, runs: int, connections: int = 10, per_connection: int = 500
) -> tuple[list[Row], list[Proc]]:
    """Each run: `connections` × `per_connection` S12 messages (new appointments), then as many
    S15 cancelling them; messages per second for each kind."""
    tenant = make_tenant(db, APPOINTMENT)
    text = MAPPING.read_text().replace("org: Demo Clinic ", f"org: {tenant.org_id} ")
    text = text.replace("journey: Appointment Reminder ", f"journey: {tenant.journey_id} ")
    start = (utcnow() + timedelta(days=3)).strftime("%Y%m%d%H%M%S")
    with tempfile.TemporaryDirectory() as tmp:
        mapping = Path(tmp) / "feed.yaml"
        mapping.write_text(text)
        proc, port = _listen(db, mapping)
        booked, cancelled = [], []
        try:
            for run in range(runs):
                for event, rates in (("S12", booked), ("S15", cancelled)):
                    batches = [
                        [
                            _message(event, f"{run}-{event}-{c}-{k}", f"A{run}-{c}-{k}", start)
                            for k in range(per_connection)
                        ]
                        for c in range(connections)
                    ]
                    codes: list[str] = []
                    threads = [threading.Thread(target=_connection, args=(port, b, codes)) for b in batches]
                    t0 = time.perf_counter()
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    elapsed = time.perf_counter() - t0
                    if codes.count("AA") != connections * per_connection:
                        raise RuntimeError(f"not every message was accepted: {sorted(set(codes))}")
                    rates.append(connections * per_connection / elapsed)
        finally:
            proc.stop()
    figure = f"HL7 SIU over MLLP, {connections} connections"
    return [
        result(db.label, f"{figure}: S12 (start)", "messages/s", booked, 50),
        result(db.label, f"{figure}: S15 (cancel)", "messages/s", cancelled, 50),
    ], [proc]
