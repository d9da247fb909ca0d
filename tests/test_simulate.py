"""`journeys simulate` on the example journeys: the exact timeline a patient would get.

Each example is run through the simulator on at least one path by the CLI (`journeys simulate
… --json`, as a subprocess) and on the others through `journeys.engine.simulate.simulate`.
The timelines are asserted exactly: event types in order, step ids, UTC times (across the
America/Chicago DST changes of 2026-03-08 and 2026-11-01), rendered bodies, send-window holds,
frequency caps, every reply branch, http_request success and failure, and the past-time policy.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from support.cli import JOURNEYS, clean_env

from journeys.definitions import load_definition_file, load_definition_text
from journeys.definitions.model import JourneyDefinition, SendEmailStep, SendSmsStep, SendWindow
from journeys.engine.simulate import Reply, simulate

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
APPOINTMENT_FULL = EXAMPLES / "appointment-full.yaml"
APPOINTMENT_REMINDER = EXAMPLES / "appointment-reminder.yaml"
SURVEY = EXAMPLES / "post-visit-survey.yaml"
PRE_PROCEDURE = EXAMPLES / "pre-procedure.yaml"
TZ = "America/Chicago"
CHICAGO = ZoneInfo(TZ)
TIMEOUT = 60  # seconds, for any single CLI run


PHONE = "(312) 555-0100"
PHONE_E164 = "+13125550100"
SEND_KINDS = ("sms_queued", "email_queued")
Event = dict[str, Any]


# ---------------------------------------------------------------------------- helpers
def local(text: str) -> datetime:
    """'YYYY-MM-DD HH:MM' in America/Chicago, as an aware datetime."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CHICAGO)


def run(
    path: Path,
    params: dict[str, str],
    start: str,
    replies: dict[int, list[Reply]] | None = None,
    http: dict[int, dict[str, Any]] | None = None,
    definition: JourneyDefinition | None = None,
) -> list[Event]:
    """Simulate through the Python function (parameters must use their declared names)."""
    defn = definition or load_definition_file(path)
    return simulate(defn, params, TZ, local(start), replies=replies, http=http)


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*JOURNEYS, "simulate", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd or ROOT,
        env=env or clean_env(),
        check=False,
    )


def cli_json(path: Path, params: dict[str, str], start: str, *extra: str) -> list[Event]:
    """Simulate through `journeys simulate --json`; the run must succeed."""
    result = cli(str(path), "--params", json.dumps(params), "--tz", TZ, "--start", start, *extra, "--json")
    assert result.returncode == 0, result.stderr
    events = json.loads(result.stdout)
    assert isinstance(events, list)
    return events


def timeline(events: list[Event]) -> list[tuple[str, int | None, str]]:
    return [(e["time"], e["stepId"], e["type"]) for e in events]


def sends(events: list[Event]) -> list[tuple[str, int, str, str, str]]:
    return [
        (e["time"], e["stepId"], e["channel"], e["to"], e["body"]) for e in events if e["type"] in SEND_KINDS
    ]


def detail(events: list[Event], step: int, kind: str) -> dict[str, Any]:
    found = [e["detail"] for e in events if e["stepId"] == step and e["type"] == kind]
    assert len(found) == 1, f"expected one {kind} at step {step}, got {len(found)}"
    return found[0]


def bodies(events: list[Event]) -> list[str]:
    return [e["body"] for e in events if e["type"] in SEND_KINDS]


# ============================================================================ appointment-full
APPOINTMENT = {
    "patientId": "p-100",
    "patientName": "Ana",
    "appointmentId": "a-100",
    "appointmentDateTime": "2026-11-03 10:00",  # Tue, two days after the fall-back
    "phoneNumber": PHONE,
    "location": "Lakeview Clinic, 2nd floor",
}

# No text promises a reminder, and none says "in one week" or "in 2 days": a reminder may be
# skipped (booked late) or deferred to the next morning by the frequency cap.
CONFIRMATION_NOV3 = (
    "Hi Ana, your appointment is booked for Tuesday, November 3 at 10:00 AM at Lakeview Clinic, "
    "2nd floor. To change it, call us at (312) 555-0199."
)
WEEK_NOV3 = "Reminder: Ana, your appointment is on Tuesday, November 3 at 10:00 AM."
QUESTION_NOV3 = (
    "Hi Ana, please confirm your appointment on Tuesday, November 3 at 10:00 AM: reply C to confirm or "
    "R to reschedule."
)
FULL_THANKS = "Thank you, Ana: your appointment is confirmed. See you then!"
SORRY = "Sorry, we didn't understand. Please reply C to confirm or R to reschedule."
DAY_OF_10AM = "See you today at 10:00 AM, Ana! We're at Lakeview Clinic, 2nd floor."
NO_SHOW = (
    "We missed you at your appointment on Tuesday, November 3, Ana. Reply R to find a new time, or call "
    "us at (312) 555-0199."
)
# "We'll call you" only once the scheduling system has the request; otherwise "please call us".
CALL_YOU_NOV3 = (
    "Thanks, Ana. Our scheduling team will call you within one business day to find a new time for "
    "your November 3 appointment."
)
CALL_US_NOV3 = (
    "Thanks, Ana. Please call us at (312) 555-0199 to find a new time for your November 3 appointment."
)


