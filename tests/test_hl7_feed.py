"""The HL7 v2 SIU feed over real MLLP/TCP, on the suite's database (SQLite or PostgreSQL): every
event in every supported version, acknowledgements checked field by field, and the effects
checked through the API (instances, subflows, cancels)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.databases import own_database
from support.keys import strong_key
from support.mllp import (
    EXAMPLE_JOURNEY,
    Client,
    bind_feed,
    listening,
    mapping_for,
    siu,
)
from support.server import Server, Tenant

from journeys.feeds.listener import Listener

VERSIONS = ("2.3", "2.4", "2.5.1")


@pytest.fixture(scope="module")
def tenant(server: Server) -> Tenant:
    return server.tenant(EXAMPLE_JOURNEY)


@pytest.fixture(scope="module")
def listener(server: Server, tenant: Tenant) -> Iterator[Listener]:
    feed = bind_feed(server.engine, mapping_for(tenant.org_id, tenant.journey_id))
    with listening(server.engine, feed, server.app.state.vault, server.clock) as running:
        yield running


def _find(server: Server, tenant: Tenant, appointment: str) -> list[dict[str, Any]]:
    body = {
        "filterSpecification": {
            "type": "JourneyParameterSpecification",
            "parameterName": "appointmentId",
            "operator": "equals",
            "rightOperand": appointment,
        },
        "includeParameters": True,
    }
    r = server.http.post(tenant.url("/search"), json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return list(r.json())


def _one(server: Server, tenant: Tenant, appointment: str) -> dict[str, Any]:
    found = _find(server, tenant, appointment)
    assert len(found) == 1, found
    r = server.http.get(tenant.url(f"/{found[0]['id']}"), headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _kinds(detail: dict[str, Any]) -> list[str]:
    return [e["type"] for e in detail["events"]]


@pytest.mark.parametrize("version", VERSIONS)
def test_book_reschedule_no_show_and_cancel_in_each_version(
    server: Server, tenant: Tenant, listener: Listener, version: str
) -> None:
    appt = f"V{version}-1"
    with Client(listener.port or 0) as c:
        booked = c.send(siu("S12", f"{version}-a", appt, version=version))
        assert (booked.code, booked.control_id) == ("AA", f"{version}-a")
        assert booked.text.startswith("started instance ")
        msh = booked.segment("MSH")
        assert msh[2:6] == ["JOURNEYS", "TEST", "EPIC", "MAINCLINIC"]  # sender and receiver swapped
        assert msh[8].startswith("ACK^S12") and msh[11] == version
        detail = _one(server, tenant, appt)
        assert detail["status"] == "InProgress"
        assert detail["parameters"] == {
            "appointmentId": appt,
            "patientId": "MRN1",
            "patientName": "John Smith",
            "phoneNumber": "+13125550123",
            # 2.4 sends 09:30 at -06:00, which is 09:30 in Chicago in December
            "appointmentDateTime": "2030-12-02T09:30:00",
        }
        assert booked.text == f"started instance {detail['id']}"

        same = c.send(siu("S13", f"{version}-b", appt, version=version))
        assert same.code == "AA" and "no mapped parameter changed" in same.text
        moved = c.send(siu("S13", f"{version}-c", appt, version=version, start="20301203110000"))
        assert moved.code == "AA" and moved.text == f"started subflow rescheduled on instance {detail['id']}"
        detail = _one(server, tenant, appt)
        assert detail["parameters"]["appointmentDateTime"] == "2030-12-03T11:00:00"
        assert _kinds(detail).count("subflow_started") == 1

        missed = c.send(siu("S26", f"{version}-d", appt, version=version, start="20301203110000"))
        assert missed.code == "AA" and "no-show" in missed.text
        detail = _one(server, tenant, appt)
        started = [e for e in detail["events"] if e["type"] == "subflow_started"]
        assert [e["flowId"] for e in started] == ["rescheduled", "no-show"]

        cancelled = c.send(siu("S15", f"{version}-e", appt, version=version))
        assert cancelled.code == "AA" and cancelled.text == f"cancelled instance {detail['id']}"
        assert _one(server, tenant, appt)["status"] == "Cancelled"
        again = c.send(siu("S17", f"{version}-f", appt, version=version))
        assert again.code == "AA" and "nothing to cancel" in again.text


def test_a_redelivered_message_is_acknowledged_the_same_and_applied_once(
    server: Server, tenant: Tenant, listener: Listener
) -> None:
    with Client(listener.port or 0) as c:
        first = c.send(siu("S12", "dup-1", "DUP-1"))
        second = c.send(siu("S12", "dup-1", "DUP-1"))
        assert first.code == second.code == "AA"
        assert first.text == second.text and first.control_id == second.control_id == "dup-1"
    with Client(listener.port or 0) as c:  # on another connection, too
        assert c.send(siu("S12", "dup-1", "DUP-1")).text == first.text
        # the same control id from another sender is another message
        other = c.send(siu("S12", "dup-1", "DUP-1", sender=("CERNER", "NORTH")))
        assert other.code == "AA" and "already active" in other.text
        # a cancel redelivered after the instance was cancelled answers as it did the first time
        cancel = c.send(siu("S15", "dup-2", "DUP-1"))
        assert c.send(siu("S15", "dup-2", "DUP-1")).text == cancel.text == first.text.replace(
            "started", "cancelled"
        )
    assert len(_find(server, tenant, "DUP-1")) == 1


def test_another_booking_of_an_active_appointment_starts_nothing(
    server: Server, tenant: Tenant, listener: Listener
) -> None:
    with Client(listener.port or 0) as c:
        first = c.send(siu("S12", "twice-1", "TWICE"))
        second = c.send(siu("S12", "twice-2", "TWICE"))
    assert second.code == "AA" and "already active" in second.text
    assert len(_find(server, tenant, "TWICE")) == 1 and first.code == "AA"


def test_a_reschedule_of_an_unknown_appointment_starts_it_and_a_no_show_is_ignored(
    server: Server, tenant: Tenant, listener: Listener
) -> None:
    with Client(listener.port or 0) as c:
        moved = c.send(siu("S13", "late-1", "LATE-1"))
        assert moved.code == "AA" and moved.text.startswith("started instance")
        missed = c.send(siu("S26", "late-2", "LATE-2"))
        assert missed.code == "AA" and "no active instance" in missed.text
    assert len(_find(server, tenant, "LATE-1")) == 1
    assert _find(server, tenant, "LATE-2") == []


@pytest.mark.parametrize(
    ("message", "code", "error", "reason"),
    [
        (siu("S12", "v-1", "BADV", version="2.6"), "AR", "203", "HL7 version 2.6 is not supported"),
        (siu("S12", "v-2", "BADV", version="2.2"), "AR", "203", "HL7 version 2.2 is not supported"),
        (siu("S18", "e-1", "BADE"), "AR", "201", "event S18 is not handled by feed scheduling"),
        (
            b"MSH|^~\\&|EPIC|MAIN|J|T|20301201||ADT^A01|e-2|P|2.5.1\rPID|1||X\r",
            "AR",
            "200",
            "message type ADT is not handled",
        ),
        (b"MSH|^~\\&|EPIC|MAIN|J|T|20301201||SIU^S12||P|2.5.1\r", "AR", "101", "MSH-10"),
        (b"PID|1||MRN1||SMITH^JOHN\r", "AR", "100", "does not start with an MSH segment"),
        (b"MSH|^~\\&|EP", "AR", "101", "MSH-10 (the message control id) is empty"),  # truncated
        (siu("S12", "t-1", "TRUNC")[:120], "AE", "101", "patientName: required parameter is missing"),
    ],
)
def test_messages_that_cannot_be_taken_are_rejected_and_write_nothing(
    server: Server, tenant: Tenant, listener: Listener, message: bytes, code: str, error: str, reason: str
) -> None:
    before = server.count("journey_instances", tenant.org_id), server.count("feed_messages", tenant.org_id)
    with Client(listener.port or 0) as c:
        ack = c.send(message)
    assert ack.code == code and reason in ack.text
    err = ack.segment("ERR")
    assert err and error in "|".join(err)
    after = server.count("journey_instances", tenant.org_id), server.count("feed_messages", tenant.org_id)
    assert after == before


def test_a_message_with_bad_values_gets_ae_naming_the_field_not_the_value(
    server: Server, tenant: Tenant, listener: Listener
) -> None:
    with Client(listener.port or 0) as c:
        bad_time = c.send(siu("S12", "bad-1", "BAD-1", start="2030120X0930"))
        no_id = c.send(siu("S12", "bad-2", ""))
        no_name = c.send(siu("S12", "bad-3", "BAD-3", family="", given=""))
    assert bad_time.code == "AE" and bad_time.text.startswith("AIS-4 is not an HL7 date/time")
    assert "2030120X" not in bad_time.raw
    assert bad_time.segment("ERR")[3].startswith("102^")  # 2.5.1: ERR-3, the error code
    assert no_id.code == "AE" and "appointmentId (SCH-2.1) empty" in no_id.text
    assert no_name.code == "AE" and "patientName: required parameter is missing" in no_name.text
    for appt in ("BAD-1", "BAD-3"):
        assert _find(server, tenant, appt) == []


def test_a_value_the_journey_refuses_is_named_by_its_field(server: Server) -> None:
    """The journey's own validation (here: a 60,000-character name) answers AE, the message
    quoting the field the value came from, never the value."""
    t = server.tenant(EXAMPLE_JOURNEY)
    feed = bind_feed(server.engine, mapping_for(t.org_id, t.journey_id))
    with listening(server.engine, feed, server.app.state.vault, server.clock) as running:
        with Client(running.port or 0) as c:
            ack = c.send(siu("S12", "long-1", "LONG-1", given="A" * 60_000))
    assert ack.code == "AE" and "patientName: is too long" in ack.text and "AAAA" not in ack.raw


def test_filters_leave_appointments_out(server: Server, tenant: Tenant, listener: Listener) -> None:
    with Client(listener.port or 0) as c:
        lab = c.send(siu("S12", "f-1", "FILT-1", location="LAB"))
        block = c.send(siu("S12", "f-2", "FILT-2", kind="block"))
    assert lab.code == block.code == "AA"
    assert "locations filter" in lab.text and "appointment_types filter" in block.text
    assert _find(server, tenant, "FILT-1") == [] and _find(server, tenant, "FILT-2") == []


def test_framing_problems(server: Server, tenant: Tenant, listener: Listener) -> None:
    port = listener.port or 0
    with Client(port) as c:
        # bytes before the start block are skipped; the frame after them is taken
        c.send_raw(b"garbage\r\n")
        assert c.send(siu("S12", "frm-1", "FRM-1")).code == "AA"
        # an end block without its carriage return: AR, and the connection goes on
        c.send_raw(b"\x0b" + siu("S12", "frm-2", "FRM-2") + b"\x1cX")
        bad = c.read_ack()
        assert bad is not None and bad.code == "AR" and "0x1C is not followed by 0x0D" in bad.text
        assert c.send(siu("S12", "frm-3", "FRM-3")).code == "AA"
    assert _find(server, tenant, "FRM-2") == []
    # a frame cut off by the connection closing is dropped, never applied
    with Client(port) as c:
        c.send_raw(b"\x0b" + siu("S12", "frm-4", "FRM-4")[:-40])
    with Client(port) as c:
        assert c.send(siu("S12", "frm-5", "FRM-5")).code == "AA"
    assert _find(server, tenant, "FRM-4") == []


def test_a_frame_over_the_limit_is_rejected_and_the_connection_closed(server: Server, tenant: Tenant) -> None:
    feed = bind_feed(server.engine, mapping_for(tenant.org_id, tenant.journey_id))
    with listening(server.engine, feed, server.app.state.vault, server.clock, max_frame_bytes=2000) as small:
        with Client(small.port or 0) as c:
            c.send_raw(b"\x0b" + b"MSH|" + b"x" * 5000 + b"\x1c\r")
            ack = c.read_ack()
            assert ack is not None and ack.code == "AR" and "larger than the limit" in ack.text
            assert c.read_ack() is None  # closed


def test_messages_on_one_connection_apply_in_order_across_ten_connections(
    server: Server, tenant: Tenant, listener: Listener
) -> None:
    """1,000 messages over 10 concurrent connections: on each, 50 appointments are booked and
    then each is rescheduled (even) or cancelled (odd) on the same connection."""
    acks: dict[int, list[Any]] = {}

    def connection(n: int) -> None:
        got = []
        with Client(listener.port or 0) as c:
            for k in range(50):
                got.append(c.send(siu("S12", f"bulk-{n}-{k}-a", f"BULK-{n}-{k}", mrn=f"M{n}-{k}")))
                later = siu("S13", f"bulk-{n}-{k}-b", f"BULK-{n}-{k}", start="20301205100000")
                got.append(c.send(later if k % 2 == 0 else siu("S15", f"bulk-{n}-{k}-b", f"BULK-{n}-{k}")))
        acks[n] = got

    threads = [threading.Thread(target=connection, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    every = [a for n in range(10) for a in acks[n]]
    assert len(every) == 1000
    assert all(a.code == "AA" for a in every), {a.text for a in every if a.code != "AA"}
    assert [a.control_id for a in acks[3][:2]] == ["bulk-3-0-a", "bulk-3-0-b"]
    moved = sum(a.text.startswith("started subflow") for a in every)
    cancelled = sum(a.text.startswith("cancelled") for a in every)
    assert (moved, cancelled) == (250, 250)
    for n, k in ((0, 0), (9, 49), (4, 21)):
        detail = _one(server, tenant, f"BULK-{n}-{k}")
        assert detail["status"] == ("InProgress" if k % 2 == 0 else "Cancelled")


def test_the_feed_is_the_audited_actor(server: Server, tenant: Tenant, listener: Listener) -> None:
    from journeys.accounts.audit import export
    from journeys.store.db import read_only

    with Client(listener.port or 0) as c:
        booked = c.send(siu("S12", "aud-1", "AUD-1"))
        c.send(siu("S15", "aud-2", "AUD-1"))
    iid = booked.text.rsplit(" ", 1)[1]
    with read_only(server.engine) as conn:
        mine = [r.entry for r in export(conn, tenant.org_id) if iid in r.entry.target_ids]
    assert [(e.actor_kind.value, e.actor_id, e.action.value) for e in mine] == [
        ("feed", "scheduling", "instances.trigger"),
        ("feed", "scheduling", "instances.cancel"),
    ]


def test_no_field_of_a_message_reaches_a_log(
    server: Server, tenant: Tenant, listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with Client(listener.port or 0) as c:
        c.send(siu("S12", "phi-1", "PHI-APPT-1", family="ZEBULONSKI", given="QUENTIN", phone="3125559876"))
        c.send(siu("S12", "phi-2", "PHI-APPT-2", family="ZEBULONSKI", start="2030BAD"))
        c.send(siu("S99", "phi-3", "PHI-APPT-3", family="ZEBULONSKI"))
        c.send_raw(b"junk-ZEBULONSKI")
        assert c.send(siu("S15", "phi-4", "PHI-APPT-1")).code == "AA"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "phi-1" in text and "phi-4" in text  # control ids are logged
    for secret in ("ZEBULONSKI", "Zebulonski", "QUENTIN", "5559876", "PHI-APPT", "2030BAD"):
        assert secret not in text


def test_the_listener_refuses_nothing_it_cannot_read(listener: Listener) -> None:
    """A connection that sends nothing and closes, or a half-open one, costs nothing."""
    s = socket.create_connection(("127.0.0.1", listener.port or 0))
    s.close()
    with Client(listener.port or 0) as c:
        c.send_raw(b"\x0b")
    with Client(listener.port or 0) as c:
        ack = c.send(b"\x00\x01\x02")
        assert ack.code == "AR"


def test_an_encrypted_org_is_fed_the_same_way(database_url: str) -> None:
    """With patient data sealed, the feed still finds the appointment (blind index) and tells a
    changed time from an unchanged one (the stored parameters opened)."""
    srv = Server(database_url, secret_key=strong_key("hl7-feed"))
    try:
        t = srv.tenant(EXAMPLE_JOURNEY)
        feed = bind_feed(srv.engine, mapping_for(t.org_id, t.journey_id))
        with listening(srv.engine, feed, srv.app.state.vault, srv.clock) as running:
            with Client(running.port or 0) as c:
                assert c.send(siu("S12", "enc-1", "ENC-1", family="SEALED")).code == "AA"
                same = c.send(siu("S13", "enc-2", "ENC-1", family="SEALED"))
                moved = c.send(siu("S13", "enc-3", "ENC-1", family="SEALED", start="20301209120000"))
                gone = c.send(siu("S15", "enc-4", "ENC-1"))
        assert "no mapped parameter changed" in same.text
        assert moved.text.startswith("started subflow rescheduled") and gone.text.startswith("cancelled")
        detail = _one(srv, t, "ENC-1")
        assert detail["parameters"]["patientName"] == "John Sealed"
        assert detail["status"] == "Cancelled"
        with srv.engine.connect() as conn:
            stored = conn.exec_driver_sql(
                "SELECT parameters FROM journey_instances WHERE instance_id = ?"
                if srv.engine.dialect.name == "sqlite"
                else "SELECT parameters FROM journey_instances WHERE instance_id = %s",
                (detail["id"],),
            ).scalar_one()
        assert "Sealed" not in stored and "ENC-1" not in stored
    finally:
        srv.stop()


def test_applied_messages_are_remembered_for_thirty_days(tmp_path: Path) -> None:
    """The worker's retention sweep forgets a feed's applied messages after 30 days: a
    redelivery within them is acknowledged as the first delivery was, a later one is new."""
    from datetime import timedelta

    from journeys.lifecycle.retention import RetentionSweep

    with own_database(tmp_path) as url:
        srv = Server(url)
        try:
            t = srv.tenant(EXAMPLE_JOURNEY)
            feed = bind_feed(srv.engine, mapping_for(t.org_id, t.journey_id))
            with listening(srv.engine, feed, srv.app.state.vault, srv.clock) as running:
                with Client(running.port or 0) as c:
                    c.send(siu("S12", "old-1", "OLD-1"))
                    sweep = RetentionSweep(srv.engine, 365, timedelta(hours=1), 500)
                    sweep.sweep(srv.clock.now() + timedelta(days=29))
                    assert srv.count("feed_messages", t.org_id) == 1
                    sweep.sweep(srv.clock.now() + timedelta(days=31))
                    assert srv.count("feed_messages", t.org_id) == 0
                    again = c.send(siu("S12", "old-1", "OLD-1"))
            assert again.code == "AA" and "already active" in again.text  # new, and still applied once
        finally:
            srv.stop()
