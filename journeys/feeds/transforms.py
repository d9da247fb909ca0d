"""Turning SIU fields into parameter values: names (XPN), phone numbers and email addresses
(XTN, PID-13/PID-14), and times (TS/DTM: an offset is honoured, else the feed's zone)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import phonenumbers

from journeys.feeds.mapping import Source
from journeys.feeds.siu import FieldRef, Message

_TS = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(?:(\d{2})(?:\.\d{1,4})?)?)?([+-]\d{4})?$")
# XTN components (1-based): 1 number as text, 2 use code, 3 equipment type, 4 email,
# 5 country code, 6 area code, 7 local number, 8 extension, 12 unformatted number (2.5).
_CELL = ("CP", "BP")
_EMAIL_EQUIPMENT = ("INTERNET", "X.400")


class ValueProblem(ValueError):
    """A field's value cannot become the parameter's (the text names the field, never the value)."""


def _part(parts: list[str], n: int) -> str:
    return parts[n - 1] if len(parts) >= n else ""


def read_source(msg: Message, src: Source, zone: ZoneInfo, region: str) -> tuple[str, FieldRef | None]:
    """The parameter's value ("" when no field has one) and the field it came from."""
    if src.value is not None:
        return src.value, None
    for ref in src.fields:
        if not isinstance(ref, FieldRef):  # a FHIR path: not in an HL7 feed's mapping
            continue
        value = _read(msg, src, ref, zone, region)
        if value:
            return value, ref
    return "", None


def _read(msg: Message, src: Source, ref: FieldRef, zone: ZoneInfo, region: str) -> str:
    if src.transform == "name":
        return _cased(_name(msg, ref, src.format), src.case)
    if src.transform == "phone":
        return _phone(msg, ref, region)
    if src.transform == "email":
        return _email(msg, ref)
    raw = msg.value(ref)
    if not raw:
        return ""
    if src.transform in ("datetime", "date"):
        moment = parse_ts(raw, zone)
        if moment is None:
            raise ValueProblem(f"{ref} is not an HL7 date/time (YYYYMMDD[HHMM[SS]][+ZZZZ])")
        return moment.strftime("%Y-%m-%dT%H:%M:%S" if src.transform == "datetime" else "%Y-%m-%d")
    return _cased(raw, src.case)


def parse_ts(text: str, zone: ZoneInfo) -> datetime | None:
    """An HL7 TS/DTM as a local time in `zone` (an offset, when given, is converted)."""
    m = _TS.match(text.strip())
    if m is None:
        return None
    y, mo, d, h, mi, s, off = m.groups()
    try:
        moment = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
    except ValueError:
        return None
    if off is None:
        return moment.replace(tzinfo=zone)
    delta = timedelta(hours=int(off[1:3]), minutes=int(off[3:5]))
    if delta >= timedelta(hours=24):
        return None
    return moment.replace(tzinfo=timezone(-delta if off[0] == "-" else delta)).astimezone(zone)


def _cased(text: str, case: str) -> str:
    if case == "title":
        return " ".join(w[:1].upper() + w[1:].lower() for w in text.split(" "))
    if case == "upper":
        return text.upper()
    if case == "lower":
        return text.lower()
    return text


def _name(msg: Message, ref: FieldRef, fmt: str) -> str:
    reps = msg.repetitions(ref.segment, ref.field)
    if not reps:
        return ""
    parts = reps[0]  # XPN: family^given^middle^suffix^prefix
    if not ref.whole:  # one component (PID-5.2): that part alone
        return msg.value(ref)
    named = dict(zip(("family", "given", "middle", "suffix", "prefix"), parts + [""] * 5, strict=False))
    return " ".join(fmt.format(**named).split())


def _xtn_number(parts: list[str]) -> str:
    unformatted = _part(parts, 12)
    if unformatted:
        return unformatted
    area, local = _part(parts, 6), _part(parts, 7)
    if local:
        country = _part(parts, 5)
        return ("+" + country if country else "") + area + local
    return _part(parts, 1)


def _phone(msg: Message, ref: FieldRef, region: str) -> str:
    """The best number of the field's repetitions: a mobile first, then any other number;
    never an email or fax. E.164 (+15555550100); "" when none is a possible number."""
    reps = msg.repetitions(ref.segment, ref.field)
    numbers = [r for r in reps if _part(r, 3).upper() not in (*_EMAIL_EQUIPMENT, "FX") and _xtn_number(r)]
    numbers.sort(key=lambda r: 0 if _part(r, 3).upper() in _CELL else 1)
    for rep in numbers:
        try:
            parsed = phonenumbers.parse(_xtn_number(rep), region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return ""  # none usable: the journey's sends to it are skipped, and the timeline says why


def _email(msg: Message, ref: FieldRef) -> str:
    for rep in msg.repetitions(ref.segment, ref.field):
        address = _part(rep, 4) or (_part(rep, 1) if "@" in _part(rep, 1) else "")
        if address:
            return address
    return ""