@pytest.mark.same_on_every_database
def test_appointment_examples_validate() -> None:
    for path in (APPOINTMENT_FULL, APPOINTMENT_REMINDER, SURVEY, PRE_PROCEDURE):
        result = subprocess.run(
            [*JOURNEYS, "journey", "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=ROOT,
            env=clean_env(),
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout == f"{path}: ok\n"
        assert result.stderr == ""


@pytest.mark.same_on_every_database
def test_full_journey_confirmed_across_the_fall_back_by_cli() -> None:
    """Booked two weeks ahead; the 7-day reminder is before the 2026-11-01 fall-back (CDT), the
    2-day question on the day of it (CST); the patient confirms with C and does not show up.
    Steps 5 and 12 (is the appointment past?) are new: both find it ahead."""
    params = {**APPOINTMENT, "email": "ana@example.org"}
    events = cli_json(APPOINTMENT_FULL, params, "2026-10-20 10:00", "--reply", "60=C")
    assert timeline(events) == [
        ("2026-10-20T15:00:00Z", 5, "branch"),
        ("2026-10-20T15:00:00Z", 10, "sms_queued"),
        ("2026-10-20T15:00:00Z", 12, "branch"),
        ("2026-10-20T15:00:00Z", 15, "email_queued"),
        ("2026-10-20T15:00:00Z", 20, "wait"),
        # 7 days before at 09:00 local: 09:00 CDT = 14:00Z
        ("2026-10-27T14:00:00Z", 30, "sms_queued"),
        ("2026-10-27T14:00:00Z", 40, "wait"),
        # 2 days before at 09:00 local, on the fall-back day itself: 09:00 CST = 15:00Z
        ("2026-11-01T15:00:00Z", 45, "branch"),
        ("2026-11-01T15:00:00Z", 50, "sms_queued"),
        ("2026-11-01T15:00:00Z", 60, "waiting_for_reply"),
        ("2026-11-01T15:05:00Z", 60, "reply_received"),
        ("2026-11-01T15:05:00Z", 70, "sms_queued"),
        ("2026-11-01T15:05:00Z", 120, "wait"),
        # 08:00 CST on the day
        ("2026-11-03T14:00:00Z", 130, "sms_queued"),
        ("2026-11-03T14:00:00Z", 140, "wait"),
        # 2 hours after 10:00 CST
        ("2026-11-03T18:00:00Z", 150, "branch"),
        ("2026-11-03T18:00:00Z", 170, "sms_queued"),
        ("2026-11-03T18:00:00Z", 180, "waiting_for_reply"),
        ("2026-11-05T18:00:00Z", 180, "reply_timeout"),
        ("2026-11-05T18:00:00Z", 190, "end"),
    ]
    assert detail(events, 5, "branch") == {"case": "else", "next": 10}
    assert detail(events, 12, "branch") == {"case": "else", "next": 15}
    assert detail(events, 20, "wait") == {"until": "2026-10-27T14:00:00Z"}
    assert detail(events, 40, "wait") == {"until": "2026-11-01T15:00:00Z"}
    assert detail(events, 45, "branch") == {"case": "else", "next": 50}
    assert detail(events, 60, "waiting_for_reply") == {"until": "2026-11-02T15:00:00Z"}
    assert detail(events, 60, "reply_received") == {"outcome": "confirmed"}
    assert detail(events, 120, "wait") == {"until": "2026-11-03T14:00:00Z"}
    assert detail(events, 140, "wait") == {"until": "2026-11-03T18:00:00Z"}
    assert detail(events, 150, "branch") == {"case": "else", "next": 170}
    assert detail(events, 180, "reply_timeout") == {"outcome": "no_reply"}
    assert detail(events, 190, "end") == {"outcome": "no-show"}
    by_step = {(e["stepId"], e["type"]): e for e in events}
    assert by_step[(30, "sms_queued")]["localTime"] == "2026-10-27T09:00:00-05:00"
    assert by_step[(50, "sms_queued")]["localTime"] == "2026-11-01T09:00:00-06:00"
    assert all(e["flowId"] == "main" and e["flowName"] == "Main Flow" for e in events)
    assert sends(events) == [
        ("2026-10-20T15:00:00Z", 10, "sms", PHONE_E164, CONFIRMATION_NOV3),
        (
            "2026-10-20T15:00:00Z",
            15,
            "email",
            "ana@example.org",
            "Hi Ana,\n\nYour appointment is booked for Tuesday, November 3, 2026 at 10:00 AM.\n"
            "Location: Lakeview Clinic, 2nd floor\n\n"
            "To change it, call us at (312) 555-0199.",
        ),
        ("2026-10-27T14:00:00Z", 30, "sms", PHONE_E164, WEEK_NOV3),
        ("2026-11-01T15:00:00Z", 50, "sms", PHONE_E164, QUESTION_NOV3),
        ("2026-11-01T15:05:00Z", 70, "sms", PHONE_E164, FULL_THANKS),
        ("2026-11-03T14:00:00Z", 130, "sms", PHONE_E164, DAY_OF_10AM),
        ("2026-11-03T18:00:00Z", 170, "sms", PHONE_E164, NO_SHOW),
    ]
    email = by_step[(15, "email_queued")]
    assert email["subject"] == "Your appointment on November 3"
    assert "subject" not in by_step[(10, "sms_queued")]


@pytest.mark.same_on_every_database
def test_full_journey_across_the_spring_forward_without_a_reply_by_cli() -> None:
    """Appointment Tue 2026-03-10 10:00 CDT: the 7-day reminder is in CST, the 2-day question on
    the spring-forward day (2026-03-08) in CDT; no reply, so the day-of reminder follows."""
    params = {**APPOINTMENT, "appointmentDateTime": "2026-03-10 10:00"}
    del params["location"]
    events = cli_json(APPOINTMENT_FULL, params, "2026-03-01 10:00")
    assert timeline(events) == [
        ("2026-03-01T16:00:00Z", 5, "branch"),
        ("2026-03-01T16:00:00Z", 10, "sms_queued"),
        ("2026-03-01T16:00:00Z", 12, "branch"),
        ("2026-03-01T16:00:00Z", 15, "email_skipped"),
        ("2026-03-01T16:00:00Z", 20, "wait"),
        ("2026-03-03T15:00:00Z", 30, "sms_queued"),  # 09:00 CST
        ("2026-03-03T15:00:00Z", 40, "wait"),
        ("2026-03-08T14:00:00Z", 45, "branch"),  # 09:00 CDT, hours after the clocks moved
        ("2026-03-08T14:00:00Z", 50, "sms_queued"),
        ("2026-03-08T14:00:00Z", 60, "waiting_for_reply"),
        ("2026-03-09T14:00:00Z", 60, "reply_timeout"),
        ("2026-03-09T14:00:00Z", 120, "wait"),
        ("2026-03-10T13:00:00Z", 130, "sms_queued"),  # 08:00 CDT
        ("2026-03-10T13:00:00Z", 140, "wait"),
        ("2026-03-10T17:00:00Z", 150, "branch"),  # 12:00 CDT
        ("2026-03-10T17:00:00Z", 170, "sms_queued"),
        ("2026-03-10T17:00:00Z", 180, "waiting_for_reply"),
        ("2026-03-12T17:00:00Z", 180, "reply_timeout"),
        ("2026-03-12T17:00:00Z", 190, "end"),
    ]
    assert detail(events, 15, "email_skipped") == {"reason": "parameter email is empty"}
    assert detail(events, 60, "reply_timeout") == {"outcome": "no_reply"}
    locals_ = {(e["stepId"], e["type"]): e["localTime"] for e in events}
    assert locals_[(30, "sms_queued")] == "2026-03-03T09:00:00-06:00"
    assert locals_[(50, "sms_queued")] == "2026-03-08T09:00:00-05:00"
    assert locals_[(130, "sms_queued")] == "2026-03-10T08:00:00-05:00"
    assert bodies(events) == [
        "Hi Ana, your appointment is booked for Tuesday, March 10 at 10:00 AM. To change it, call us at "
        "(312) 555-0199.",
        "Reminder: Ana, your appointment is on Tuesday, March 10 at 10:00 AM.",
        "Hi Ana, please confirm your appointment on Tuesday, March 10 at 10:00 AM: reply C to confirm or "
        "R to reschedule.",
        "See you today at 10:00 AM, Ana!",
        "We missed you at your appointment on Tuesday, March 10, Ana. Reply R to find a new time, or call "
        "us at (312) 555-0199.",
    ]


@pytest.mark.same_on_every_database
def test_text_output_shows_local_and_utc_times_and_the_rendered_messages() -> None:
    params = {**APPOINTMENT, "appointmentDateTime": "2026-03-10 10:00"}
    result = cli(
        str(APPOINTMENT_FULL), "--params", json.dumps(params), "--tz", TZ, "--start", "2026-03-01 10:00"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "Sun 2026-03-01 10:00 CST (2026-03-01T16:00:00Z)  main/5           branch             "
        "case=else next=10"
    )
    assert lines[1] == "Sun 2026-03-01 10:00 CST (2026-03-01T16:00:00Z)  main/10          sms_queued"
    assert lines[2] == (
        "        -> sms to +13125550100: Hi Ana, your appointment is booked for Tuesday, March 10 at "
        "10:00 AM at Lakeview Clinic, 2nd floor. To change it, call us at (312) 555-0199."
    )
    assert (
        "Sun 2026-03-08 09:00 CDT (2026-03-08T14:00:00Z)  main/60          waiting_for_reply  "
        "until=2026-03-09T14:00:00Z"
    ) in lines
    assert "Tue 2026-03-10 08:00 CDT (2026-03-10T13:00:00Z)  main/130         sms_queued" in lines
    assert (
        lines[-1] == "Thu 2026-03-12 12:00 CDT (2026-03-12T17:00:00Z)  main/190         end                "
        "outcome=no-show"
    )
    assert "messageId" not in result.stdout


@pytest.mark.same_on_every_database
def test_booking_at_night_is_held_to_the_send_window_opening() -> None:
    """Booked at 22:00: the confirmation waits for 08:00 (the appointment is still ahead then:
    step 12 goes on); the 7-day reminder's time has passed (skipped); the patient confirms
    with "yes"."""
    events = run(APPOINTMENT_FULL, APPOINTMENT, "2026-10-30 22:00", replies={60: [Reply("yes")]})
    assert timeline(events) == [
        ("2026-10-31T03:00:00Z", 5, "branch"),
        ("2026-10-31T03:00:00Z", 10, "send_held"),
        ("2026-10-31T13:00:00Z", 10, "sms_queued"),  # 08:00 CDT
        ("2026-10-31T13:00:00Z", 12, "branch"),
        ("2026-10-31T13:00:00Z", 15, "email_skipped"),
        ("2026-10-31T13:00:00Z", 20, "wait_skipped"),
        ("2026-10-31T13:00:00Z", 30, "sms_skipped"),
        ("2026-10-31T13:00:00Z", 40, "wait"),
        ("2026-11-01T15:00:00Z", 45, "branch"),
        ("2026-11-01T15:00:00Z", 50, "sms_queued"),
        ("2026-11-01T15:00:00Z", 60, "waiting_for_reply"),
        ("2026-11-01T15:05:00Z", 60, "reply_received"),
        ("2026-11-01T15:05:00Z", 70, "sms_queued"),
        ("2026-11-01T15:05:00Z", 120, "wait"),
        ("2026-11-03T14:00:00Z", 130, "sms_queued"),
        ("2026-11-03T14:00:00Z", 140, "wait"),
        ("2026-11-03T18:00:00Z", 150, "branch"),
        ("2026-11-03T18:00:00Z", 170, "sms_queued"),
        ("2026-11-03T18:00:00Z", 180, "waiting_for_reply"),
        ("2026-11-05T18:00:00Z", 180, "reply_timeout"),
        ("2026-11-05T18:00:00Z", 190, "end"),
    ]
    assert events[0]["localTime"] == "2026-10-30T22:00:00-05:00"
    assert detail(events, 10, "send_held") == {
        "until": "2026-10-31T13:00:00Z",
        "reason": "outside the send window",
    }
    assert detail(events, 12, "branch") == {"case": "else", "next": 15}
    assert detail(events, 20, "wait_skipped") == {"until": "2026-10-27T14:00:00Z", "policy": "skip"}
    assert detail(events, 30, "sms_skipped") == {"reason": "its time had passed (wait_until policy skip)"}
    assert detail(events, 60, "reply_received") == {"outcome": "confirmed"}
    assert bodies(events) == [CONFIRMATION_NOV3, QUESTION_NOV3, FULL_THANKS, DAY_OF_10AM, NO_SHOW]


@pytest.mark.same_on_every_database
@pytest.mark.parametrize("text", ["C", "yes", " Confirm. ", "y", "CONFIRMED!"])
def test_confirming_replies(text: str) -> None:
    events = run(APPOINTMENT_FULL, APPOINTMENT, "2026-10-20 10:00", replies={60: [Reply(text)]})
    assert detail(events, 60, "reply_received") == {"outcome": "confirmed"}
    after = [(e["stepId"], e["type"]) for e in events if e["time"] >= "2026-11-01T15:05:00Z"]
    assert after[:3] == [(60, "reply_received"), (70, "sms_queued"), (120, "wait")]
    assert [e["body"] for e in events if e["stepId"] == 70] == [FULL_THANKS]


@pytest.mark.same_on_every_database
def test_attended_patient_gets_no_no_show_text() -> None:
    """checkedIn is normally set by the checked-in subflow; given here, the 2-hours-after branch
    ends the journey as attended."""
    events = run(
        APPOINTMENT_FULL,
        {**APPOINTMENT, "checkedIn": "yes"},
        "2026-10-20 10:00",
        replies={60: [Reply("C", timedelta(hours=3))]},
    )
    assert timeline(events)[-6:] == [
        ("2026-11-01T18:00:00Z", 70, "sms_queued"),
        ("2026-11-01T18:00:00Z", 120, "wait"),
        ("2026-11-03T14:00:00Z", 130, "sms_queued"),
        ("2026-11-03T14:00:00Z", 140, "wait"),
        ("2026-11-03T18:00:00Z", 150, "branch"),
        ("2026-11-03T18:00:00Z", 160, "end"),
    ]
    assert detail(events, 60, "reply_received") == {"outcome": "confirmed"}
    assert detail(events, 150, "branch") == {"case": 0, "next": 160}
    assert detail(events, 160, "end") == {"outcome": "attended"}
    assert NO_SHOW not in bodies(events)


@pytest.mark.same_on_every_database
def test_reschedule_reply_calls_the_scheduling_webhook() -> None:
    """R: the scheduling system is told first (step 100), and only once it has the request does
    the patient hear that the team will call (step 110). The text used to go first and say so
    whether or not the request got through."""
    events = run(
        APPOINTMENT_FULL,
        APPOINTMENT,
        "2026-10-20 10:00",
        replies={60: [Reply("R")]},
        http={100: {"status": 201, "json": {"requestId": "rq-1"}}},
    )
    assert timeline(events)[-5:] == [
        ("2026-11-01T15:00:00Z", 60, "waiting_for_reply"),
        ("2026-11-01T15:05:00Z", 60, "reply_received"),
        ("2026-11-01T15:05:00Z", 100, "http_request"),
        ("2026-11-01T15:05:00Z", 110, "sms_queued"),
        ("2026-11-01T15:05:00Z", 112, "end"),
    ]
    assert detail(events, 60, "reply_received") == {"outcome": "reschedule"}
    assert detail(events, 100, "http_request") == {"status": 201, "ok": True, "saved": []}
    assert detail(events, 112, "end") == {"outcome": "reschedule-requested"}
    assert bodies(events)[-1] == CALL_YOU_NOV3
    assert CALL_US_NOV3 not in bodies(events)


@pytest.mark.same_on_every_database
def test_reschedule_reply_when_the_webhook_fails_by_cli() -> None:
    """The scheduling system is down: nobody will call, so the patient is not told anyone will
    (no CALL_YOU_NOV3 text), only asked to call the clinic."""
    events = cli_json(
        APPOINTMENT_FULL, APPOINTMENT, "2026-10-20 10:00", "--reply", "60=reschedule", "--http", "100=500"
    )
    assert timeline(events)[-5:] == [
        ("2026-11-01T15:00:00Z", 60, "waiting_for_reply"),
        ("2026-11-01T15:05:00Z", 60, "reply_received"),
        ("2026-11-01T15:05:00Z", 100, "http_failed"),
        ("2026-11-01T15:05:00Z", 115, "sms_queued"),
        ("2026-11-01T15:05:00Z", 112, "end"),
    ]
    assert detail(events, 60, "reply_received") == {"outcome": "reschedule"}
    assert detail(events, 100, "http_failed") == {"status": 500, "ok": False, "error": "HTTP 500"}
    assert detail(events, 112, "end") == {"outcome": "reschedule-requested"}
    assert sends(events)[-1:] == [("2026-11-01T15:05:00Z", 115, "sms", PHONE_E164, CALL_US_NOV3)]
    assert CALL_YOU_NOV3 not in bodies(events)


@pytest.mark.same_on_every_database
def test_unknown_reply_gets_a_sorry_and_another_chance() -> None:
    """'maybe' is no keyword: 'other' sends the sorry text and waits again (a fresh 24 hours);
    the second reply confirms."""
    replies = {60: [Reply("maybe"), Reply("c", timedelta(hours=1))]}
    events = run(APPOINTMENT_FULL, APPOINTMENT, "2026-10-20 10:00", replies=replies)
    assert timeline(events)[7:16] == [
        ("2026-11-01T15:00:00Z", 45, "branch"),
        ("2026-11-01T15:00:00Z", 50, "sms_queued"),
        ("2026-11-01T15:00:00Z", 60, "waiting_for_reply"),
        ("2026-11-01T15:05:00Z", 60, "reply_received"),
        ("2026-11-01T15:05:00Z", 90, "sms_queued"),
        ("2026-11-01T15:05:00Z", 60, "waiting_for_reply"),
        ("2026-11-01T16:05:00Z", 60, "reply_received"),
        ("2026-11-01T16:05:00Z", 70, "sms_queued"),
        ("2026-11-01T16:05:00Z", 120, "wait"),
    ]
    outcomes = [e["detail"]["outcome"] for e in events if e["type"] == "reply_received"]
    assert outcomes == ["other", "confirmed"]
    waits = [e["detail"]["until"] for e in events if e["type"] == "waiting_for_reply" and e["stepId"] == 60]
    assert waits == ["2026-11-02T15:00:00Z", "2026-11-02T15:05:00Z"]
    assert bodies(events)[2:5] == [QUESTION_NOV3, SORRY, FULL_THANKS]


@pytest.mark.same_on_every_database
def test_unknown_reply_then_silence_times_out_to_the_day_of_reminder() -> None:
    events = run(APPOINTMENT_FULL, APPOINTMENT, "2026-10-20 10:00", replies={60: [Reply("what is this?")]})
    assert timeline(events)[10:15] == [
        ("2026-11-01T15:05:00Z", 60, "reply_received"),
        ("2026-11-01T15:05:00Z", 90, "sms_queued"),
        ("2026-11-01T15:05:00Z", 60, "waiting_for_reply"),
        ("2026-11-02T15:05:00Z", 60, "reply_timeout"),
        ("2026-11-02T15:05:00Z", 120, "wait"),
    ]
    assert detail(events, 60, "reply_received") == {"outcome": "other"}


@pytest.mark.same_on_every_database
def test_no_show_patient_asks_to_rebook() -> None:
    replies = {180: [Reply("R", timedelta(hours=1))]}
    events = run(APPOINTMENT_FULL, APPOINTMENT, "2026-10-20 10:00", replies=replies)
    assert timeline(events)[-7:] == [
        ("2026-11-03T18:00:00Z", 150, "branch"),
        ("2026-11-03T18:00:00Z", 170, "sms_queued"),
        ("2026-11-03T18:00:00Z", 180, "waiting_for_reply"),
        ("2026-11-03T19:00:00Z", 180, "reply_received"),
        ("2026-11-03T19:00:00Z", 100, "http_request"),
        ("2026-11-03T19:00:00Z", 110, "sms_queued"),
        ("2026-11-03T19:00:00Z", 112, "end"),
    ]
    assert detail(events, 180, "reply_received") == {"outcome": "reschedule"}
    assert detail(events, 180, "waiting_for_reply") == {"until": "2026-11-05T18:00:00Z"}
    assert bodies(events)[-2:] == [NO_SHOW, CALL_YOU_NOV3]


@pytest.mark.same_on_every_database
def test_appointment_in_three_hours_gets_no_reminders_meant_for_earlier() -> None:
    """Booked at 10:00 for 13:00 the same day: no 7-day reminder, no question (not asked less
    than a day ahead), no "see you today" (08:00 has passed) — and the confirmation, which
    used to say "We'll text you reminders before your visit", promises none."""
    params = {**APPOINTMENT, "appointmentDateTime": "2026-11-02 13:00"}
    events = run(APPOINTMENT_FULL, params, "2026-11-02 10:00")
    assert timeline(events) == [
        ("2026-11-02T16:00:00Z", 5, "branch"),
        ("2026-11-02T16:00:00Z", 10, "sms_queued"),
        ("2026-11-02T16:00:00Z", 12, "branch"),
        ("2026-11-02T16:00:00Z", 15, "email_skipped"),
        ("2026-11-02T16:00:00Z", 20, "wait_skipped"),
        ("2026-11-02T16:00:00Z", 30, "sms_skipped"),
        ("2026-11-02T16:00:00Z", 40, "wait_skipped"),
        ("2026-11-02T16:00:00Z", 45, "branch"),
        ("2026-11-02T16:00:00Z", 120, "wait_skipped"),
        ("2026-11-02T16:00:00Z", 130, "sms_skipped"),
        ("2026-11-02T16:00:00Z", 140, "wait"),
        ("2026-11-02T21:00:00Z", 150, "branch"),
        ("2026-11-02T21:00:00Z", 170, "sms_queued"),
        ("2026-11-02T21:00:00Z", 180, "waiting_for_reply"),
        ("2026-11-04T21:00:00Z", 180, "reply_timeout"),
        ("2026-11-04T21:00:00Z", 190, "end"),
    ]
    assert detail(events, 20, "wait_skipped") == {"until": "2026-10-26T14:00:00Z", "policy": "skip"}
    assert detail(events, 30, "sms_skipped") == {"reason": "its time had passed (wait_until policy skip)"}
    assert detail(events, 40, "wait_skipped") == {"until": "2026-10-31T14:00:00Z", "policy": "run_now"}
    assert detail(events, 45, "branch") == {"case": 0, "next": 120}
    assert detail(events, 120, "wait_skipped") == {"until": "2026-11-02T14:00:00Z", "policy": "skip"}
    assert detail(events, 130, "sms_skipped") == {"reason": "its time had passed (wait_until policy skip)"}
    assert detail(events, 140, "wait") == {"until": "2026-11-02T21:00:00Z"}
    assert bodies(events) == [
        "Hi Ana, your appointment is booked for Monday, November 2 at 1:00 PM at Lakeview Clinic, 2nd "
        "floor. To change it, call us at (312) 555-0199.",
        "We missed you at your appointment on Monday, November 2, Ana. Reply R to find a new time, or "
        "call us at (312) 555-0199.",
    ]
    assert not any("remind" in b.lower() for b in bodies(events))


@pytest.mark.same_on_every_database
def test_booked_after_the_two_day_mark_is_asked_at_once() -> None:
    """Booked Sunday 11:00 for Tuesday 10:00 (47 hours ahead): 09:00 two days before has just
    passed, but the appointment is more than a day away, so the question goes at once."""
    events = run(APPOINTMENT_FULL, APPOINTMENT, "2026-11-01 11:00", replies={60: [Reply("C")]})
    assert timeline(events)[:11] == [
        ("2026-11-01T17:00:00Z", 5, "branch"),
        ("2026-11-01T17:00:00Z", 10, "sms_queued"),
        ("2026-11-01T17:00:00Z", 12, "branch"),
        ("2026-11-01T17:00:00Z", 15, "email_skipped"),
        ("2026-11-01T17:00:00Z", 20, "wait_skipped"),
        ("2026-11-01T17:00:00Z", 30, "sms_skipped"),
        ("2026-11-01T17:00:00Z", 40, "wait_skipped"),
        ("2026-11-01T17:00:00Z", 45, "branch"),
        ("2026-11-01T17:00:00Z", 50, "sms_queued"),
        ("2026-11-01T17:00:00Z", 60, "waiting_for_reply"),
        ("2026-11-01T17:05:00Z", 60, "reply_received"),
    ]
    assert detail(events, 40, "wait_skipped") == {"until": "2026-11-01T15:00:00Z", "policy": "run_now"}
    assert detail(events, 45, "branch") == {"case": "else", "next": 50}
    assert bodies(events)[:3] == [CONFIRMATION_NOV3, QUESTION_NOV3, FULL_THANKS]


@pytest.mark.same_on_every_database
def test_booked_the_day_before_is_asked_without_a_false_in_2_days() -> None:
    """Booked Monday 10:00 for Tuesday 20:00 (34 hours ahead): the question goes at once. It used
    to say "your appointment is in 2 days" (it is tomorrow); it names the day instead. The
    24-hour wait for a reply ends after 08:00 on the day, so the day-of reminder is skipped;
    the no-show text 2 hours after 20:00 is held until 08:00 and names the day, not "today"."""
    params = {**APPOINTMENT, "appointmentDateTime": "2026-11-03 20:00"}
    events = run(APPOINTMENT_FULL, params, "2026-11-02 10:00")
    assert timeline(events)[7:] == [
        ("2026-11-02T16:00:00Z", 45, "branch"),
        ("2026-11-02T16:00:00Z", 50, "sms_queued"),
        ("2026-11-02T16:00:00Z", 60, "waiting_for_reply"),
        ("2026-11-03T16:00:00Z", 60, "reply_timeout"),
        ("2026-11-03T16:00:00Z", 120, "wait_skipped"),
        ("2026-11-03T16:00:00Z", 130, "sms_skipped"),
        ("2026-11-03T16:00:00Z", 140, "wait"),
        ("2026-11-04T04:00:00Z", 150, "branch"),
        ("2026-11-04T04:00:00Z", 170, "send_held"),
        ("2026-11-04T14:00:00Z", 170, "sms_queued"),  # Wednesday 08:00
        ("2026-11-04T14:00:00Z", 180, "waiting_for_reply"),
        ("2026-11-06T14:00:00Z", 180, "reply_timeout"),
        ("2026-11-06T14:00:00Z", 190, "end"),
    ]
    assert bodies(events)[1:] == [
        "Hi Ana, please confirm your appointment on Tuesday, November 3 at 8:00 PM: reply C to confirm or "
        "R to reschedule.",
        "We missed you at your appointment on Tuesday, November 3, Ana. Reply R to find a new time, or "
        "call us at (312) 555-0199.",
    ]
    assert not any("in 2 days" in b or "today" in b for b in bodies(events))


@pytest.mark.same_on_every_database
def test_full_appointment_already_past_sends_nothing_and_says_why_by_cli() -> None:
    """An appointment already past (the MedChat seed's own example date) used to get a booking
    confirmation, then a "we missed you" text. Now nothing is sent: the instance ends with
    outcome appointment-passed."""
    params = {**APPOINTMENT, "appointmentDateTime": "2023-12-01 08:00:00", "email": "ana@example.org"}
    events = cli_json(APPOINTMENT_FULL, params, "2026-10-20 10:00")
    assert timeline(events) == [
        ("2026-10-20T15:00:00Z", 5, "branch"),
        ("2026-10-20T15:00:00Z", 195, "end"),
    ]
    assert detail(events, 5, "branch") == {"case": 0, "next": 195}
    assert detail(events, 195, "end") == {"outcome": "appointment-passed"}
    assert bodies(events) == []


@pytest.mark.same_on_every_database
def test_full_booked_at_night_for_an_early_appointment_is_not_texted_after_it() -> None:
    """Booked at 22:00 for 07:30 the next morning: the confirmation held for the send window
    would go at 08:00, after the appointment, and the journey went on to a "we missed you"
    text. send_before skips the confirmation and step 12 ends the instance."""
    params = {**APPOINTMENT, "appointmentDateTime": "2026-11-03 07:30", "email": "ana@example.org"}
    events = run(APPOINTMENT_FULL, params, "2026-11-02 22:00")
    assert timeline(events) == [
        ("2026-11-03T04:00:00Z", 5, "branch"),
        ("2026-11-03T04:00:00Z", 10, "send_held"),
        ("2026-11-03T14:00:00Z", 10, "sms_skipped"),
        ("2026-11-03T14:00:00Z", 12, "branch"),
        ("2026-11-03T14:00:00Z", 195, "end"),
    ]
    assert detail(events, 10, "sms_skipped") == {"reason": "appointmentDateTime has passed"}
    assert detail(events, 12, "branch") == {"case": 0, "next": 195}
    assert detail(events, 195, "end") == {"outcome": "appointment-passed"}
    assert bodies(events) == []


@pytest.mark.same_on_every_database
def test_full_confirmation_held_until_the_appointment_time_itself_sends_nothing() -> None:
    """Booked at 23:00 for 08:00: the confirmation is held until 08:00, the appointment's own
    minute. send_before skips it; "already past?" must count "now" as past, or the email and
    the rest of the journey would go on for an appointment that has begun."""
    params = {**APPOINTMENT, "appointmentDateTime": "2026-11-03 08:00", "email": "ana@example.org"}
    events = run(APPOINTMENT_FULL, params, "2026-11-02 23:00")
    assert timeline(events) == [
        ("2026-11-03T05:00:00Z", 5, "branch"),
        ("2026-11-03T05:00:00Z", 10, "send_held"),
        ("2026-11-03T14:00:00Z", 10, "sms_skipped"),
        ("2026-11-03T14:00:00Z", 12, "branch"),
        ("2026-11-03T14:00:00Z", 195, "end"),
    ]
    assert detail(events, 195, "end") == {"outcome": "appointment-passed"}
    assert bodies(events) == []


@pytest.mark.same_on_every_database
def test_early_appointment_gets_no_day_of_reminder_after_it() -> None:
    """An appointment at 07:00: "see you today" would go at 08:00, after it; send_before skips
    it (the wait_until at 08:00 used to let it through)."""
    params = {**APPOINTMENT, "appointmentDateTime": "2026-11-03 07:00"}
    events = run(APPOINTMENT_FULL, params, "2026-10-20 10:00", replies={60: [Reply("C")]})
    assert [t for t in timeline(events) if t[1] in (120, 130, 140)] == [
        ("2026-11-01T15:05:00Z", 120, "wait"),
        ("2026-11-03T14:00:00Z", 130, "sms_skipped"),
        ("2026-11-03T14:00:00Z", 140, "wait"),
    ]
    assert detail(events, 130, "sms_skipped") == {"reason": "appointmentDateTime has passed"}
    assert not any(b.startswith("See you today") for b in bodies(events))


def with_cap(path: Path, cap: str) -> JourneyDefinition:
    """The example with a frequency cap of its own, e.g. `{per_7_days: 2}`."""
    name = f"name: {load_definition_file(path).name}\n"
    text = path.read_text()
    assert name in text and "\nfrequency_cap:" not in text
    return load_definition_text(text.replace(name, f"{name}frequency_cap: {cap}\n", 1))


@pytest.mark.same_on_every_database
def test_a_capped_day_of_reminder_is_not_deferred_past_the_appointment() -> None:
    """With 2 texts in 7 days, the day-of reminder is the week's third: the cap would defer it
    to the next morning, after the appointment ("see you today" on the wrong day), so it is
    dropped (sms_capped, with why)."""
    defn = with_cap(APPOINTMENT_FULL, "{per_7_days: 2}")
    events = run(APPOINTMENT_FULL, APPOINTMENT, "2026-10-20 10:00", definition=defn)
    assert [t for t in timeline(events) if t[1] in (120, 130, 140)] == [
        ("2026-11-02T15:00:00Z", 120, "wait"),
        ("2026-11-03T14:00:00Z", 130, "sms_capped"),
        ("2026-11-03T14:00:00Z", 140, "wait"),
    ]
    assert detail(events, 130, "sms_capped") == {
        "limit": "2 per 7 days",
        "reason": "no day the cap allows before appointmentDateTime",
    }
    assert DAY_OF_10AM not in bodies(events)


@pytest.mark.same_on_every_database
def test_a_question_deferred_by_the_cap_still_tells_the_truth() -> None:
    """Booked Sunday 08:30 for Tuesday 10:00 with another capped text that morning (here the
    confirmation made capped, standing in for another journey's text to the same number): the
    question at 09:00 is deferred to 08:00 on Monday. Sent then, "in 2 days" would have been
    false; it names the day."""
    text = APPOINTMENT_FULL.read_text()
    transactional = "        frequency_cap: false  # transactional: confirms what the patient just booked\n"
    assert transactional in text
    defn = load_definition_text(text.replace(transactional, "", 1))
    replies = {60: [Reply("C")]}
    events = run(APPOINTMENT_FULL, APPOINTMENT, "2026-11-01 08:30", replies=replies, definition=defn)
    assert [t for t in timeline(events) if t[1] in (40, 45, 50, 60)][:5] == [
        ("2026-11-01T14:30:00Z", 40, "wait"),
        ("2026-11-01T15:00:00Z", 45, "branch"),
        ("2026-11-01T15:00:00Z", 50, "sms_deferred"),
        ("2026-11-02T14:00:00Z", 50, "sms_queued"),  # Monday 08:00 CST
        ("2026-11-02T14:00:00Z", 60, "waiting_for_reply"),
    ]
    assert detail(events, 50, "sms_deferred") == {"until": "2026-11-02T14:00:00Z", "limit": "1 per day"}
    assert [e["body"] for e in events if e["stepId"] == 50 and e["type"] == "sms_queued"] == [QUESTION_NOV3]


@pytest.mark.same_on_every_database
def test_transactional_sends_do_not_use_up_the_cap() -> None:
    """The confirmation, thank-you and sorry texts are `frequency_cap: false` ("count against
    and obey the journey's frequency cap (false: transactional)"): the 7-day reminder, the
    2-day question and the day-of reminder are the three capped texts of the week, so the
    day-of reminder goes out even after a "sorry" and a thank-you."""
    replies = {60: [Reply("?"), Reply("C")]}
    events = run(APPOINTMENT_FULL, APPOINTMENT, "2026-10-20 10:00", replies=replies)
    assert [e["type"] for e in events if e["stepId"] == 130] == ["sms_queued"]
    assert [e for e in events if e["type"] in ("sms_capped", "sms_deferred")] == []


@pytest.mark.same_on_every_database
def test_booking_confirmation_does_not_use_up_the_days_text() -> None:
    """Booked a week ahead at 08:30: the confirmation is transactional, so the 7-day reminder at
    09:00 the same day is still the day's first capped text and goes out."""
    events = run(APPOINTMENT_FULL, APPOINTMENT, "2026-10-27 08:30")
    assert timeline(events)[:7] == [
        ("2026-10-27T13:30:00Z", 5, "branch"),
        ("2026-10-27T13:30:00Z", 10, "sms_queued"),
        ("2026-10-27T13:30:00Z", 12, "branch"),
        ("2026-10-27T13:30:00Z", 15, "email_skipped"),
        ("2026-10-27T13:30:00Z", 20, "wait"),
        ("2026-10-27T14:00:00Z", 30, "sms_queued"),
        ("2026-10-27T14:00:00Z", 40, "wait"),
    ]
    assert bodies(events)[:2] == [CONFIRMATION_NOV3, WEEK_NOV3]
    assert not any(e["type"] in ("sms_capped", "sms_deferred") for e in events)


# ============================================================================ appointment-reminder
REMINDER_PARAMS = {
    "patientId": "100000",
    "patientName": "John Smith",
    "appointmentId": "40-XYZ-11123",
    "appointmentDateTime": "2026-11-01 14:00",  # Sun, the fall-back day
    "phoneNumber": "312-555-0100",
}


BOOKED = (
    "Hi John Smith, your appointment is booked for Sunday, November 1 at 2:00 PM. "
    "Reply C to confirm or R to reschedule."
)
REMINDER = "Reminder: John Smith, your appointment is on Sunday, November 1 at 2:00 PM."
REMINDER_THANKS = "Thank you, John Smith: your appointment is confirmed."
REMINDER_CALL_YOU = "Thanks, John Smith. Our scheduling team will call you to find a new time."


@pytest.mark.same_on_every_database
def test_reminder_confirmed_then_reminded_the_day_before_across_the_fall_back_by_cli() -> None:
    """Booked on Wednesday: the text asks for C or R; C is thanked; the reminder goes at 10:00
    on the local calendar day before (CDT), though the appointment (Sunday 14:00) is after the
    fall-back to CST."""
    events = cli_json(APPOINTMENT_REMINDER, REMINDER_PARAMS, "2026-10-28 10:00", "--reply", "15=C@5m")
    assert timeline(events) == [
        ("2026-10-28T15:00:00Z", 5, "branch"),
        ("2026-10-28T15:00:00Z", 10, "sms_queued"),
        ("2026-10-28T15:00:00Z", 12, "branch"),
        ("2026-10-28T15:00:00Z", 15, "waiting_for_reply"),
        ("2026-10-28T15:05:00Z", 15, "reply_received"),
        ("2026-10-28T15:05:00Z", 16, "sms_queued"),
        ("2026-10-28T15:05:00Z", 20, "wait"),
        ("2026-10-31T15:00:00Z", 30, "sms_queued"),
        ("2026-10-31T15:00:00Z", 40, "wait"),
        ("2026-11-01T22:00:00Z", 50, "end"),
    ]
    assert events[7]["localTime"] == "2026-10-31T10:00:00-05:00"
    assert events[9]["localTime"] == "2026-11-01T16:00:00-06:00"
    assert detail(events, 15, "reply_received") == {"outcome": "confirmed"}
    assert detail(events, 50, "end") == {"outcome": "visit-time-passed"}
    assert sends(events) == [
        ("2026-10-28T15:00:00Z", 10, "sms", PHONE_E164, BOOKED),
        ("2026-10-28T15:05:00Z", 16, "sms", PHONE_E164, REMINDER_THANKS),
        ("2026-10-31T15:00:00Z", 30, "sms", PHONE_E164, REMINDER),
    ]


@pytest.mark.same_on_every_database
def test_reminder_across_the_spring_forward_without_a_reply() -> None:
    params = {**REMINDER_PARAMS, "appointmentDateTime": "2026-03-09 09:00"}  # Mon, CDT
    events = run(APPOINTMENT_REMINDER, params, "2026-03-02 12:00")
    assert timeline(events)[3:] == [
        ("2026-03-02T18:00:00Z", 15, "waiting_for_reply"),
        ("2026-03-03T06:00:00Z", 15, "reply_timeout"),  # 12 hours without a reply
        ("2026-03-03T06:00:00Z", 20, "wait"),
        ("2026-03-08T15:00:00Z", 30, "sms_queued"),  # 10:00 CDT, the first day of DST
        ("2026-03-08T15:00:00Z", 40, "wait"),
        ("2026-03-09T16:00:00Z", 50, "end"),
    ]


@pytest.mark.same_on_every_database
def test_reminder_reply_r_asks_for_a_call_and_ends() -> None:
    replies = {15: [Reply("R", timedelta(minutes=5))]}
    events = run(APPOINTMENT_REMINDER, REMINDER_PARAMS, "2026-10-28 10:00", replies=replies)
    assert timeline(events)[4:] == [
        ("2026-10-28T15:05:00Z", 15, "reply_received"),
        ("2026-10-28T15:05:00Z", 18, "sms_queued"),
        ("2026-10-28T15:05:00Z", 19, "end"),
    ]
    assert detail(events, 19, "end") == {"outcome": "reschedule-requested"}
    assert bodies(events) == [BOOKED, REMINDER_CALL_YOU]


@pytest.mark.same_on_every_database
def test_reminder_an_unclear_reply_is_asked_again() -> None:
    replies = {15: [Reply("maybe", timedelta(minutes=5)), Reply("yes", timedelta(minutes=10))]}
    events = run(APPOINTMENT_REMINDER, REMINDER_PARAMS, "2026-10-28 10:00", replies=replies)
    assert [(s, k) for _, s, k in timeline(events)][4:9] == [
        (15, "reply_received"),
        (17, "sms_queued"),
        (15, "waiting_for_reply"),
        (15, "reply_received"),
        (16, "sms_queued"),
    ]
    assert bodies(events)[1] == "Sorry, we didn't understand. Please reply C to confirm or R to reschedule."


@pytest.mark.same_on_every_database
def test_reminder_without_a_phone_records_why_nothing_was_sent() -> None:
    params = {k: v for k, v in REMINDER_PARAMS.items() if k != "phoneNumber"}
    events = run(APPOINTMENT_REMINDER, params, "2026-10-28 10:00")
    assert [(e["stepId"], e["type"]) for e in events] == [
        (5, "branch"),
        (10, "sms_skipped"),
        (12, "branch"),
        (15, "reply_skipped"),
        (20, "wait"),
        (30, "sms_skipped"),
        (40, "wait"),
        (50, "end"),
    ]
    assert detail(events, 10, "sms_skipped") == {"reason": "parameter phoneNumber is empty"}


@pytest.mark.same_on_every_database
def test_reminder_booked_three_hours_ahead_promises_nothing_it_skips() -> None:
    """Booked at 10:00 for 13:00: the day-before reminder's time has passed, so it is skipped —
    and no text had promised it."""
    params = {**REMINDER_PARAMS, "appointmentDateTime": "2026-11-02 13:00"}
    events = run(APPOINTMENT_REMINDER, params, "2026-11-02 10:00")
    assert timeline(events)[-5:] == [
        ("2026-11-03T04:00:00Z", 15, "reply_timeout"),
        ("2026-11-03T04:00:00Z", 20, "wait_skipped"),
        ("2026-11-03T04:00:00Z", 30, "sms_skipped"),
        ("2026-11-03T04:00:00Z", 40, "wait_skipped"),
        ("2026-11-03T04:00:00Z", 50, "end"),
    ]
    assert detail(events, 20, "wait_skipped") == {"until": "2026-11-01T16:00:00Z", "policy": "skip"}
    assert bodies(events) == [
        "Hi John Smith, your appointment is booked for Monday, November 2 at 1:00 PM. "
        "Reply C to confirm or R to reschedule."
    ]


def example_texts() -> list[tuple[str, JourneyDefinition, SendSmsStep | SendEmailStep, str]]:
    """Every message template of every example: (file, definition, step, lower-cased text)."""
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        defn = load_definition_file(path)
        for flow in defn.flows:
            for step in flow.steps:
                if isinstance(step, SendSmsStep):
                    found.append((path.name, defn, step, step.body.lower()))
                elif isinstance(step, SendEmailStep):
                    text = " ".join((step.subject, step.body, step.html or "")).lower()
                    found.append((path.name, defn, step, text))
    assert len({name for name, *_ in found}) == 4
    return found


@pytest.mark.same_on_every_database
def test_no_example_text_promises_a_reminder() -> None:
    """The examples promise only what they will do: no text says "we'll remind you" or "we'll
    text you reminders", since a reminder is skipped when it is booked too late for it, and
    any capped text may be deferred or dropped by the frequency cap (which counts every
    journey's texts to the number)."""
    promises = ("we'll remind", "we will remind", "remind you", "text you reminders", "send you a reminder")
    for name, _, step, text in example_texts():
        assert not any(p in text for p in promises), (name, step.id)
    for path in EXAMPLES.glob("*.yaml"):
        text = path.read_text().lower()
        assert "we'll remind" not in text and "we will remind" not in text, path.name


@pytest.mark.same_on_every_database
def test_no_example_text_counts_the_days_to_the_appointment() -> None:
    """"In 2 days" or "in one week" is false once the text is sent late (booked late, held by
    the send window, deferred by the cap): the texts name the date instead."""
    counting = ("in 2 days", "in two days", "in one week", "in a week", "in 7 days", "next week")
    for name, _, step, text in example_texts():
        assert not any(c in text for c in counting), (name, step.id)


@pytest.mark.same_on_every_database
def test_example_texts_about_a_day_cannot_go_out_on_another() -> None:
    """A text that says "today" may not be sent at or after the appointment (send_before), so
    it is never deferred to the next day; one that says "tomorrow" or "tonight" must not be
    deferred at all (not capped, or the journey's cap skips rather than defers)."""
    for name, defn, step, text in example_texts():
        if " today" in text:
            assert step.send_before is not None, (name, step.id)
        if "tomorrow" in text or "tonight" in text:
            cap = defn.frequency_cap
            capped = isinstance(step, SendSmsStep) and step.frequency_cap and cap is not None
            assert not capped or cap.when_capped == "skip", (name, step.id)


@pytest.mark.same_on_every_database
def test_reminder_booked_at_night_is_held_until_eight() -> None:
    events = run(APPOINTMENT_REMINDER, REMINDER_PARAMS, "2026-10-28 22:30")
    assert timeline(events)[:5] == [
        ("2026-10-29T03:30:00Z", 5, "branch"),
        ("2026-10-29T03:30:00Z", 10, "send_held"),
        ("2026-10-29T13:00:00Z", 10, "sms_queued"),
        ("2026-10-29T13:00:00Z", 12, "branch"),
        ("2026-10-29T13:00:00Z", 15, "waiting_for_reply"),
    ]
    assert detail(events, 10, "send_held")["until"] == "2026-10-29T13:00:00Z"


@pytest.mark.same_on_every_database
def test_reminder_booked_at_night_for_an_early_appointment_is_not_texted_after_it() -> None:
    """Booked at 22:00 for 07:30 the next morning: the text held for the send window would go
    at 08:00, after the appointment. send_before skips it, and the instance ends."""
    params = {**REMINDER_PARAMS, "appointmentDateTime": "2026-10-29 07:30"}
    events = run(APPOINTMENT_REMINDER, params, "2026-10-28 22:00")
    assert timeline(events) == [
        ("2026-10-29T03:00:00Z", 5, "branch"),
        ("2026-10-29T03:00:00Z", 10, "send_held"),
        ("2026-10-29T13:00:00Z", 10, "sms_skipped"),
        ("2026-10-29T13:00:00Z", 12, "branch"),
        ("2026-10-29T13:00:00Z", 90, "end"),
    ]
    assert detail(events, 10, "sms_skipped") == {"reason": "appointmentDateTime has passed"}
    assert detail(events, 90, "end") == {"outcome": "appointment-passed"}
    assert bodies(events) == []


@pytest.mark.same_on_every_database
def test_reminder_for_an_appointment_already_past_sends_nothing_and_says_why() -> None:
    """The MedChat seed's own example body (December 2023): nothing is sent."""
    params = {**REMINDER_PARAMS, "appointmentDateTime": "2023-12-01 08:00:00"}
    events = run(APPOINTMENT_REMINDER, params, "2026-10-28 10:00")
    assert timeline(events) == [
        ("2026-10-28T15:00:00Z", 5, "branch"),
        ("2026-10-28T15:00:00Z", 90, "end"),
    ]
    assert detail(events, 90, "end") == {"outcome": "appointment-passed"}
    assert bodies(events) == []


@pytest.mark.same_on_every_database
def test_reminder_held_until_the_appointments_own_minute_ends_the_instance() -> None:
    """Booked at 23:00 for 08:00: the booking text is held until 08:00, the appointment's own
    minute, and skipped (send_before). Step 12 used to test "before now", which an appointment
    at this minute is not: the instance then waited 12 hours for a reply to a text never sent
    and thanked a patient who answered "C" for confirming an appointment already begun."""
    params = {**REMINDER_PARAMS, "appointmentDateTime": "2026-11-03 08:00"}
    events = run(APPOINTMENT_REMINDER, params, "2026-11-02 23:00", replies={15: [Reply("C")]})
    assert timeline(events) == [
        ("2026-11-03T05:00:00Z", 5, "branch"),
        ("2026-11-03T05:00:00Z", 10, "send_held"),
        ("2026-11-03T14:00:00Z", 10, "sms_skipped"),
        ("2026-11-03T14:00:00Z", 12, "branch"),
        ("2026-11-03T14:00:00Z", 90, "end"),
    ]
    assert detail(events, 12, "branch") == {"case": 0, "next": 90}
    assert detail(events, 90, "end") == {"outcome": "appointment-passed"}
    assert bodies(events) == []


@pytest.mark.same_on_every_database
def test_reminder_a_reply_after_the_appointment_is_not_answered_as_if_it_were_ahead() -> None:
    """Booked at 10:00 for 13:00, "C" comes at 14:00 (within the 12 hours): "your appointment
    is confirmed" would speak of one already past, so it is skipped (send_before)."""
    params = {**REMINDER_PARAMS, "appointmentDateTime": "2026-11-02 13:00"}
    replies = {15: [Reply("C", timedelta(hours=4))]}
    events = run(APPOINTMENT_REMINDER, params, "2026-11-02 10:00", replies=replies)
    assert timeline(events)[4:7] == [
        ("2026-11-02T20:00:00Z", 15, "reply_received"),
        ("2026-11-02T20:00:00Z", 16, "sms_skipped"),
        ("2026-11-02T20:00:00Z", 20, "wait_skipped"),
    ]
    assert detail(events, 16, "sms_skipped") == {"reason": "appointmentDateTime has passed"}
    assert bodies(events) == [
        "Hi John Smith, your appointment is booked for Monday, November 2 at 1:00 PM. "
        "Reply C to confirm or R to reschedule."
    ]


# ============================================================================ post-visit survey
SURVEY_PARAMS = {
    "patientId": "p-200",
    "patientName": "Ana",
    "visitId": "v-200",
    "visitDateTime": "2026-11-02 10:30",
    "phoneNumber": PHONE,
    "email": "ana@example.org",
}
# Triggered once the visit has started (a visit still in the future gets no survey): 11:00.
SURVEY_START = "2026-11-02 11:00"
# The visit's date, not just "on Monday": a survey held overnight or triggered days later
# still names the right day.
SURVEY_TEXT = (
    "Hi Ana, thank you for visiting us on Monday, November 2. How likely are you to recommend us to a "
    "friend? Reply 1 (not at all) to 5 (very likely)."
)
REVIEW = (
    "Thanks again, Ana! If you have a minute, a review helps other patients find us: "
    "https://reviews.example.org/lakeview"
)
SURVEY_REMINDER = (
    "Ana, we'd love your feedback on your visit: how likely are you to recommend us? Reply 1 to 5."
)
ADVOCATE_WILL_CALL = (
    "We're sorry your visit wasn't what you expected, Ana. Our patient advocate will call you within "
    "two business days."
)
CALL_THE_ADVOCATE = (
    "We're sorry your visit wasn't what you expected, Ana. Please call our patient advocate at "
    "(312) 555-0142, weekdays 8 AM to 5 PM, so we can put it right."
)


@pytest.mark.same_on_every_database
def test_survey_promoter_by_cli() -> None:
    """Triggered at 11:00 (it was 09:00, before the visit: such a trigger now gets no survey);
    step 5 finds a visit to ask about, and the timeline from 12:30 on is as before."""
    events = cli_json(SURVEY, SURVEY_PARAMS, SURVEY_START, "--reply", "30=5")
    assert timeline(events) == [
        ("2026-11-02T17:00:00Z", 5, "branch"),
        ("2026-11-02T17:00:00Z", 10, "wait"),
        ("2026-11-02T18:30:00Z", 20, "sms_queued"),  # 12:30 CST, 2 hours after the visit
        ("2026-11-02T18:30:00Z", 30, "waiting_for_reply"),
        ("2026-11-02T18:35:00Z", 30, "reply_received"),
        ("2026-11-02T18:35:00Z", 100, "wait"),
        ("2026-11-03T16:00:00Z", 110, "sms_queued"),  # 10:00 CST the next day
        ("2026-11-03T16:00:00Z", 120, "end"),
    ]
    assert detail(events, 5, "branch") == {"case": "else", "next": 10}
    assert detail(events, 30, "waiting_for_reply") == {"until": "2026-11-03T18:30:00Z"}
    assert detail(events, 30, "reply_received") == {"outcome": "promoter"}
    assert detail(events, 120, "end") == {"outcome": "promoter"}
    assert sends(events) == [
        ("2026-11-02T18:30:00Z", 20, "sms", PHONE_E164, SURVEY_TEXT),
        ("2026-11-03T16:00:00Z", 110, "sms", PHONE_E164, REVIEW),
    ]


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    ("text", "outcome"),
    [("5", "promoter"), ("4", "promoter"), (" Five! ", "promoter"), ("3", "passive"), ("three.", "passive")]
    + [("2", "detractor"), ("1", "detractor"), ("ONE", "detractor"), ("10", "other"), ("4 stars", "other")],
)
def test_survey_reply_matching(text: str, outcome: str) -> None:
    events = run(SURVEY, SURVEY_PARAMS, SURVEY_START, replies={30: [Reply(text)]})
    assert detail(events, 30, "reply_received") == {"outcome": outcome}


@pytest.mark.same_on_every_database
def test_survey_passive() -> None:
    events = run(SURVEY, SURVEY_PARAMS, SURVEY_START, replies={30: [Reply(" 3 ", timedelta(hours=2))]})
    assert timeline(events)[4:] == [
        ("2026-11-02T20:30:00Z", 30, "reply_received"),
        ("2026-11-02T20:30:00Z", 200, "sms_queued"),
        ("2026-11-02T20:30:00Z", 210, "end"),
    ]
    assert bodies(events)[-1] == "Thank you for your feedback, Ana. We're always working to do better."
    assert detail(events, 210, "end") == {"outcome": "passive"}


@pytest.mark.same_on_every_database
def test_survey_detractor_gets_an_apology_email_and_the_crm_is_told() -> None:
    """The CRM is alerted first (step 300) and the apology saying the advocate will call goes
    only once it has been (it used to go first, whatever the CRM answered)."""
    events = run(SURVEY, SURVEY_PARAMS, SURVEY_START, replies={30: [Reply("2")]})
    assert timeline(events)[4:] == [
        ("2026-11-02T18:35:00Z", 30, "reply_received"),
        ("2026-11-02T18:35:00Z", 300, "http_request"),
        ("2026-11-02T18:35:00Z", 302, "branch"),
        ("2026-11-02T18:35:00Z", 304, "email_queued"),
        ("2026-11-02T18:35:00Z", 320, "end"),
    ]
    assert detail(events, 300, "http_request") == {"status": 200, "ok": True, "saved": []}
    assert detail(events, 302, "branch") == {"case": "else", "next": 304}
    assert detail(events, 320, "end") == {"outcome": "detractor"}
    [email] = [e for e in events if e["type"] == "email_queued"]
    assert email["to"] == "ana@example.org"
    assert email["subject"] == "We're sorry about your visit, Ana"
    assert email["body"].startswith(
        "Dear Ana,\n\nThank you for telling us about your visit on Monday, November 2.\n"
    )
    assert "Our patient advocate will call you within two\nbusiness days" in email["body"]
    assert email["body"].endswith("\n\nLakeview Clinic")


@pytest.mark.same_on_every_database
def test_survey_detractor_without_email_gets_an_apology_sms() -> None:
    params = {k: v for k, v in SURVEY_PARAMS.items() if k != "email"}
    events = run(SURVEY, params, SURVEY_START, replies={30: [Reply("1")]})
    assert timeline(events)[4:] == [
        ("2026-11-02T18:35:00Z", 30, "reply_received"),
        ("2026-11-02T18:35:00Z", 300, "http_request"),
        ("2026-11-02T18:35:00Z", 302, "branch"),
        ("2026-11-02T18:35:00Z", 306, "sms_queued"),
        ("2026-11-02T18:35:00Z", 320, "end"),
    ]
    assert detail(events, 302, "branch") == {"case": 0, "next": 306}
    assert bodies(events) == [SURVEY_TEXT, ADVOCATE_WILL_CALL]


@pytest.mark.same_on_every_database
def test_survey_detractor_when_the_crm_is_down_promises_no_call_by_cli() -> None:
    """The CRM cannot be reached: nobody will call, so no text says the advocate will (the
    apology used to say so before the CRM was tried); the patient gets the number to call."""
    params = {k: v for k, v in SURVEY_PARAMS.items() if k != "email"}
    events = cli_json(SURVEY, params, SURVEY_START, "--reply", "30=1@1h", "--http", "300=503")
    assert timeline(events)[4:] == [
        ("2026-11-02T19:30:00Z", 30, "reply_received"),
        ("2026-11-02T19:30:00Z", 300, "http_failed"),
        ("2026-11-02T19:30:00Z", 330, "sms_queued"),
        ("2026-11-02T19:30:00Z", 320, "end"),
    ]
    assert detail(events, 300, "http_failed") == {"status": 503, "ok": False, "error": "HTTP 503"}
    assert detail(events, 320, "end") == {"outcome": "detractor"}
    assert bodies(events)[1:] == [CALL_THE_ADVOCATE]
    assert not any("will call" in b for b in bodies(events))


@pytest.mark.same_on_every_database
def test_survey_unreadable_answer_gets_one_more_chance() -> None:
    replies = {30: [Reply("it was ok")], 60: [Reply("4", timedelta(minutes=30))]}
    events = run(SURVEY, SURVEY_PARAMS, SURVEY_START, replies=replies)
    assert timeline(events)[4:] == [
        ("2026-11-02T18:35:00Z", 30, "reply_received"),
        ("2026-11-02T18:35:00Z", 40, "sms_queued"),
        ("2026-11-02T18:35:00Z", 60, "waiting_for_reply"),
        ("2026-11-02T19:05:00Z", 60, "reply_received"),
        ("2026-11-02T19:05:00Z", 100, "wait"),
        ("2026-11-03T16:00:00Z", 110, "sms_queued"),
        ("2026-11-03T16:00:00Z", 120, "end"),
    ]
    assert [e["detail"]["outcome"] for e in events if e["type"] == "reply_received"] == ["other", "promoter"]
    assert bodies(events) == [
        SURVEY_TEXT,
        "Sorry, we didn't get that. Please reply with a number from 1 to 5.",
        REVIEW,
    ]


@pytest.mark.same_on_every_database
def test_survey_no_reply_gets_one_reminder_then_ends() -> None:
    events = run(SURVEY, SURVEY_PARAMS, SURVEY_START)
    assert timeline(events) == [
        ("2026-11-02T17:00:00Z", 5, "branch"),
        ("2026-11-02T17:00:00Z", 10, "wait"),
        ("2026-11-02T18:30:00Z", 20, "sms_queued"),
        ("2026-11-02T18:30:00Z", 30, "waiting_for_reply"),
        ("2026-11-03T18:30:00Z", 30, "reply_timeout"),
        ("2026-11-03T18:30:00Z", 50, "sms_queued"),
        ("2026-11-03T18:30:00Z", 60, "waiting_for_reply"),
        ("2026-11-04T18:30:00Z", 60, "reply_timeout"),
        ("2026-11-04T18:30:00Z", 70, "end"),
    ]
    assert detail(events, 70, "end") == {"outcome": "no-score"}
    assert bodies(events) == [SURVEY_TEXT, SURVEY_REMINDER]


@pytest.mark.same_on_every_database
def test_survey_promoter_answering_the_reminder_is_deferred_to_the_next_morning() -> None:
    """The reminder went out at 12:30 on 11-03; the promoter answers at 17:30, after 10:00 on
    the day after the visit, so the review request is due at once: the second SMS that day
    (1 per day) is deferred (the cap's default policy) to 08:00 the next morning, and sent then."""
    events = run(SURVEY, SURVEY_PARAMS, SURVEY_START, replies={60: [Reply("5", timedelta(hours=5))]})
    assert timeline(events)[4:] == [
        ("2026-11-03T18:30:00Z", 30, "reply_timeout"),
        ("2026-11-03T18:30:00Z", 50, "sms_queued"),
        ("2026-11-03T18:30:00Z", 60, "waiting_for_reply"),
        ("2026-11-03T23:30:00Z", 60, "reply_received"),
        ("2026-11-03T23:30:00Z", 100, "wait_skipped"),
        ("2026-11-03T23:30:00Z", 110, "sms_deferred"),
        ("2026-11-04T14:00:00Z", 110, "sms_queued"),
        ("2026-11-04T14:00:00Z", 120, "end"),
    ]
    assert detail(events, 100, "wait_skipped") == {"until": "2026-11-03T16:00:00Z", "policy": "run_now"}
    assert detail(events, 110, "sms_deferred") == {"until": "2026-11-04T14:00:00Z", "limit": "1 per day"}
    assert bodies(events) == [SURVEY_TEXT, SURVEY_REMINDER, REVIEW]


@pytest.mark.same_on_every_database
def test_survey_review_request_is_capped_with_the_skip_policy() -> None:
    """With `when_capped: skip` the same review request is recorded as capped, not sent."""
    defn = with_cap(SURVEY, "{when_capped: skip}")
    replies = {60: [Reply("5", timedelta(hours=5))]}
    events = run(SURVEY, SURVEY_PARAMS, SURVEY_START, replies=replies, definition=defn)
    assert timeline(events)[-2:] == [
        ("2026-11-03T23:30:00Z", 110, "sms_capped"),
        ("2026-11-03T23:30:00Z", 120, "end"),
    ]
    assert detail(events, 110, "sms_capped") == {"limit": "1 per day"}
    assert bodies(events) == [SURVEY_TEXT, SURVEY_REMINDER]


@pytest.mark.same_on_every_database
def test_survey_triggered_late_asks_at_once() -> None:
    events = run(SURVEY, SURVEY_PARAMS, "2026-11-02 16:00", replies={30: [Reply("3")]})
    assert timeline(events)[:4] == [
        ("2026-11-02T22:00:00Z", 5, "branch"),
        ("2026-11-02T22:00:00Z", 10, "wait_skipped"),
        ("2026-11-02T22:00:00Z", 20, "sms_queued"),
        ("2026-11-02T22:00:00Z", 30, "waiting_for_reply"),
    ]
    assert detail(events, 10, "wait_skipped") == {"until": "2026-11-02T18:30:00Z", "policy": "run_now"}


@pytest.mark.same_on_every_database
def test_survey_triggered_days_later_names_the_visits_date() -> None:
    """Triggered six days after the visit (within the week): asked at once, and the text names
    the date — "on Monday" alone, sent on a Sunday, would be read as the wrong Monday."""
    events = run(SURVEY, SURVEY_PARAMS, "2026-11-08 11:00")
    assert timeline(events)[:3] == [
        ("2026-11-08T17:00:00Z", 5, "branch"),
        ("2026-11-08T17:00:00Z", 10, "wait_skipped"),
        ("2026-11-08T17:00:00Z", 20, "sms_queued"),
    ]
    assert bodies(events)[0] == SURVEY_TEXT


@pytest.mark.same_on_every_database
def test_survey_held_overnight_names_the_visits_date() -> None:
    """An evening visit (19:30): the survey due at 21:30 is held until 08:00 the next day, when
    the date still says which visit it means."""
    params = {**SURVEY_PARAMS, "visitDateTime": "2026-11-02 19:30"}
    events = run(SURVEY, params, "2026-11-02 20:00")
    assert timeline(events)[:4] == [
        ("2026-11-03T02:00:00Z", 5, "branch"),
        ("2026-11-03T02:00:00Z", 10, "wait"),
        ("2026-11-03T03:30:00Z", 20, "send_held"),
        ("2026-11-03T14:00:00Z", 20, "sms_queued"),  # Tuesday 08:00
    ]
    assert bodies(events)[0] == SURVEY_TEXT


@pytest.mark.same_on_every_database
def test_survey_for_a_visit_not_yet_started_sends_nothing_and_says_why_by_cli() -> None:
    """Triggered at 09:00 for a visit at 10:30 (the old tests' start): the survey would thank
    the patient for a visit that may not happen (a no-show), so nothing is sent and the
    instance ends with outcome visit-not-started."""
    events = cli_json(SURVEY, SURVEY_PARAMS, "2026-11-02 09:00")
    assert timeline(events) == [
        ("2026-11-02T15:00:00Z", 5, "branch"),
        ("2026-11-02T15:00:00Z", 80, "end"),
    ]
    assert detail(events, 5, "branch") == {"case": 0, "next": 80}
    assert detail(events, 80, "end") == {"outcome": "visit-not-started"}
    assert bodies(events) == []


@pytest.mark.same_on_every_database
def test_survey_for_a_visit_long_past_sends_nothing_and_says_why() -> None:
    """A visit more than 7 days before the trigger (here the MedChat seed's 2023 date, and one
    just over 7 days back) gets no survey: outcome visit-too-long-ago."""
    for visit, start in (("2023-12-01 08:00:00", SURVEY_START), ("2026-11-02 10:30", "2026-11-09 10:31")):
        events = run(SURVEY, {**SURVEY_PARAMS, "visitDateTime": visit}, start)
        assert [(s, k) for _, s, k in timeline(events)] == [(5, "branch"), (85, "end")]
        assert detail(events, 5, "branch") == {"case": 1, "next": 85}
        assert detail(events, 85, "end") == {"outcome": "visit-too-long-ago"}
        assert bodies(events) == []


# ============================================================================ pre-procedure
PROCEDURE = {
    "patientId": "p-300",
    "patientName": "Ana",
    "procedureId": "x-300",
    "procedureName": "colonoscopy",
    "procedureDateTime": "2026-11-12 07:30",
    "phoneNumber": PHONE,
    "email": "ana@example.org",
}
FASTING_730 = (
    "Ana, a reminder for your colonoscopy tomorrow at 7:30 AM: nothing to eat after midnight tonight. "
    "Sips of water are fine until 2 hours before."
)
# No "Good morning": booked later in the day, the text goes at once, in the afternoon.
MORNING_730 = (
    "Ana, your colonoscopy is today at 7:30 AM. Nothing to eat, no water from 2 hours before, and bring "
    "your driver."
)


@pytest.mark.same_on_every_database
def test_pre_procedure_by_cli() -> None:
    events = cli_json(
        PRE_PROCEDURE, {**PROCEDURE, "location": "Lakeview Endoscopy Suite"}, "2026-11-02 10:00"
    )
    assert timeline(events) == [
        ("2026-11-02T16:00:00Z", 5, "branch"),
        ("2026-11-02T16:00:00Z", 10, "wait"),
        ("2026-11-05T15:00:00Z", 20, "email_queued"),  # 09:00 CST, 7 days before
        ("2026-11-05T15:00:00Z", 30, "wait"),
        ("2026-11-12T00:00:00Z", 40, "sms_queued"),  # 18:00 CST the day before
        ("2026-11-12T00:00:00Z", 50, "wait"),
        ("2026-11-12T12:00:00Z", 60, "sms_queued"),  # 06:00 CST: not held (window opens 06:00)
        ("2026-11-12T12:00:00Z", 70, "end"),
    ]
    assert detail(events, 5, "branch") == {"case": "else", "next": 10}
    assert detail(events, 70, "end") == {"outcome": "instructions-sent"}
    [email] = [e for e in events if e["type"] == "email_queued"]
    assert email["channel"] == "email" and email["to"] == "ana@example.org"
    assert email["subject"] == "Preparing for your colonoscopy on Thursday, November 12 at 7:30 AM"
    assert email["body"].startswith(
        "Dear Ana,\n\nYour colonoscopy is on Thursday, November 12, 2026 at 7:30 AM at Lakeview Endoscopy "
        "Suite.\n\nTo prepare:\n- From 5 days before: stop iron tablets and fibre supplements. If your "
        "procedure is\n  sooner than that, call us.\n"
    )
    assert "- You will be sedated: an adult must drive you home." in email["body"]
    assert email["body"].endswith("To change the date, call us at (312) 555-0199.")
    assert sends(events)[1:] == [
        ("2026-11-12T00:00:00Z", 40, "sms", PHONE_E164, FASTING_730),
        (
            "2026-11-12T12:00:00Z",
            60,
            "sms",
            PHONE_E164,
            "Ana, your colonoscopy is today at 7:30 AM at Lakeview Endoscopy Suite. Nothing to eat, no water "
            "from 2 hours before, and bring your driver.",
        ),
    ]
    assert not any(e["type"] == "send_held" for e in events)


@pytest.mark.same_on_every_database
def test_pre_procedure_across_the_fall_back() -> None:
    """Procedure Mon 2026-11-02 07:30 CST: the email 7 days before at 09:00 is in CDT, the
    fasting text on the fall-back evening and the morning text in CST."""
    params = {**PROCEDURE, "procedureDateTime": "2026-11-02 07:30"}
    events = run(PRE_PROCEDURE, params, "2026-10-20 10:00")
    assert timeline(events) == [
        ("2026-10-20T15:00:00Z", 5, "branch"),
        ("2026-10-20T15:00:00Z", 10, "wait"),
        ("2026-10-26T14:00:00Z", 20, "email_queued"),  # 09:00 CDT
        ("2026-10-26T14:00:00Z", 30, "wait"),
        ("2026-11-02T00:00:00Z", 40, "sms_queued"),  # 18:00 CST on 11-01
        ("2026-11-02T00:00:00Z", 50, "wait"),
        ("2026-11-02T12:00:00Z", 60, "sms_queued"),  # 06:00 CST
        ("2026-11-02T12:00:00Z", 70, "end"),
    ]


@pytest.mark.same_on_every_database
def test_pre_procedure_across_the_spring_forward() -> None:
    params = {**PROCEDURE, "procedureDateTime": "2026-03-09 07:30"}
    events = run(PRE_PROCEDURE, params, "2026-02-20 10:00")
    assert timeline(events) == [
        ("2026-02-20T16:00:00Z", 5, "branch"),
        ("2026-02-20T16:00:00Z", 10, "wait"),
        ("2026-03-02T15:00:00Z", 20, "email_queued"),  # 09:00 CST
        ("2026-03-02T15:00:00Z", 30, "wait"),
        ("2026-03-08T23:00:00Z", 40, "sms_queued"),  # 18:00 CDT on the spring-forward day
        ("2026-03-08T23:00:00Z", 50, "wait"),
        ("2026-03-09T11:00:00Z", 60, "sms_queued"),  # 06:00 CDT
        ("2026-03-09T11:00:00Z", 70, "end"),
    ]


@pytest.mark.same_on_every_database
def test_pre_procedure_booked_late_gets_the_email_at_once() -> None:
    events = run(PRE_PROCEDURE, PROCEDURE, "2026-11-09 15:00")
    assert timeline(events) == [
        ("2026-11-09T21:00:00Z", 5, "branch"),
        ("2026-11-09T21:00:00Z", 10, "wait_skipped"),
        ("2026-11-09T21:00:00Z", 20, "email_queued"),
        ("2026-11-09T21:00:00Z", 30, "wait"),
        ("2026-11-12T00:00:00Z", 40, "sms_queued"),
        ("2026-11-12T00:00:00Z", 50, "wait"),
        ("2026-11-12T12:00:00Z", 60, "sms_queued"),
        ("2026-11-12T12:00:00Z", 70, "end"),
    ]
    assert detail(events, 10, "wait_skipped") == {"until": "2026-11-05T15:00:00Z", "policy": "run_now"}
    assert bodies(events)[1:] == [FASTING_730, MORNING_730]


@pytest.mark.same_on_every_database
def test_pre_procedure_booked_the_evening_before_skips_the_midnight_text() -> None:
    """Booked at 19:30 the evening before: the email goes at once (emails ignore the send
    window), "nothing to eat after midnight tonight" is past its 18:00 and skipped."""
    events = run(PRE_PROCEDURE, PROCEDURE, "2026-11-11 19:30")
    assert timeline(events) == [
        ("2026-11-12T01:30:00Z", 5, "branch"),
        ("2026-11-12T01:30:00Z", 10, "wait_skipped"),
        ("2026-11-12T01:30:00Z", 20, "email_queued"),
        ("2026-11-12T01:30:00Z", 30, "wait_skipped"),
        ("2026-11-12T01:30:00Z", 40, "sms_skipped"),
        ("2026-11-12T01:30:00Z", 50, "wait"),
        ("2026-11-12T12:00:00Z", 60, "sms_queued"),
        ("2026-11-12T12:00:00Z", 70, "end"),
    ]
    assert detail(events, 30, "wait_skipped") == {"until": "2026-11-12T00:00:00Z", "policy": "skip"}
    assert bodies(events)[1:] == [MORNING_730]


@pytest.mark.same_on_every_database
def test_pre_procedure_with_the_default_window_would_text_too_late() -> None:
    """Why the journey sets its own send window: under the default 08:00-21:00 the 06:00
    morning text is held to 08:00, half an hour after a 07:30 procedure began — and so, since
    it may not be sent at or after the procedure (send_before), not sent at all. (Before
    send_before it went out at 08:00, "today at 7:30 AM", after the procedure had begun.)"""
    defn = load_definition_file(PRE_PROCEDURE)
    assert defn.send_window == SendWindow(start="06:00", end="21:00")
    default = defn.model_copy(update={"send_window": SendWindow()})
    events = run(PRE_PROCEDURE, PROCEDURE, "2026-11-02 10:00", definition=default)
    assert timeline(events)[-4:] == [
        ("2026-11-12T00:00:00Z", 50, "wait"),
        ("2026-11-12T12:00:00Z", 60, "send_held"),
        ("2026-11-12T14:00:00Z", 60, "sms_skipped"),
        ("2026-11-12T14:00:00Z", 70, "end"),
    ]
    assert detail(events, 60, "sms_skipped") == {"reason": "procedureDateTime has passed"}


@pytest.mark.same_on_every_database
def test_pre_procedure_already_past_sends_nothing_and_says_why_by_cli() -> None:
    """A procedure already past used to get the full instructions by email at once and a
    "today" text: now nothing is sent, and the instance ends with outcome procedure-passed."""
    params = {**PROCEDURE, "procedureDateTime": "2026-10-12 07:30"}
    events = cli_json(PRE_PROCEDURE, params, "2026-11-02 10:00")
    assert timeline(events) == [
        ("2026-11-02T16:00:00Z", 5, "branch"),
        ("2026-11-02T16:00:00Z", 90, "end"),
    ]
    assert detail(events, 5, "branch") == {"case": 0, "next": 90}
    assert detail(events, 90, "end") == {"outcome": "procedure-passed"}
    assert bodies(events) == []


@pytest.mark.same_on_every_database
def test_pre_procedure_triggered_at_its_own_start_time_sends_nothing() -> None:
    """Triggered at 07:30 for a 07:30 procedure: it has begun, so no instructions are sent."""
    events = run(PRE_PROCEDURE, PROCEDURE, "2026-11-12 07:30")
    assert [(s, k) for _, s, k in timeline(events)] == [(5, "branch"), (90, "end")]
    assert detail(events, 90, "end") == {"outcome": "procedure-passed"}
    assert bodies(events) == []


@pytest.mark.same_on_every_database
def test_pre_procedure_booked_the_same_afternoon_says_no_good_morning() -> None:
    """Booked at 14:00 for 17:00: the morning-of text goes at once (run_now); it used to open
    with "Good morning"."""
    params = {**PROCEDURE, "procedureDateTime": "2026-11-12 17:00"}
    events = run(PRE_PROCEDURE, params, "2026-11-12 14:00")
    assert timeline(events)[-3:] == [
        ("2026-11-12T20:00:00Z", 50, "wait_skipped"),
        ("2026-11-12T20:00:00Z", 60, "sms_queued"),
        ("2026-11-12T20:00:00Z", 70, "end"),
    ]
    assert bodies(events)[1:] == [
        "Ana, your colonoscopy is today at 5:00 PM. Nothing to eat, no water from 2 hours before, and "
        "bring your driver."
    ]


@pytest.mark.same_on_every_database
def test_pre_procedure_before_the_window_opens_gets_no_text_after_it() -> None:
    """A procedure at 05:30 (before the 06:00 window opens), and one booked at 22:30 for 23:30
    the same evening (the text is held to 06:00 the next day): the "today" text would go after
    the procedure; send_before skips it."""
    cases = [("2026-11-12 05:30", "2026-11-11 22:00", False), ("2026-11-12 23:30", "2026-11-12 22:30", True)]
    for when, start, held in cases:
        events = run(PRE_PROCEDURE, {**PROCEDURE, "procedureDateTime": when}, start)
        kinds = [k for _, s, k in timeline(events) if s == 60]
        assert kinds == (["send_held", "sms_skipped"] if held else ["sms_skipped"])
        assert detail(events, 60, "sms_skipped") == {"reason": "procedureDateTime has passed"}
        assert [e["channel"] for e in events if e["type"] in SEND_KINDS] == ["email"]


ANOTHER_TEXT = """      - id: 25
        name: Another text that day
        type: send_sms
        to: phoneNumber
        body: "Another text."
"""


def _with_another_text(policy: str) -> JourneyDefinition:
    """The example with a capped text right after the email (standing in for another journey's
    text to the same number that day), under the given `when_capped` policy."""
    text = PRE_PROCEDURE.read_text()
    anchor = "      - id: 30\n"
    assert anchor in text and "  when_capped: skip" in text
    text = text.replace(anchor, ANOTHER_TEXT + anchor, 1)
    text = text.replace("  when_capped: skip", f"  when_capped: {policy}")
    return load_definition_text(text)


@pytest.mark.same_on_every_database
def test_pre_procedure_a_capped_fasting_text_is_skipped_not_sent_the_next_day() -> None:
    """Booked the day before at 10:00 with another text to the number that day: the 18:00
    fasting text is over the cap (1 a day). Deferred (the default policy) it would go at 06:00
    on the day, saying "tomorrow" and "after midnight tonight"; the example skips it
    (when_capped: skip) and records why."""
    deferred = run(PRE_PROCEDURE, PROCEDURE, "2026-11-11 10:00", definition=_with_another_text("defer"))
    assert ("2026-11-12T12:00:00Z", 40, "sms_queued") in timeline(deferred)  # the day itself
    assert FASTING_730 in bodies(deferred)

    events = run(PRE_PROCEDURE, PROCEDURE, "2026-11-11 10:00", definition=_with_another_text("skip"))
    assert [t for t in timeline(events) if t[1] in (25, 30, 40, 50, 60)] == [
        ("2026-11-11T16:00:00Z", 25, "sms_queued"),
        ("2026-11-11T16:00:00Z", 30, "wait"),
        ("2026-11-12T00:00:00Z", 40, "sms_capped"),
        ("2026-11-12T00:00:00Z", 50, "wait"),
        ("2026-11-12T12:00:00Z", 60, "sms_queued"),
    ]
    assert detail(events, 40, "sms_capped") == {"limit": "1 per day"}
    assert FASTING_730 not in bodies(events)
    assert MORNING_730 in bodies(events)


# ============================================================================ every example, every timing
AFTER_THE_VISIT = {APPOINTMENT_FULL: {110, 115, 170}}  # "we'll call you", "call us", "we missed you"


def _untrue_sends(
    path: Path, events: list[Event], when: datetime, start: datetime
) -> list[tuple[int, str, str]]:
    """Sends that would say something false about a visit at `when` (started at `start`)."""
    wrong = []
    for e in events:
        if e["type"] not in SEND_KINDS:
            continue
        at = datetime.fromisoformat(e["localTime"])
        text = f"{e.get('subject', '')} {e['body']}".lower()
        if path != SURVEY and e["stepId"] not in AFTER_THE_VISIT.get(path, set()) and at >= when:
            wrong.append((e["stepId"], e["localTime"], "sent at or after the time it is about"))
        if " today" in text and at.date() != when.date():
            wrong.append((e["stepId"], e["localTime"], '"today" on another day'))
        if ("tomorrow" in text or "tonight" in text) and at.date() != when.date() - timedelta(days=1):
            wrong.append((e["stepId"], e["localTime"], '"tomorrow" not the day before'))
        if path == SURVEY and start < when:
            wrong.append((e["stepId"], e["localTime"], "a survey for a visit not started"))
    return wrong


@pytest.mark.same_on_every_database
@pytest.mark.parametrize("day", ["2026-03-08", "2026-11-01", "2026-11-03"])
def test_no_example_text_is_untrue_whenever_it_is_booked(day: str) -> None:
    """The timing edge cases of every example, on the DST days and an ordinary one: times from
    05:30 (before the send windows open) to 23:30, booked a week ahead to an hour after, in the
    evening and at night before, with and without replies. No text about a visit goes out at or after it
    (except the follow-ups meant for after), "today" is only said on the day, "tomorrow" and
    "tonight" only the day before, and no survey thanks a patient for a visit not started."""
    offsets = [timedelta(days=-7, hours=-1), timedelta(days=-2, hours=2), timedelta(hours=-25)]
    offsets += [timedelta(hours=-9), timedelta(hours=-3), timedelta(minutes=-30), timedelta(0)]
    offsets += [timedelta(hours=1)]
    checked = 0
    for hour in ("05:30", "07:30", "08:00", "20:00", "23:30"):
        when = local(f"{day} {hour}")
        evening = (when - timedelta(days=1)).strftime("%Y-%m-%d")
        starts = [when + o for o in offsets] + [local(f"{evening} 21:30"), local(f"{evening} 23:00")]
        at = f"{day} {hour}"
        late_yes = {60: [Reply("C", timedelta(hours=20))]}
        late_reminder_yes = {15: [Reply("C", timedelta(hours=11))]}
        for start in starts:
            runs = [
                (APPOINTMENT_FULL, {**APPOINTMENT, "appointmentDateTime": at}, {}),
                (APPOINTMENT_FULL, {**APPOINTMENT, "appointmentDateTime": at}, late_yes),
                (PRE_PROCEDURE, {**PROCEDURE, "procedureDateTime": at}, {}),
                (SURVEY, {**SURVEY_PARAMS, "visitDateTime": at}, {30: [Reply("5")]}),
                (APPOINTMENT_REMINDER, {**REMINDER_PARAMS, "appointmentDateTime": at}, late_reminder_yes),
            ]
            for path, params, replies in runs:
                events = run(path, params, start.strftime("%Y-%m-%d %H:%M"), replies=replies)
                assert _untrue_sends(path, events, when, start) == [], (path.name, at, start)
                checked += 1
    assert checked == 5 * 10 * 5


# ============================================================================ engine rules
STICKY_SKIP = """
name: Sticky skip
parameters:
  - {name: when, type: datetime}
  - {name: phone, type: phone}
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: wait_until, parameter: when, before: 2d, at: "09:00", if_past: skip}
      - id: 20
        type: branch
        cases:
          - when: {parameter: when, before: now+2d}
            next: 40
        else: 30
      - {id: 30, type: send_sms, to: phone, body: "in two days"}
      - {id: 40, type: wait_until, parameter: when, at: "08:00"}
      - {id: 50, type: send_sms, to: phone, body: "today"}
"""


@pytest.mark.same_on_every_database
def test_a_skipped_wait_only_skips_a_send_reached_without_waiting_again() -> None:
    """`if_past: skip` skips "the next send … meant for that time". Here the branch leads past
    the send meant for the skipped time; the next send is reached only after a later wait_until
    that really waited, so it is on time and must go out."""
    defn = load_definition_text(STICKY_SKIP)
    events = simulate(defn, {"when": "2026-11-03 10:00", "phone": PHONE}, TZ, local("2026-11-02 10:00"))
    assert [(e["stepId"], e["type"]) for e in events] == [
        (10, "wait_skipped"),
        (20, "branch"),
        (40, "wait"),
        (50, "sms_queued"),
        (None, "completed"),
    ]
    assert sends(events) == [("2026-11-03T14:00:00Z", 50, "sms", PHONE_E164, "today")]


# ============================================================================ the CLI itself
@pytest.mark.same_on_every_database
def test_cli_json_events_have_the_documented_fields() -> None:
    events = cli_json(PRE_PROCEDURE, PROCEDURE, "2026-11-02 10:00")
    for e in events:
        assert {"time", "localTime", "flowId", "flowName", "stepId", "type", "detail"} <= set(e)
        assert e["time"].endswith("Z") and datetime.fromisoformat(e["time"].replace("Z", "+00:00")).tzinfo
        moment = datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
        assert datetime.fromisoformat(e["localTime"]) == moment
        assert datetime.fromisoformat(e["localTime"]).utcoffset() == moment.astimezone(CHICAGO).utcoffset()
    for e in events:
        if e["type"] in SEND_KINDS:
            assert {"channel", "to", "body"} <= set(e)
            assert ("subject" in e) == (e["channel"] == "email")
        else:
            assert not {"channel", "to", "body", "subject"} & set(e)


@pytest.mark.same_on_every_database
def test_cli_touches_no_database(tmp_path: Path) -> None:
    db = tmp_path / "should-not-exist.db"
    result = cli(
        str(APPOINTMENT_FULL),
        "--params",
        json.dumps(APPOINTMENT),
        "--tz",
        TZ,
        "--start",
        "2026-10-20 10:00",
        "--json",
        cwd=tmp_path,
        env=clean_env(JOURNEYS_DATABASE_URL=f"sqlite:///{db}"),
    )
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.same_on_every_database
def test_cli_parameter_names_are_case_insensitive() -> None:
    params = {k.upper(): v for k, v in APPOINTMENT.items()}
    events = cli_json(APPOINTMENT_FULL, params, "2026-10-20 10:00")
    assert bodies(events)[0] == CONFIRMATION_NOV3


@pytest.mark.same_on_every_database
def test_cli_reply_delay() -> None:
    events = cli_json(APPOINTMENT_FULL, APPOINTMENT, "2026-10-20 10:00", "--reply", "60=C@3h")
    assert ("2026-11-01T18:00:00Z", 60, "reply_received") in timeline(events)
    # A reply later than the timeout is never seen: the wait times out.
    events = cli_json(APPOINTMENT_FULL, APPOINTMENT, "2026-10-20 10:00", "--reply", "60=C@2d")
    assert ("2026-11-02T15:00:00Z", 60, "reply_timeout") in timeline(events)
    assert not any(e["type"] == "reply_received" for e in events)


def simulate_args(params: str = json.dumps(APPOINTMENT), *extra: str, tz: str = TZ) -> list[str]:
    return [str(APPOINTMENT_FULL), "--params", params, "--tz", tz, "--start", "2026-10-20 10:00", *extra]


def assert_fails(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.same_on_every_database
def test_cli_rejects_invalid_params_json() -> None:
    assert_fails(cli(*simulate_args("{not json")), "--params: not valid JSON")
    assert_fails(cli(*simulate_args('["a list"]')), "--params: must be a JSON object")


@pytest.mark.same_on_every_database
def test_cli_rejects_a_missing_required_parameter() -> None:
    params = {k: v for k, v in APPOINTMENT.items() if k != "phoneNumber"}
    assert_fails(cli(*simulate_args(json.dumps(params))), "phoneNumber", "required parameter is missing")


@pytest.mark.same_on_every_database
def test_cli_rejects_a_bad_parameter_value() -> None:
    params = {**APPOINTMENT, "appointmentDateTime": "next Tuesday"}
    assert_fails(cli(*simulate_args(json.dumps(params))), "appointmentDateTime", "is not a valid datetime")
    params = {**APPOINTMENT, "doctor": "Dr Who"}
    assert_fails(cli(*simulate_args(json.dumps(params))), "doctor: unknown parameter")


@pytest.mark.same_on_every_database
def test_cli_rejects_an_unknown_time_zone() -> None:
    assert_fails(
        cli(*simulate_args(tz="Mars/Olympus_Mons")), "--tz", "'Mars/Olympus_Mons' is not an IANA time zone"
    )


@pytest.mark.same_on_every_database
@pytest.mark.parametrize("reply", ["C", "sixty=C", "=C", "60=C@soon"])
def test_cli_rejects_bad_reply_syntax(reply: str) -> None:
    assert_fails(cli(*simulate_args(json.dumps(APPOINTMENT), "--reply", reply)), f"--reply {reply!r}")


@pytest.mark.same_on_every_database
@pytest.mark.parametrize("answer", ["110", "110=ok", "x=500", "110=200:{not json"])
def test_cli_rejects_bad_http_syntax(answer: str) -> None:
    assert_fails(cli(*simulate_args(json.dumps(APPOINTMENT), "--http", answer)), f"--http {answer!r}")


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--reply", "50=C", "--reply: step 50 is not a wait_for_reply step (wait_for_reply steps: 60, 180)"),
        ("--reply", "999=C", "--reply: step 999 is not a wait_for_reply step"),
        ("--http", "60=500", "--http: step 60 is not a http_request step (http_request steps: 100)"),
    ],
)
def test_cli_rejects_a_reply_or_answer_for_the_wrong_step(option: str, value: str, message: str) -> None:
    """A `--reply` for the SMS that asks the question (50), not the step that waits for the
    answer (60), is an error naming the steps that wait, not silently ignored."""
    assert_fails(cli(*simulate_args(json.dumps(APPOINTMENT), option, value)), message)


