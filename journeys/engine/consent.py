"""SMS consent keywords (services; never commit).

A patient texting STOP (or STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT) opts out of the org's SMS
at once; START or UNSTOP opts back in; HELP asks for the org's help text. The keyword must be
the whole message (case-insensitive, surrounding blanks ignored). Opting out cancels no
appointment: the instances go on, but no SMS goes to that number any more (the interpreter
skips the send) and SMS already queued for it are dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from journeys.engine.timeline import event_row
from journeys.store import consent as repo
from journeys.store.events import insert_events

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


def apply_keyword(conn: Connection, org_id: str, phone: str, body: str, now: datetime) -> str | None:
    """Act on a keyword message from `phone` (normalised); returns what it was (None: not a
    keyword, an ordinary reply)."""
    action = classify(body)
    if action == OPT_OUT:
        keyword = body.strip().upper()
        repo.set_status(conn, org_id, phone, repo.OPTED_OUT, keyword, now)
        dropped = repo.drop_queued_sms(conn, org_id, phone, OPTED_OUT_REASON)
        insert_events(
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
            # One opted_out event (and so one `opted_out` webhook) per instance that had SMS
            # queued to the number or is waiting for a reply from it.
            + [
                event_row(org_id, instance_id, now, None, None, None, "opted_out", {"keyword": keyword})
                for instance_id in dict.fromkeys(
                    [row["instance_id"] for row in dropped] + repo.instances_waiting_on(conn, org_id, phone)
                )
            ],
        )
    elif action == OPT_IN:
        repo.set_status(conn, org_id, phone, repo.OPTED_IN, body.strip().upper(), now)
    return action


def is_opted_out(conn: Connection, org_id: str, phone: str) -> bool:
    """Whether `phone` (normalised) opted out of the org's SMS."""
    return bool(repo.opted_out_among(conn, org_id, [phone]))


def help_text(config: dict[str, Any]) -> str:
    """The org's answer to HELP: its sms channel config's `help_text`, else the default."""
    text = config.get("help_text")
    return text.strip() if isinstance(text, str) and text.strip() else DEFAULT_HELP_TEXT
