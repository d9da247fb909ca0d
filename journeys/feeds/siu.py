"""Reading an HL7 v2 message (python-hl7 parses it) into what a feed needs: its header, and the
text of any field by reference (`SCH-11.4`, `PID-13`). Versions 2.3 to 2.5.1."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import hl7

VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
_REF = re.compile(r"^([A-Z][A-Z0-9]{2})-([1-9][0-9]{0,2})(?:\.([1-9][0-9]?))?(?:\.([1-9][0-9]?))?$")


class MessageProblem(ValueError):
    """The message cannot be read: `code` is HL7 table 0357's error code for the ERR segment."""

    def __init__(self, message: str, code: str = "100") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class FieldRef:
    """A field of a segment, with a component and subcomponent (1 when not given)."""

    segment: str
    field: int
    component: int = 1
    subcomponent: int = 1
    whole: bool = False  # written without a component (`PID-13`): its first component's value

    def __str__(self) -> str:
        if self.whole:
            return f"{self.segment}-{self.field}"
        text = f"{self.segment}-{self.field}.{self.component}"
        return text + (f".{self.subcomponent}" if self.subcomponent != 1 else "")


def parse_ref(text: str) -> FieldRef | None:
    """`SCH-11.4` -> FieldRef("SCH", 11, 4); None when it is not a field reference."""
    m = _REF.match(text.strip())
    if m is None:
        return None
    seg, fld, comp, sub = m.groups()
    if comp is None:
        return FieldRef(seg, int(fld), whole=True)
    return FieldRef(seg, int(fld), int(comp), int(sub or 1))


@dataclass(frozen=True)
class Header:
    """What MSH says of the message (never patient data)."""

    control_id: str  # MSH-10
    sender: str  # MSH-3^MSH-4: the sending application and facility
    receiver_app: str  # MSH-5
    receiver_facility: str  # MSH-6
    sender_app: str  # MSH-3
    sender_facility: str  # MSH-4
    message_type: str  # MSH-9.1, e.g. SIU
    event: str  # MSH-9.2, e.g. S12
    processing_id: str  # MSH-11
    version: str  # MSH-12

    @property
    def logged_id(self) -> str:
        """The control id as a log line shows it: printable characters only (no forged lines)."""
        return "".join(c if c.isprintable() else "?" for c in self.control_id)[:64]


class Message:
    """A parsed message: its header, and field values by reference (unescaped)."""

    def __init__(self, parsed: Any, header: Header) -> None:
        self._msg = parsed
        self.header = header

    def segments(self, name: str) -> list[Any]:
        return [s for s in self._msg if str(s[0]) == name]

    def values(self, ref: FieldRef) -> list[str]:
        """The value in every occurrence of the segment (e.g. each AIP), empty ones left out."""
        out = [_component(self._msg, seg, ref) for seg in self.segments(ref.segment)]
        return [v for v in out if v]

    def value(self, ref: FieldRef) -> str:
        """The value in the segment's first occurrence ("" when absent)."""
        segs = self.segments(ref.segment)
        return _component(self._msg, segs[0], ref) if segs else ""

    def repetitions(self, segment: str, field: int) -> list[list[str]]:
        """Every repetition of a field of the segment's first occurrence, as its components
        (each component's first subcomponent, unescaped)."""
        segs = self.segments(segment)
        if not segs or len(segs[0]) <= field:
            return []
        out = []
        for rep in _repetitions(segs[0][field]):
            out.append([_text(self._msg, comp[0] if comp else "") for comp in _components(rep)])
        return out


def _repetitions(fld: Any) -> list[Any]:
    if isinstance(fld, hl7.Field) and len(fld) and isinstance(fld[0], hl7.Repetition):
        return list(fld)
    return [fld]


def _components(rep: Any) -> list[list[str]]:
    """A repetition's components, each a list of its subcomponents."""
    if isinstance(rep, hl7.Repetition):
        return [[str(sub) for sub in comp] if isinstance(comp, list) else [str(comp)] for comp in rep]
    if isinstance(rep, list):
        return [["".join(str(x) for x in rep)]]
    return [[str(rep)]]


def _text(msg: Any, text: str) -> str:
    return str(msg.unescape(text)).strip() if "\\" in text else text.strip()


def _component(msg: Any, seg: Any, ref: FieldRef) -> str:
    if len(seg) <= ref.field:
        return ""
    reps = _repetitions(seg[ref.field])
    comps = _components(reps[0]) if reps else []
    if len(comps) < ref.component:
        return ""
    subs = comps[ref.component - 1]
    return _text(msg, subs[ref.subcomponent - 1]) if len(subs) >= ref.subcomponent else ""


def _clean(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # HL7's default character set is ASCII; 8859/1 is common
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    return text


def parse_message(data: bytes) -> Message:
    """Parse the message; raises MessageProblem when it cannot be read at all."""
    text = _clean(data)
    if not text.startswith("MSH") or len(text) < 8:
        raise MessageProblem("the message does not start with an MSH segment")
    if "\x00" in text:
        raise MessageProblem("the message contains a NUL character", "102")
    try:
        parsed = hl7.parse(text)
    except Exception:  # python-hl7 raises assorted errors on broken input
        raise MessageProblem("the message cannot be parsed as HL7 v2") from None
    return Message(parsed, _header(parsed))


def _msh(parsed: Any, field: int, component: int = 1) -> str:
    return _component(parsed, parsed.segment("MSH"), FieldRef("MSH", field, component))


def _header(parsed: Any) -> Header:
    h = Header(
        control_id=_msh(parsed, 10),
        sender=f"{_msh(parsed, 3)}^{_msh(parsed, 4)}",
        sender_app=_msh(parsed, 3),
        sender_facility=_msh(parsed, 4),
        receiver_app=_msh(parsed, 5),
        receiver_facility=_msh(parsed, 6),
        message_type=_msh(parsed, 9, 1),
        event=_msh(parsed, 9, 2),
        processing_id=_msh(parsed, 11),
        version=_msh(parsed, 12),
    )
    return h