@pytest.mark.same_on_every_database
def test_cli_a_reply_for_a_wait_never_reached_is_not_used() -> None:
    """Step 180 waits only after a no-show; the patient here is checked in, so its reply is unused."""
    params = {**APPOINTMENT, "checkedIn": "yes"}
    events = cli_json(APPOINTMENT_FULL, params, "2026-10-20 10:00", "--reply", "60=C", "--reply", "180=R")
    assert events[-1]["type"] == "end" and events[-1]["detail"] == {"outcome": "attended"}
    assert not any(e["stepId"] == 180 for e in events)


def _documented_commands() -> list[tuple[str, str, list[str]]]:
    """Every `journeys simulate` command in docs/simulate.md (with the output shown after it)
    and in the examples' "Preview it" header comments: (where, command, shown output)."""
    found: list[tuple[str, str, list[str]]] = []
    lines = (ROOT / "docs" / "simulate.md").read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip().startswith("$ journeys simulate") and "FILE" not in lines[i]:
            command = [lines[i].strip()[2:]]
            while command[-1].endswith("\\") or "".join(command).count("'") % 2:
                i += 1
                command.append(lines[i].strip())
            shown = []
            while not lines[i + 1].strip().startswith(("```", "$")):
                i += 1
                if lines[i].strip():
                    shown.append(lines[i].strip())
            found.append(("docs/simulate.md", "\n".join(command), shown))
        i += 1
    for path in sorted(EXAMPLES.glob("*.yaml")):
        header = path.read_text().splitlines()
        for j, line in enumerate(header):
            if line.startswith("#   journeys simulate"):
                command = [line[4:]]
                while header[j + len(command)].startswith("#     "):
                    command.append(header[j + len(command)][6:])
                found.append((path.name, "\n".join(command), []))
    return found


