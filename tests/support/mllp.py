"""HL7 over MLLP for the tests: SIU messages in each version's shape, a client that sends them
over real TCP and reads the acknowledgements, and a feed's listener run in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from journeys.clock import ManualClock
from journeys.feeds.bind import Feed, bind
from journeys.feeds.listener import Listener
from journeys.feeds.mapping import load_mapping_text
from journeys.keys.phi import Vault
from journeys.store.db import read_only

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE_JOURNEY = ROOT / "examples" / "appointment-reminder.yaml"
EXAMPLE_MAPPING = ROOT / "examples" / "feeds" / "appointment-reminder.hl7.yaml"
SAMPLES = ROOT / "examples" / "feeds" / "siu"
VT, FS_CR = b"\x0b", b"\x1c\r"


def mapping_for(org_id: str, journey_id: str, feed: str = "scheduling", extra: str = "") -> str:
    """The shipped example mapping, pointed at a test's org and journey."""
    text = EXAMPLE_MAPPING.read_text(encoding="utf-8")
    text = text.replace("org: Demo Clinic ", f"org: {org_id} ").replace(
        "journey: Appointment Reminder ", f"journey: {journey_id} "
    )
    return text.replace("feed: scheduling ", f"feed: {feed} ") + extra


def siu(
    event: str,
    control_id: str,
    appointment: str,
    *,
    version: str = "2.5.1",
    start: str = "20301202093000",
    family: str = "SMITH",
    given: str = "JOHN",
    phone: str = "3125550123",
    location: str = "CARD",
    kind: str = "FOLLOWUP",
    sender: tuple[str, str] = ("EPIC", "MAINCLINIC"),
    mrn: str = "MRN1",
) -> bytes:
    """An SIU message shaped as `version` sends it: 2.3 puts the start in SCH-11.4 and the
    phone as formatted text in PID-13; 2.4 adds the message structure and an offset; 2.5.1 puts
    the start in AIS-4 and the phone in XTN components."""
    msh9 = f"SIU^{event}" if version == "2.3" else f"SIU^{event}^SIU_S12"
    head = f"MSH|^~\\&|{sender[0]}|{sender[1]}|JOURNEYS|TEST|20301201080000"
    segs = [f"{head}||{msh9}|{control_id}|P|{version}"]
    if version == "2.3":
        segs.append(f"SCH||{appointment}||||ROUTINE|{kind}^{kind}|{kind}|30|min|^^30^{start[:12]}")
        segs.append(f"PID|||{mrn}^^^H^MR||{family}^{given}||19800101|M|||||({phone[:3]}){phone[3:6]}-{phone[6:]}")
    elif version == "2.4":
        segs.append(f"SCH|P{appointment}|{appointment}||||ROUTINE|{kind}^{kind}|{kind}|30|min|^^30^{start}-0600")
        segs.append(f"PID|1||{mrn}^^^H^MR||{family}^{given}||19800101|M|||||^PRN^PH^^1^{phone[:3]}^{phone[3:]}")
    else:
        segs.append(f"SCH|P{appointment}^EPIC|{appointment}^EPIC||||ROUTINE|{kind}^{kind}|{kind}|30|min")
        segs.append(
            f"PID|1||{mrn}^^^H^MR||{family}^{given}||19800101|M|||||^PRN^CP^^1^{phone[:3]}^{phone[3:]}"
            "~^NET^Internet^someone@example.com"
        )
    segs.append("RGS|1|A")
    segs.append(f"AIS|1|A|99213^Office visit|{start if version == '2.5.1' else ''}")
    segs.append(f"AIL|1|A|{location}^^^MAIN")
    segs.append("AIP|1|A|1001^Jones^Sarah")
    return ("\r".join(segs) + "\r").encode("utf-8")


@dataclass(frozen=True)
class Ack:
    code: str
    control_id: str
    text: str
    raw: str

    def segment(self, name: str) -> list[str]:
        for seg in self.raw.split("\r"):
            if seg.startswith(name + "|"):
                return seg.split("|")
        return []


def parse_ack(data: bytes) -> Ack:
    text = data.decode("utf-8")
    msa = next((s for s in text.split("\r") if s.startswith("MSA|")), "MSA|?|")
    parts = msa.split("|") + ["", ""]
    return Ack(parts[1], parts[2], parts[3], text)


class Client:
    """One MLLP connection."""

    def __init__(self, port: int, timeout: float = 60) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_ack(self) -> Ack | None:
        """The next framed reply, or None when the listener closed the connection."""
        while FS_CR not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        frame, _, self.buffer = self.buffer.partition(FS_CR)
        assert frame.startswith(VT), frame[:20]
        return parse_ack(frame[1:])

    def send(self, message: bytes) -> Ack:
        self.send_raw(VT + message + FS_CR)
        ack = self.read_ack()
        assert ack is not None, "the listener closed the connection without acknowledging"
        return ack


def bind_feed(engine: Engine, mapping_text: str) -> Feed:
    with read_only(engine) as conn:
        return bind(conn, load_mapping_text(mapping_text))


@contextmanager
def listening(engine: Engine, feed: Feed, vault: Vault, clock: ManualClock, **kw: int) -> Iterator[Listener]:
    """The feed's listener on a free port of 127.0.0.1, its event loop in a thread."""
    listener = Listener(engine, feed, lambda: vault.org(feed.org_id), clock.now, **kw)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(listener.start("127.0.0.1", 0))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(20), "the listener did not start"
    try:
        yield listener
    finally:
        asyncio.run_coroutine_threadsafe(listener.close(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(20)
        loop.close()
