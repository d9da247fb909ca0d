"""Parameter values: parsing and checking the strings an API caller sends.

Values travel as strings (the seed: "a dictionary of strings"). A datetime value is either local
to the request's `timeZone` (`YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DDTHH:MM:SS`, seconds optional) or
absolute (ISO 8601 with an offset or `Z`). Only ASCII digits count (Python's `int()` and
`fromisoformat` also take other scripts' digits, e.g. full-width ones), only the years
MIN_YEAR..MAX_YEAR are accepted (further out, time zone arithmetic overflows) and UTC offsets
go to ±14:00, as real ones do.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DATE_TIME = r"([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,7}))?)?"
_LOCAL = re.compile(_DATE_TIME)
_ABSOLUTE = re.compile(_DATE_TIME.replace("[ T]", "T") + r"(Z|[+-][0-9]{2}:?[0-9]{2})", re.IGNORECASE)
_NUMBER = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ().\-]{7,20}$")

# Parameter values are indexed for search; PostgreSQL caps a B-tree entry at about 2.7 kB.
MAX_VALUE_CHARS = 1000
MAX_VALUE_BYTES = 2000

MIN_YEAR = 1900
MAX_YEAR = 2200
MAX_UTC_OFFSET = timedelta(hours=14)

NUL = "\x00"
NUL_PROBLEM = "must not contain NUL characters (\\u0000)"
DATETIME_PROBLEM = "is not a valid datetime (use 'YYYY-MM-DD HH:MM:SS' or ISO 8601 with an offset)"
YEAR_PROBLEM = f"is out of range (years {MIN_YEAR} to {MAX_YEAR})"
OFFSET_PROBLEM = "has a UTC offset beyond ±14:00"


def has_nul(value: str) -> bool:
    """Whether `value` holds a NUL character, which PostgreSQL cannot store in text."""
    return NUL in value


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


def datetime_problem(value: str, zone: ZoneInfo) -> tuple[datetime | None, str | None]:
    """Parse a datetime parameter value: (aware UTC datetime, None), or (None, the problem).

    Local values are read in `zone`; an ambiguous local time (DST fall-back) takes the first
    occurrence, a non-existent one (spring-forward gap) is moved forward by the gap, as
    `zoneinfo` does with fold=0.
    """
    local = _LOCAL.fullmatch(value)
    absolute = None if local else _ABSOLUTE.fullmatch(value)
    m = local or absolute
    if m is None:
        return None, DATETIME_PROBLEM
    y, mo, d, h, mi, s, frac = m.groups()[:7]
    if not MIN_YEAR <= int(y) <= MAX_YEAR:
        return None, YEAR_PROBLEM
    tz: tzinfo = zone
    if absolute is not None:
        off = absolute.group(8).replace(":", "")
        if off.upper() == "Z":
            tz = UTC
        else:
            hours, minutes = int(off[1:3]), int(off[3:5])
            delta = timedelta(hours=hours, minutes=minutes)
            if hours >= 24 or minutes >= 60:
                return None, DATETIME_PROBLEM
            if delta > MAX_UTC_OFFSET:
                return None, OFFSET_PROBLEM
            tz = timezone(-delta if off[0] == "-" else delta)
    try:
        moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), _micro(frac), tzinfo=tz)
        return moment.astimezone(UTC), None
    except (ValueError, OverflowError):
        return None, DATETIME_PROBLEM


def parse_datetime(value: str, zone: ZoneInfo) -> datetime | None:
    """Parse a datetime parameter value to an aware UTC datetime, or None if it is not valid
    (see `datetime_problem`)."""
    if not isinstance(value, str):
        return None
    return datetime_problem(value, zone)[0]


def check_value(type_: str, value: str, zone: ZoneInfo | None) -> str | None:
    """Return a problem description for `value` of parameter type `type_`, or None if it is fine.

    `zone` is None when the request's time zone is missing or invalid; datetime values are then
    not checked here (the time zone error is reported once, by the caller).
    """
    if type_ == "datetime":
        if zone is None:
            return None
        return datetime_problem(value, zone)[1]
    if type_ == "number":
        return None if _NUMBER.match(value.strip()) else "is not a valid number"
    if type_ == "email":
        return None if _EMAIL.match(value.strip()) else "is not a valid email address"
    if type_ == "phone":
        if value.strip() == "":
            return None  # an empty phone is allowed: sends to it are skipped and recorded
        return None if _PHONE.match(value.strip()) else "is not a valid phone number"
    return None