@pytest.mark.same_on_every_database
def test_documented_commands_run_as_written() -> None:
    """Users copy these: each runs as written (with `journeys` on the PATH), and the output the
    docs show is what it prints (all of it, or after a `…`, a part of it)."""
    commands = _documented_commands()
    assert sorted({where for where, _, _ in commands}) == [
        "appointment-full.yaml",
        "docs/simulate.md",
        "post-visit-survey.yaml",
        "pre-procedure.yaml",
    ]
    assert len(commands) >= 7
    env = clean_env(PATH=f"{Path(JOURNEYS[0]).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for where, command, shown in commands:
        result = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT, env=env
        )
        assert result.returncode == 0, (where, command, result.stderr)
        printed = [line.strip() for line in result.stdout.splitlines()]
        assert printed, (where, command)
        if shown and shown[0] == "…":
            part = shown[1:]
            assert any(printed[k : k + len(part)] == part for k in range(len(printed))), (where, command)
        elif shown:
            assert printed == shown, (where, command)


@pytest.mark.same_on_every_database
def test_cli_rejects_a_bad_start() -> None:
    result = cli(
        str(APPOINTMENT_FULL), "--params", json.dumps(APPOINTMENT), "--tz", TZ, "--start", "tomorrow"
    )
    assert_fails(result, "--start")


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    ("start", "problem"),
    [
        ("9999-12-31 23:59", "is out of range (years 1900 to 2200)"),
        ("0001-01-01T00:00:00+14:00", "is out of range (years 1900 to 2200)"),
        ("２０２６-11-02 10:00", "is not a valid datetime"),
        ("2026-11-02T10:00:00+15:00", "has a UTC offset beyond ±14:00"),
    ],
)
def test_cli_rejects_a_start_out_of_range_or_not_ascii(start: str, problem: str) -> None:
    result = cli(str(APPOINTMENT_FULL), "--params", json.dumps(APPOINTMENT), "--tz", TZ, "--start", start)
    assert_fails(result, "--start", problem)


