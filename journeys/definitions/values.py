"""Parameter values: parsing and checking the strings an API caller sends.

Values travel as strings (the seed: "a dictionary of strings"). A datetime value is either local
to the request's `timeZone` (`YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DDTHH:MM:SS`, seconds optional) or
absolute (ISO 8601 with an offset or `Z`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_LOCAL = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?$")
_ABSOLUTE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?(Z|[+-]\d{2}:?\d{2})$",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ().\-]{7,20}$")

# Parameter values are indexed for search; PostgreSQL caps a B-tree entry at about 2.7 kB.
MAX_VALUE_CHARS = 1000
MAX_VALUE_BYTES = 2000

_zone_cache: dict[str, ZoneInfo] = {}


def get_zone(name: str) -> ZoneInfo | None:
    """Return the IANA zone, or None when `name` is not one."""
    zone = _zone_cache.get(name)
    if zone is not None:
        return zone
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    _zone_cache[name] = zone
    return zone


def _micro(frac: str | None) -> int:
    if not frac:
        return 0
    return int((frac + "000000")[:6])


def parse_datetime(value: str, zone: ZoneInfo) -> datetime | None:
    """Parse a datetime parameter value to an aware UTC datetime, or None if it is not valid.

    Local values are read in `zone`; an ambiguous local time (DST fall-back) takes the first
    occurrence, a non-existent one (spring-forward gap) is moved forward by the gap, as
    `zoneinfo` does with fold=0.
    """
    m = _LOCAL.match(value)
    try:
        if m:
            y, mo, d, h, mi, s, frac = m.groups()
            local = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), _micro(frac), tzinfo=zone)
            return local.astimezone(UTC)
        m = _ABSOLUTE.match(value)
        if m:
            y, mo, d, h, mi, s, frac, off = m.groups()
            text = f"{y}-{mo}-{d}T{h}:{mi}:{s or '00'}"
            naive = datetime.fromisoformat(text).replace(microsecond=_micro(frac))
            if off.upper() == "Z":
                return naive.replace(tzinfo=UTC)
            off = off.replace(":", "")
            aware = datetime.fromisoformat(f"{text}{off[:3]}:{off[3:]}").replace(microsecond=_micro(frac))
            return aware.astimezone(UTC)
    except ValueError:
        return None
    return None


def check_value(type_: str, value: str, zone: ZoneInfo | None) -> str | None:
    """Return a problem description for `value` of parameter type `type_`, or None if it is fine.

    `zone` is None when the request's time zone is missing or invalid; datetime values are then
    not checked here (the time zone error is reported once, by the caller).
    """
    if type_ == "datetime":
        if zone is None:
            return None
        if parse_datetime(value, zone) is None:
            return "is not a valid datetime (use 'YYYY-MM-DD HH:MM:SS' or ISO 8601 with an offset)"
        return None
    if type_ == "number":
        return None if _NUMBER.match(value.strip()) else "is not a valid number"
    if type_ == "email":
        return None if _EMAIL.match(value.strip()) else "is not a valid email address"
    if type_ == "phone":
        if value.strip() == "":
            return None  # an empty phone is allowed: sends to it are skipped and recorded
        return None if _PHONE.match(value.strip()) else "is not a valid phone number"
    return None
