"""Reading SIU fields into parameter values, and writing acknowledgements: names, phone numbers,
times with and without offsets, escapes, and each version's ERR segment. No database."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from journeys.feeds import ack as acks
from journeys.feeds.mapping import Source, load_mapping_text
from journeys.feeds.siu import parse_message, parse_ref
from journeys.feeds.transforms import parse_ts, read_source

pytestmark = pytest.mark.same_on_every_database
CHICAGO = ZoneInfo("America/Chicago")
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _msg(*segments: str, version: str = "2.5.1") -> bytes:
    head = f"MSH|^~\\&|EPIC|MAIN|J|T|20300101||SIU^S12^SIU_S12|C1|P|{version}"
    return ("\r".join([head, *segments]) + "\r").encode("utf-8")


def _read(src: Source, *segments: str) -> str:
    return read_source(parse_message(_msg(*segments)), src, CHICAGO, "US")[0]


def _src(field: str | list[str], transform: str = "text", **kw: str) -> Source:
    refs = [field] if isinstance(field, str) else field
    return Source(tuple(r for r in (parse_ref(f) for f in refs) if r is not None), transform, **kw)


def test_names_are_formatted_and_cased() -> None:
    pid = "PID|1||M1||O'BRIEN-SMITH^MARY ANNE^K^JR^DR"
    assert _read(_src("PID-5", "name", case="title"), pid) == "Mary Anne O'brien-smith"
    listed = _src("PID-5", "name", format="{family}, {given} {middle}")
    assert _read(listed, pid) == "O'BRIEN-SMITH, MARY ANNE K"
    assert _read(_src("PID-5", "name", format="{prefix} {family} {suffix}"), pid) == "DR O'BRIEN-SMITH JR"
    assert _read(_src("PID-5.2"), pid) == "MARY ANNE"
    assert _read(_src("PID-5", "name"), "PID|1||M1||^^") == ""  # empty parts leave no stray spaces


def test_escaped_text_is_unescaped() -> None:
    assert _read(_src("PID-5.1"), "PID|1||M1||SMITH \\T\\ SONS\\F\\X^JO") == "SMITH & SONS|X"


def test_the_mobile_number_is_preferred_and_emails_and_faxes_are_skipped() -> None:
    pid = (
        "PID|1||M1||S^J||||||||^NET^Internet^a@b.example~^PRN^FX^^1^312^5550100"
        "~^PRN^PH^^1^312^5550123~^ORN^CP^^1^773^5550199"
    )
    assert _read(_src("PID-13", "phone"), pid) == "+17735550199"
    assert _read(_src("PID-13", "email"), pid) == "a@b.example"
    # 2.3's formatted text in XTN-1, and 2.5's unformatted number in XTN-12
    assert _read(_src("PID-13", "phone"), "PID|1||M1||S^J||||||||(312)555-0177") == "+13125550177"
    unformatted = "PID|1||M1||S^J||||||||^PRN^PH^^^^^^^^^+442071838750"
    assert _read(_src("PID-13", "phone"), unformatted) == "+442071838750"
    # nothing usable in PID-13: PID-14 is tried next
    both = "PID|1||M1||S^J||||||||12^PRN^PH|^WPN^PH^^1^312^5550111"
    assert _read(_src(["PID-13", "PID-14"], "phone"), both) == "+13125550111"
    assert _read(_src("PID-13", "phone"), "PID|1||M1||S^J||||||||12") == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203012020930", "2030-12-02T09:30:00"),
        ("20301202093015", "2030-12-02T09:30:15"),
        ("20301202093015.1234", "2030-12-02T09:30:15"),
        ("20301202", "2030-12-02T00:00:00"),
        ("20300612093000-0500", "2030-06-12T09:30:00"),  # CDT: the same wall time
        ("20301202153000+0000", "2030-12-02T09:30:00"),  # UTC, read in Chicago
        # a wall time in the spring-forward gap stays as sent: the journey reads it as 03:30 CDT
        ("20300310023000", "2030-03-10T02:30:00"),
    ],
)
def test_hl7_times(text: str, expected: str) -> None:
    moment = parse_ts(text, CHICAGO)
    assert moment is not None
    assert moment.astimezone(CHICAGO).strftime("%Y-%m-%dT%H:%M:%S") == expected


@pytest.mark.parametrize("text", ["2030120", "20301302", "20301202x", "203012020930+2500", "", "20301232"])
def test_bad_hl7_times(text: str) -> None:
    assert parse_ts(text, CHICAGO) is None


def test_ack_segments_per_version() -> None:
    old = parse_message(_msg(version="2.3")).header
    new = parse_message(_msg()).header
    reason = acks.error("AIS-4 is not | a ^ time", "102")
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    old_ack = acks.encode(reason, old, at).decode().split("\r")
    new_ack = acks.encode(reason, new, at).decode().split("\r")
    assert old_ack[0].startswith("MSH|^~\\&|J|T|EPIC|MAIN|20300102030405||ACK^S12^ACK|")
    assert old_ack[0].endswith("|P|2.3")
    assert old_ack[1] == "MSA|AE|C1|AIS-4 is not \\F\\ a \\S\\ time"
    assert old_ack[2] == "ERR|^^^102&Data type error&HL70357"
    assert new_ack[2] == "ERR|||102^Data type error^HL70357|E||||AIS-4 is not \\F\\ a \\S\\ time"
    assert acks.encode(acks.accept("ok"), new, at).decode().split("\r")[2] == ""  # AA: no ERR


def test_an_unreadable_message_gets_an_ack_all_the_same() -> None:
    out = acks.encode(acks.reject("the message does not start with an MSH segment", "100"), None, NOW)
    lines = out.decode().split("\r")
    assert lines[0].startswith("MSH|^~\\&|JOURNEYS||||20300101000000||ACK|") and lines[0].endswith("|P|2.5.1")
    assert lines[1] == "MSA|AR||the message does not start with an MSH segment"


def test_mapping_defaults() -> None:
    m = load_mapping_text(
        "feed: f\norg: o\njourney: j\ntime_zone: UTC\nparameters: {appointmentId: SCH-2}\n"
        "events: {S13: {subflow: moved}, S26: {subflow: missed}}\n"
    )
    assert m.phone_region == "US"
    assert [e for e, _ in m.events] == ["S12", "S13", "S15", "S17", "S26"]
    s13, s26 = m.action("S13"), m.action("S26")
    assert s13 is not None and (s13.when_missing, s13.changes_only) == ("start", True)
    assert s26 is not None and (s26.when_missing, s26.changes_only) == ("ignore", False)
    assert m.action("S14") is None