@pytest.mark.same_on_every_database
@pytest.mark.parametrize("delay", ["99999999999999d", "3661d", "２h"])
def test_cli_rejects_a_reply_delay_out_of_range(delay: str) -> None:
    assert_fails(cli(*simulate_args(json.dumps(APPOINTMENT), "--reply", f"60=C@{delay}")), "--reply")


@pytest.mark.same_on_every_database
@pytest.mark.parametrize("option", [["--reply", "²=C"], ["--http", "²=200"], ["--http", "110=²00"]])
def test_cli_rejects_non_ascii_step_ids_and_statuses(option: list[str]) -> None:
    assert_fails(cli(*simulate_args(json.dumps(APPOINTMENT), *option)), option[0])


@pytest.mark.same_on_every_database
def test_cli_rejects_a_horizon_beyond_a_century() -> None:
    result = cli(*simulate_args(json.dumps(APPOINTMENT), "--horizon-days", "999999999"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--horizon-days" in result.stderr


AT_1 = "(the limit) at template line 1"
SIZED_SMS = """
name: Sized
parameters:
  - {name: phone, type: phone}
  - {name: count, type: number}
flows:
  - id: main
    name: Main
    steps:
      - id: 10
        type: send_sms
        to: phone
        send_window: false
        body: "{{ 'x' * (count | int) }}"
      - {id: 20, type: end}
"""


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(
    ("count", "error"),
    [
        ("1601", "step 10: the SMS body renders more than 1,600 characters (the limit)"),
        ("300000000", f"step 10: template builds a value larger than 1,000,000 characters {AT_1}"),
    ],
)
def test_cli_a_text_past_its_limit_is_a_failed_step_not_gigabytes(
    tmp_path: Path, count: str, error: str
) -> None:
    """The template is fine for some values (validation passes); for these the step fails at
    the limit — `simulate` once rendered 1.2 GB here."""
    path = tmp_path / "sized.yaml"
    path.write_text(SIZED_SMS, encoding="utf-8")
    events = cli_json(path, {"phone": PHONE, "count": count}, "2026-11-02 10:00")
    assert [(e["stepId"], e["type"]) for e in events][-1] == (10, "failed")
    assert events[-1]["detail"] == {"error": error}
    assert "xxxx" not in json.dumps(events)
    ok = cli_json(path, {"phone": PHONE, "count": "1600"}, "2026-11-02 10:00")
    assert [len(e["body"]) for e in ok if e["type"] == "sms_queued"] == [1600]


@pytest.mark.same_on_every_database
def test_cli_rejects_an_invalid_definition_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: Bad\n"
        "parameters:\n"
        "  - {name: phone, type: phone}\n"
        "flows:\n"
        "  - id: main\n"
        "    name: Main\n"
        "    steps:\n"
        "      - id: 10\n"
        "        type: send_sms\n"
        "        to: phone\n"
        "      - id: 20\n"
        "        type: wait\n"
        "        duration: 30\n",
        encoding="utf-8",
    )
    result = cli(str(bad), "--tz", TZ, "--start", "2026-11-02 10:00", "--params", '{"phone": "3125550100"}')
    assert_fails(result)
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{bad}:8: flows[0].steps[0]: missing field 'body'",
        f"{bad}:13: flows[0].steps[1].duration: expected text, got a number (a duration needs a unit, "
        "e.g. '30m', '24h', '2d')",
    ]


