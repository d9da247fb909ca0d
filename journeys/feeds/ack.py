"""Original-mode acknowledgements (ACK): MSA-1 AA/AE/AR, MSA-2 the message's control id, the
reason in MSA-3 and in an ERR segment (ERR-1 before 2.5, ERR-3/4/8 from 2.5)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from journeys.feeds.siu import Header

# HL7 table 0357: message error condition codes.
ERROR_NAMES = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}


@dataclass(frozen=True)
class Ack:
    """What a message got: its code, the reason (never patient data), the HL7 error code for AE
    and AR, the instance it touched, and whether it was a redelivery of an applied message."""

    code: str  # AA | AE | AR
    text: str
    error: str | None = None  # HL7 table 0357
    instance_id: str | None = None
    duplicate: bool = False

    @property
    def accepted(self) -> bool:
        return self.code == "AA"


def accept(text: str, instance_id: str | None = None) -> Ack:
    return Ack("AA", text, None, instance_id)


def error(text: str, code: str = "207") -> Ack:
    return Ack("AE", text, code)


def reject(text: str, code: str) -> Ack:
    return Ack("AR", text, code)


def _escape(text: str) -> str:
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    out = out.replace("&", "\\T\\").replace("~", "\\R\\")
    return " ".join(out.split())[:1000]


_UNKNOWN = Header("", "", "", "", "", "", "", "", "P", "2.5.1")


def encode(ack: Ack, header: Header | None, now: datetime) -> bytes:
    """The ACK message (segments separated by carriage returns), ready to frame."""
    h = header or _UNKNOWN
    version = h.version if h.version.startswith("2.") else "2.5.1"
    event = h.event if h.event.isalnum() and len(h.event) <= 3 else ""
    msh = "|".join(
        [
            "MSH",
            "^~\\&",
            _escape(h.receiver_app or "JOURNEYS"),
            _escape(h.receiver_facility),
            _escape(h.sender_app),
            _escape(h.sender_facility),
            now.strftime("%Y%m%d%H%M%S"),
            "",
            f"ACK^{event}^ACK" if event else "ACK",
            uuid.uuid4().hex[:20],
            _escape(h.processing_id or "P")[:3],
            _escape(version)[:8],
        ]
    )
    segments = [msh, f"MSA|{ack.code}|{_escape(h.control_id)}|{_escape(ack.text)}"]
    if ack.error is not None:
        name = ERROR_NAMES.get(ack.error, "Application internal error")
        if version in ("2.3", "2.3.1", "2.4"):
            segments.append(f"ERR|^^^{ack.error}&{name}&HL70357")
        else:
            segments.append(f"ERR|||{ack.error}^{name}^HL70357|E||||{_escape(ack.text)}")
    return ("\r".join(segments) + "\r").encode("utf-8")
