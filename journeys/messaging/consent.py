"""SMS consent keywords (services; never commit).

A patient texting STOP (or STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT) opts out of the org's SMS
at once; START or UNSTOP opts back in; HELP asks for the org's help text. The keyword must be
the whole message (case-insensitive, surrounding blanks ignored). Opting out cancels no
appointment: the instances go on, but no SMS goes to that number any more (the interpreter
skips the send) and SMS already queued for it are dropped.

Staff can do the same through the API or the CLI (the patient asked at the front desk):
`add_opt_out` has a STOP's effects, `remove_opt_out` a START's; each change records its source
(sms | api | cli), when, and staff's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from journeys.definitions.values import NUL_PROBLEM, has_nul
from journeys.errors import Invalid
from journeys.keys.phi import OrgPhi
from journeys.messaging.phone import normalise_phone
from journeys.store import consent as repo
from journeys.timeline import event_row
from journeys.webhooks.events import record_events

OPT_OUT = "opt_out"
OPT_IN = "opt_in"
HELP = "help"

OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP"})

DEFAULT_HELP_TEXT = "Reply STOP to opt out. For help call your clinic."
OPTED_OUT_REASON = "the number opted out"


def classify(body: object) -> str | None:
    """OPT_OUT, OPT_IN, HELP, or None when the message is not a keyword."""
    if not isinstance(body, str):
        return None
    word = body.strip().upper()
    if word in OPT_OUT_KEYWORDS:
        return OPT_OUT
    if word in OPT_IN_KEYWORDS:
        return OPT_IN
    if word in HELP_KEYWORDS:
        return HELP
    return None


def apply_keyword(
    conn: Connection, org_id: str, phone: str, body: str, now: datetime, phi: OrgPhi
) -> str | None:
    """Act on a keyword message from `phone` (normalised); returns what it was (None: not a
    keyword, an ordinary reply)."""
    action = classify(body)
    key, number = _stored(phi, phone)
    if action == OPT_OUT:
        keyword = body.strip().upper()
        repo.set_status(conn, org_id, key, repo.OPTED_OUT, keyword, now, number=number)
        _opted_out_effects(conn, phi, phone, now, {"keyword": keyword})
    elif action == OPT_IN:
        repo.set_status(conn, org_id, key, repo.OPTED_IN, body.strip().upper(), now, number=number)
    return action


def _stored(phi: OrgPhi, phone: str) -> tuple[str, str | None]:
    """How a number is kept in the consent registry: what it is matched by (its blind index, or
    itself where the org's data is stored plain) and the number sealed (None: stored plain)."""
    return phi.phone_key(phone), (phi.seal(phone) if phi.encrypted else None)


def _opted_out_effects(
    conn: Connection, phi: OrgPhi, phone: str, now: datetime, detail: dict[str, str]
) -> None:
    """SMS queued to the number are dropped (an `sms_skipped` event each), and every instance
    that had SMS queued to it or waits for a reply from it gets one `opted_out` event (and so
    one `opted_out` webhook)."""
    org_id = phi.org_id
    dropped = repo.drop_queued_sms(conn, org_id, phi.phone_key(phone), OPTED_OUT_REASON)
    waiting = repo.instances_waiting_on(conn, org_id, phi.phone_key(phone))
    told = dict.fromkeys([row["instance_id"] for row in dropped] + waiting)
    record_events(
        conn,
        [
            event_row(
                org_id,
                row["instance_id"],
                now,
                row["flow_id"],
                None,
                row["step_id"],
                "sms_skipped",
                {"messageId": row["message_id"], "reason": OPTED_OUT_REASON},
            )
            for row in dropped
        ]
        + [event_row(org_id, iid, now, None, None, None, "opted_out", detail) for iid in told],
    )


# ---------------------------------------------------------------- staff: opt-outs by hand
MAX_REASON_CHARS = 500


class OptOutError(Invalid):
    pass


def parse_phone(value: object, name: str = "phone") -> str:
    """A phone number in the normalised form consent is kept in and sends are matched by
    ('+' and 8–15 digits, E.164; 10 digits are taken as North American), or OptOutError."""
    phone = normalise_phone(value) if isinstance(value, str) else None
    if phone is None or phone.startswith("+0") or (phone.startswith("+1") and not _nanp(phone)):
        raise OptOutError(
            [f"{name}: must be a phone number with its country code (e.g. +13125550100) or 10 digits"]
        )
    return phone


def _nanp(phone: str) -> bool:
    """A +1 number: ten digits after the 1, neither the area code nor the exchange starting
    with 0 or 1."""
    return len(phone) == 12 and phone[2] not in "01" and phone[5] not in "01"


def _parse_reason(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_REASON_CHARS:
        raise OptOutError([f"reason: must be a string of at most {MAX_REASON_CHARS} characters"])
    if has_nul(value):
        raise OptOutError([f"reason: {NUL_PROBLEM}"])
    return value


@dataclass(frozen=True, slots=True)
class OptOut:
    """A number's consent record as staff see it."""

    phone: str
    key: str  # what the registry keeps it by (its blind index where data is encrypted): paging
    opted_out: bool
    source: str | None  # who changed it last: sms, api, cli, …
    keyword: str | None  # the keyword the patient texted, if that was the change
    reason: str | None  # staff's note
    updated_at: datetime


def _opt_out(row: dict[str, Any], phi: OrgPhi, known: str | None = None) -> OptOut:
    """The record as staff see it; `known`: the number, where the caller has it (a record kept
    by its blind index only, after an erasure, no longer holds it)."""
    number, reason = row["number"], row["reason"]
    return OptOut(
        phone=known or (str(row["phone"]) if number is None else phi.open(number)),
        key=str(row["phone"]),
        opted_out=row["status"] == repo.OPTED_OUT,
        source=row["source"],
        keyword=row["keyword"],
        reason=None if reason is None else phi.open(reason),
        updated_at=row["updated_at"],
    )


def add_opt_out(
    conn: Connection, phi: OrgPhi, phone: object, reason: object, source: str, now: datetime
) -> tuple[bool, OptOut]:
    """Opt a number out as staff, with a STOP's effects. Returns (whether this call opted it
    out — False when it already was, and then nothing changes), and its record."""
    org_id = phi.org_id
    number = parse_phone(phone)
    note = _parse_reason(reason)
    key, sealed = _stored(phi, number)
    changed = repo.set_status(
        conn, org_id, key, repo.OPTED_OUT, None, now, source, _seal(phi, note),
        only_if_changed=True, number=sealed,
    )  # fmt: skip
    if changed:
        _opted_out_effects(conn, phi, number, now, {"source": source})
    row = repo.get(conn, org_id, key)
    assert row is not None
    return changed, _opt_out(row, phi, number)


def _seal(phi: OrgPhi, note: str | None) -> str | None:
    return None if note is None else phi.seal(note)


def remove_opt_out(conn: Connection, phi: OrgPhi, phone: object, source: str, now: datetime) -> bool:
    """Opt a number back in as staff (a START). False when it was not opted out."""
    return repo.opt_in_if_opted_out(conn, phi.org_id, phi.phone_key(parse_phone(phone)), now, source)


def remove_opt_out_with_reason(
    conn: Connection, phi: OrgPhi, phone: object, reason: object, source: str, now: datetime
) -> bool:
    """Opt a number back in, as the console does it: staff must say why (kept as the number's
    consent record's reason). False when it was not opted out."""
    problems = []
    try:
        number = parse_phone(phone)
    except OptOutError as exc:
        problems += exc.errors
    if not isinstance(reason, str) or not reason.strip():
        problems.append("reason: say why the number may be texted again (e.g. the patient asked at the desk)")
    else:
        try:
            _parse_reason(reason.strip())
        except OptOutError as exc:
            problems += exc.errors
    if problems:
        raise OptOutError(problems)
    assert isinstance(reason, str)
    key = phi.phone_key(number)
    return repo.opt_in_if_opted_out(conn, phi.org_id, key, now, source, phi.seal(reason.strip()))


CHANNELS = ("sms",)


def parse_channel(value: object) -> str:
    """The channel an opt-out is for: SMS only (consent keywords and opt-outs exist for SMS;
    email has no opt-out records)."""
    if value in CHANNELS:
        return str(value)
    raise OptOutError(["channel: opt-outs are kept for SMS only (email has no opt-out list)"])


def page_opt_outs(
    conn: Connection, phi: OrgPhi, before: tuple[datetime, str] | None, limit: int
) -> list[OptOut]:
    """The org's opted-out numbers, most recently changed first, keyset-paged (`before`: the
    last shown's (updated_at, key))."""
    return [_opt_out(r, phi) for r in repo.page_opted_out(conn, phi.org_id, before, limit)]


def list_opt_outs(conn: Connection, phi: OrgPhi, phone: object, limit: int) -> list[OptOut]:
    """The org's opted-out numbers, most recently changed first (`phone`: only that one)."""
    key = None if phone is None else phi.phone_key(parse_phone(phone))
    return [_opt_out(r, phi) for r in repo.list_opted_out(conn, phi.org_id, key, limit)]


def help_text(config: dict[str, Any]) -> str:
    """The org's answer to HELP: its sms channel config's `help_text`, else the default."""
    text = config.get("help_text")
    return text.strip() if isinstance(text, str) and text.strip() else DEFAULT_HELP_TEXT