@pytest.mark.same_on_every_database
def test_cli_missing_file() -> None:
    result = cli("/nonexistent/journey.yaml", "--tz", TZ, "--start", "2026-11-02 10:00")
    assert_fails(result, "/nonexistent/journey.yaml", "cannot read file")


@pytest.mark.same_on_every_database
def test_function_and_cli_agree() -> None:
    """The CLI is a thin wrapper: the same run gives the same events (message ids aside)."""
    replies = {60: [Reply("R", timedelta(hours=2))]}
    from_function = run(
        APPOINTMENT_FULL, APPOINTMENT, "2026-10-20 10:00", replies=replies, http={100: {"status": 500}}
    )
    from_cli = cli_json(
        APPOINTMENT_FULL, APPOINTMENT, "2026-10-20 10:00", "--reply", "60=R@2h", "--http", "100=500"
    )

    def strip(events: list[Event]) -> list[Event]:
        return [{**e, "detail": {k: v for k, v in e["detail"].items() if k != "messageId"}} for e in events]

    assert strip(from_function) == strip(from_cli)
    assert all(isinstance(e["detail"].get("messageId"), str) for e in from_cli if e["type"] in SEND_KINDS)


@pytest.mark.same_on_every_database
def test_parameters_are_read_in_the_simulation_zone() -> None:
    """A local appointmentDateTime means local to the instance's zone (here UTC)."""
    defn = load_definition_file(APPOINTMENT_REMINDER)
    utc_run = simulate(defn, REMINDER_PARAMS, "UTC", datetime(2026, 10, 28, 15, 0, tzinfo=UTC))
    assert utc_run[0]["time"] == "2026-10-28T15:00:00Z"
    assert utc_run[0]["localTime"] == "2026-10-28T15:00:00+00:00"
    # appointmentDateTime is read in the instance's zone: the day before at 10:00 UTC.
    waits = [e["detail"] for e in utc_run if e["type"] == "wait" and e["stepId"] == 20]
    assert waits == [{"until": "2026-10-31T10:00:00Z"}]


# ============================================================================ simulator == engine
ORACLE_CASES = {
    "appointment-sorry-then-confirm": (
        APPOINTMENT_FULL,
        APPOINTMENT,
        "2026-10-20 10:00",
        {60: [("maybe", timedelta(minutes=5)), ("C", timedelta(hours=1))]},
    ),
    "appointment-booked-at-night": (APPOINTMENT_FULL, APPOINTMENT, "2026-10-30 22:00", {}),
    "survey-promoter-after-reminder": (
        SURVEY,
        SURVEY_PARAMS,
        SURVEY_START,
        {60: [("5", timedelta(hours=5))]},
    ),
    "pre-procedure": (PRE_PROCEDURE, PROCEDURE, "2026-11-02 10:00", {}),
    # The timing edge cases: nothing sent for a time already past, or after it.
    "appointment-already-past": (
        APPOINTMENT_FULL,
        {**APPOINTMENT, "appointmentDateTime": "2023-12-01 08:00:00"},
        "2026-10-20 10:00",
        {},
    ),
    "appointment-held-past-an-early-appointment": (
        APPOINTMENT_FULL,
        {**APPOINTMENT, "appointmentDateTime": "2026-11-03 07:30"},
        "2026-11-02 22:00",
        {},
    ),
    "survey-visit-not-started": (SURVEY, SURVEY_PARAMS, "2026-11-02 09:00", {}),
    "pre-procedure-before-the-window-opens": (
        PRE_PROCEDURE,
        {**PROCEDURE, "procedureDateTime": "2026-11-12 05:30"},
        "2026-11-11 22:00",
        {},
    ),
}


def _without_message_ids(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if k != "messageId"}


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(value: datetime) -> str:
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def same_clock_after(server: Any) -> Iterator[None]:
    """These tests move the session server's clock across 2026 (to nights, too); later tests
    find it where it was."""
    before = server.clock.now()
    yield
    server.clock.set(before)


@pytest.mark.usefixtures("same_clock_after")
@pytest.mark.parametrize("case", sorted(ORACLE_CASES))
def test_the_engine_does_what_the_simulator_shows(server: Any, http: Any, case: str) -> None:
    """The simulator is the engine's oracle: the same instance, run by the real server and
    worker on the test clock (replies injected through the API), records the same events at
    the same times and queues the same messages."""
    import sqlalchemy as sa

    from journeys.store.tables import journey_instances, outbox

    path, params, start, reply_plan = ORACLE_CASES[case]
    expected = run(
        path,
        params,
        start,
        replies={step: [Reply(text, delay) for text, delay in plan] for step, plan in reply_plan.items()},
    )

    t = server.tenant(path)
    server.clock.set(local(start).astimezone(UTC))
    body = {"flowId": None, "timeZone": TZ, "instances": [{"parameters": params}]}
    r = http.post(t.url("/bulk"), json=body, headers=t.headers)
    assert r.status_code == 204, r.text
    server.run_worker()
    pending = {step: list(plan) for step, plan in reply_plan.items()}
    ji = journey_instances
    for _ in range(200):
        with server.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    ji.c.instance_id, ji.c.status, ji.c.step_id, ji.c.due_at, ji.c.waiting_reply_phone
                ).where(ji.c.org_id == t.org_id)
            ).one()
        if row.status != "InProgress":
            break
        now = server.clock.now()
        due = row.due_at if row.due_at.tzinfo else row.due_at.replace(tzinfo=UTC)
        if row.waiting_reply_phone and pending.get(row.step_id):
            text, delay = pending[row.step_id].pop(0)
            if now + delay < due:
                server.clock.set(now + delay)
                answer = http.post(
                    f"/api/orgs/{t.org_id}/replies", json={"from": PHONE, "body": text}, headers=t.headers
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["matched"] is True
                server.run_worker()
                continue
        server.clock.set(max(now, due))
        server.run_worker()
    else:
        pytest.fail("the instance did not finish")
    assert row.status == "Completed"

    r = http.get(t.url(f"/{row.instance_id}"), headers=t.headers)
    assert r.status_code == 200, r.text
    # 'started' and 'reply_arrived' are written by the API (the trigger, the inbound SMS), not
    # by the interpreter, so the simulator does not show them.
    recorded = [e for e in r.json()["events"] if e["type"] not in ("started", "reply_arrived")]
    assert [
        (
            _iso(_parse(e["eventDateTime"])),
            e["flowId"],
            e["stepId"],
            e["type"],
            _without_message_ids(e["detail"] or {}),
        )
        for e in recorded
    ] == [
        (e["time"], e["flowId"], e["stepId"], e["type"], _without_message_ids(e["detail"])) for e in expected
    ]

    with server.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                outbox.c.created_at,
                outbox.c.step_id,
                outbox.c.channel,
                outbox.c.to_address,
                outbox.c.subject,
                outbox.c.body,
            )
            .where(outbox.c.org_id == t.org_id)
            .order_by(outbox.c.created_at, outbox.c.step_id)
        ).all()
    assert [(_iso(m.created_at), m.step_id, m.channel, m.to_address, m.subject, m.body) for m in rows] == [
        (e["time"], e["stepId"], e["channel"], e["to"], e.get("subject"), e["body"])
        for e in expected
        if e["type"] in SEND_KINDS
    ]
    assert server.count("outbox", t.org_id) == len(rows)


# ============================================================================ subflows (the engine)
# The simulator runs main flows only; the `rescheduled` subflows run here on the real server.
SUBFLOW_EXAMPLES = {
    # example: (file, parameters, identifier, time parameter, what "<…>-passed" outcome names)
    "appointment-full": (
        APPOINTMENT_FULL,
        APPOINTMENT,
        "appointmentId",
        "appointmentDateTime",
        "appointment",
    ),
    "pre-procedure": (PRE_PROCEDURE, PROCEDURE, "procedureId", "procedureDateTime", "procedure"),
}


def _start_then_move(server: Any, http: Any, example: str, moved_to: str, at: str) -> Any:
    """Start the example's main flow on 2026-10-20 10:00, trigger its `rescheduled` subflow
    at `at` with the new time `moved_to`, and run the worker; return the tenant."""
    path, params, id_name, time_name, _ = SUBFLOW_EXAMPLES[example]
    t = server.tenant(path)
    server.clock.set(local("2026-10-20 10:00").astimezone(UTC))
    body: dict[str, Any] = {"flowId": None, "timeZone": TZ, "instances": [{"parameters": params}]}
    assert http.post(t.url("/bulk"), json=body, headers=t.headers).status_code == 204
    server.run_worker()
    server.clock.set(local(at).astimezone(UTC))
    moved = {id_name: params[id_name], time_name: moved_to}
    body = {"flowId": "rescheduled", "timeZone": TZ, "instances": [{"parameters": moved}]}
    r = http.post(t.url("/bulk"), json=body, headers=t.headers)
    assert r.status_code == 204, r.text
    server.run_worker()
    return t


def _the_instance(http: Any, t: Any) -> dict[str, Any]:
    r = http.post(t.url("/search"), json={}, headers=t.headers)
    assert r.status_code == 200, r.text
    [found] = r.json()
    r = http.get(t.url(f"/{found['id']}"), headers=t.headers)
    assert r.status_code == 200, r.text
    instance: dict[str, Any] = r.json()
    return instance


def _subflow_events(instance: dict[str, Any]) -> list[tuple[int | None, str, dict[str, Any]]]:
    return [(e["stepId"], e["type"], e["detail"]) for e in instance["events"] if e["flowId"] == "rescheduled"]


def _subflow_outbox(server: Any, t: Any) -> int:
    import sqlalchemy as sa

    from journeys.store.tables import outbox

    with server.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(
            outbox.c.org_id == t.org_id, outbox.c.flow_id == "rescheduled"
        )
        return int(conn.execute(query).scalar_one())


@pytest.mark.usefixtures("same_clock_after")
@pytest.mark.parametrize("example", sorted(SUBFLOW_EXAMPLES))
def test_rescheduled_to_a_time_already_past_sends_nothing(server: Any, http: Any, example: str) -> None:
    """Moved to a time already past: no "has moved to" text, and the instance ends with the
    outcome that says why (it used to text the past time and plan its reminders)."""
    t = _start_then_move(server, http, example, "2026-10-21 09:00", "2026-10-21 10:00")
    instance = _the_instance(http, t)
    assert instance["status"] == "Completed"
    assert [(s, k) for s, k, _ in _subflow_events(instance)] == [
        (None, "subflow_started"),
        (200, "branch"),
        (290, "end"),
    ]
    assert _subflow_events(instance)[-1][2] == {"outcome": f"{SUBFLOW_EXAMPLES[example][4]}-passed"}
    assert _subflow_outbox(server, t) == 0


@pytest.mark.usefixtures("same_clock_after")
@pytest.mark.parametrize("example", sorted(SUBFLOW_EXAMPLES))
def test_rescheduled_at_night_to_an_early_time_is_not_texted_after_it(
    server: Any, http: Any, example: str
) -> None:
    """Moved at 22:00 to 05:30 the next morning: the "has moved to" text is held until the send
    window opens (08:00; 06:00 for the procedure), after the new time. send_before skips it,
    and step 207 ends the instance rather than planning reminders for a time gone by."""
    t = _start_then_move(server, http, example, "2026-10-22 05:30", "2026-10-21 22:00")
    instance = _the_instance(http, t)
    assert instance["status"] == "InProgress"
    assert [(s, k) for s, k, _ in _subflow_events(instance)] == [
        (None, "subflow_started"),
        (200, "branch"),
        (205, "send_held"),
    ]
    opening = "2026-10-22 06:00" if example == "pre-procedure" else "2026-10-22 08:00"
    assert _subflow_events(instance)[-1][2] == {
        "until": _iso(local(opening)),
        "reason": "outside the send window",
    }
    server.clock.set(local(opening).astimezone(UTC))
    server.run_worker()
    instance = _the_instance(http, t)
    assert instance["status"] == "Completed"
    assert _subflow_events(instance)[3:] == [
        (205, "sms_skipped", {"reason": f"{SUBFLOW_EXAMPLES[example][3]} has passed"}),
        (207, "branch", {"case": 0, "next": 290}),
        (290, "end", {"outcome": f"{SUBFLOW_EXAMPLES[example][4]}-passed"}),
    ]
    assert _subflow_outbox(server, t) == 0
