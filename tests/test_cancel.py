"""DELETE …/instances/{id}/execution and GET …/instances/{id}: cancelling, its guarantees (no
further step, no queued message goes out), the timeline, and the errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from httpx import Client
from support.api import bulk
from support.server import EXAMPLE, Server, Tenant

from journeys.engine.worker import Worker
from journeys.store.db import read_only
from journeys.store.tables import outbox

CHICAGO = ZoneInfo("America/Chicago")
INSTANCE_KEYS = {
    "id",
    "journeyBotName",
    "createdDateTime",
    "startDateTime",
    "journeyBatchId",
    "status",
    "lastStepExecuted",
    "parameters",
    "events",
}
EVENT_KEYS = {"eventDateTime", "flowId", "flowName", "stepId", "type", "detail"}

FRAGILE = """\
name: Fragile
parameters:
  - name: caseId
    type: string
    identifier: true
  - name: when
    type: datetime
    required: false
flows:
  - id: main
    name: Main Flow
    main: true
    steps:
      - id: 10
        type: wait_until
        parameter: when
        before: 1h
      - id: 20
        type: end
"""


# ---------------------------------------------------------------- helpers
def local(moment: datetime) -> str:
    return moment.astimezone(CHICAGO).strftime("%Y-%m-%d %H:%M:%S")


def parse_z(value: str) -> datetime:
    assert isinstance(value, str) and value.endswith("Z"), value
    return datetime.fromisoformat(value[:-1] + "+00:00")


def patient(n: int, appointment: str, phone: str | None = None, name: str | None = None) -> dict[str, Any]:
    p = {
        "patientId": f"{100000 + n}",
        "patientName": name or f"Patient Number{n}",
        "appointmentId": f"APT-{n:05d}",
        "appointmentDateTime": appointment,
    }
    if phone is not None:
        p["phoneNumber"] = phone
    return {"parameters": p}


def trigger(http: Client, tenant: Tenant, instances: list[dict[str, Any]]) -> list[str]:
    """Start the main flow for `instances`; returns their ids in the order given."""
    bulk(http, tenant, instances)
    ids = []
    for inst in instances:
        spec = {
            "type": "JourneyParameterSpecification",
            "parameterName": "appointmentId",
            "operator": "equals",
            "rightOperand": inst["parameters"]["appointmentId"],
        }
        r = http.post(
            tenant.url("/search"),
            json={
                "filterSpecification": {
                    "type": "AndSpecification",
                    "specifications": [spec, {"type": "JourneyStatusSpecification", "status": "InProgress"}],
                }
            },
            headers=tenant.headers,
        )
        assert r.status_code == 200, r.text
        (found,) = r.json()
        ids.append(found["id"])
    return ids


def get(http: Client, tenant: Tenant, instance_id: str) -> dict[str, Any]:
    r = http.get(tenant.url(f"/{instance_id}"), headers=tenant.headers)
    assert r.status_code == 200, r.text
    return r.json()


def cancel(http: Client, tenant: Tenant, instance_id: str, expect: int = 204) -> Any:
    r = http.delete(tenant.url(f"/{instance_id}/execution"), headers=tenant.headers)
    assert r.status_code == expect, r.text
    if expect == 204:
        assert r.content == b""
        return None
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def outbox_rows(server: Server, org_id: str) -> list[dict[str, Any]]:
    with read_only(server.engine) as conn:
        q = sa.select(outbox).where(outbox.c.org_id == org_id).order_by(outbox.c.created_at, outbox.c.step_id)
        return [dict(r) for r in conn.execute(q).mappings()]


# ---------------------------------------------------------------- cancel
def test_cancel_in_progress_instance(server: Server, http: Client, tenant: Tenant) -> None:
    appointment = local(server.clock.now() + timedelta(days=5))
    (iid,) = trigger(http, tenant, [patient(1, appointment, phone="+1 312 555 0101")])
    server.run_worker()
    before = get(http, tenant, iid)
    assert before["status"] == "InProgress"
    events_before = server.count("instance_events", tenant.org_id)

    server.clock.advance(timedelta(minutes=1))
    cancelled_at = server.clock.now()
    cancel(http, tenant, iid)
    after = get(http, tenant, iid)
    assert after["status"] == "Cancelled"
    assert server.count("instance_events", tenant.org_id) == events_before + 1
    assert [e["type"] for e in after["events"]][:-1] == [e["type"] for e in before["events"]]
    last = after["events"][-1]
    assert last == {
        "eventDateTime": last["eventDateTime"],
        "flowId": None,
        "flowName": None,
        "stepId": None,
        "type": "cancelled",
        "detail": {"by": "api"},
    }
    assert parse_z(last["eventDateTime"]) == cancelled_at
    # Cancelling records no step: lastStepExecuted still names the last step that ran.
    assert after["lastStepExecuted"] == before["lastStepExecuted"]
    assert after["lastStepExecuted"]["stepId"] == 20

    # Again: 204, and nothing new is recorded.
    cancel(http, tenant, iid)
    assert get(http, tenant, iid) == after
    assert server.count("instance_events", tenant.org_id) == events_before + 1
    assert server.count("journey_instances", tenant.org_id) == 1

    r = http.post(
        tenant.url("/search"),
        json={"filterSpecification": {"type": "JourneyStatusSpecification", "status": "Cancelled"}},
        headers=tenant.headers,
    )
    assert [i["id"] for i in r.json()] == [iid]

    # The identifier is free again: the same appointment can start a new instance.
    (again,) = trigger(http, tenant, [patient(1, appointment, phone="+1 312 555 0101")])
    assert again != iid
    assert server.count("journey_instances", tenant.org_id) == 2
    assert get(http, tenant, iid)["status"] == "Cancelled"


def test_cancel_before_the_worker_ran(server: Server, http: Client, tenant: Tenant) -> None:
    appointment = local(server.clock.now() + timedelta(days=5))
    (iid,) = trigger(http, tenant, [patient(1, appointment, phone="+1 312 555 0101")])
    cancel(http, tenant, iid)
    server.run_worker()
    inst = get(http, tenant, iid)
    assert inst["status"] == "Cancelled"
    assert inst["lastStepExecuted"] is None
    assert [e["type"] for e in inst["events"]] == ["started", "cancelled"]
    assert server.count("outbox", tenant.org_id) == 0


def test_cancel_unknown_id_is_404(server: Server, http: Client, tenant: Tenant) -> None:
    unknown = "01234567-89ab-7cde-8f01-23456789abcd"
    assert cancel(http, tenant, unknown, 404) == [f"instance {unknown} not found"]
    assert cancel(http, tenant, "not-an-id", 404) == ["instance not-an-id not found"]
    assert server.count("instance_events", tenant.org_id) == 0


def test_cancel_completed_instance_is_409(server: Server, http: Client, tenant: Tenant) -> None:
    (iid,) = trigger(http, tenant, [patient(1, "2023-12-01 08:00:00")])  # every wait is past
    server.run_worker()
    done = get(http, tenant, iid)
    assert done["status"] == "Completed"
    events = server.count("instance_events", tenant.org_id)
    assert cancel(http, tenant, iid, 409) == [f"instance {iid} is Completed and can no longer be cancelled"]
    assert get(http, tenant, iid) == done
    assert server.count("instance_events", tenant.org_id) == events


def test_cancel_failed_instance_is_409(server: Server, http: Client) -> None:
    tenant = server.tenant(FRAGILE)
    # `when` is optional, but the wait_until step needs it: the step fails and so does the instance.
    body = {"flowId": None, "timeZone": "UTC", "instances": [{"parameters": {"caseId": "C-1"}}]}
    r = http.post(tenant.url("/bulk"), json=body, headers=tenant.headers)
    assert r.status_code == 204, r.text
    r = http.post(tenant.url("/search"), json={}, headers=tenant.headers)
    (found,) = r.json()
    server.run_worker()
    failed = get(http, tenant, found["id"])
    assert failed["status"] == "Failed"
    assert failed["events"][-1]["type"] == "failed"
    assert cancel(http, tenant, found["id"], 409) == [
        f"instance {found['id']} is Failed and can no longer be cancelled"
    ]
    assert get(http, tenant, found["id"]) == failed


def test_no_further_step_runs_after_cancel(server: Server, http: Client, tenant: Tenant) -> None:
    start = server.clock.now()
    appointment_at = start + timedelta(days=2)
    appointment = local(appointment_at)
    cancelled_id, control_id = trigger(
        http,
        tenant,
        [
            patient(1, appointment, phone="+1 312 555 0101"),
            patient(2, appointment, phone="+1 312 555 0102"),
        ],
    )
    server.run_worker()  # both: step 10 sends, step 20 waits until 24h before the appointment
    sent = outbox_rows(server, tenant.org_id)
    assert sorted((m["instance_id"], m["step_id"], m["status"]) for m in sent) == sorted(
        [(cancelled_id, 10, "sent"), (control_id, 10, "sent")]
    )

    server.clock.advance(timedelta(minutes=5))
    cancelled_at = server.clock.now()
    cancel(http, tenant, cancelled_id)
    events_at_cancel = get(http, tenant, cancelled_id)["events"]
    assert events_at_cancel[-1]["type"] == "cancelled"

    server.clock.set(appointment_at + timedelta(hours=3))  # past every wait of the journey
    server.run_worker()

    after = get(http, tenant, cancelled_id)
    assert after["status"] == "Cancelled"
    assert after["events"] == events_at_cancel
    assert after["lastStepExecuted"]["stepId"] == 20

    control = get(http, tenant, control_id)
    assert control["status"] == "Completed"
    assert [(e["type"], e["stepId"]) for e in control["events"]] == [
        ("started", None),
        ("sms_queued", 10),
        ("wait", 20),
        ("sms_queued", 30),
        ("wait_skipped", 40),
        ("end", 50),
    ]

    messages = outbox_rows(server, tenant.org_id)
    mine = [m for m in messages if m["instance_id"] == cancelled_id]
    assert [(m["step_id"], m["status"]) for m in mine] == [(10, "sent")]
    assert all(m["created_at"] <= cancelled_at and m["sent_at"] <= cancelled_at for m in mine)
    theirs = [m for m in messages if m["instance_id"] == control_id]
    assert [(m["step_id"], m["status"]) for m in theirs] == [(10, "sent"), (30, "sent")]
    assert server.count("outbox", tenant.org_id) == 3


def test_built_in_outbox_records_the_message_in_the_batch_that_queued_it(
    server: Server, http: Client, tenant: Tenant
) -> None:
    """With no provider configured, the built-in outbox is the destination: a message is
    recorded as sent in the transaction that queued it, so a cancel afterwards has nothing left
    to drop (with a provider, a queued message is dropped: see test_channels_e2e)."""
    server.run_worker()
    appointment = local(server.clock.now() + timedelta(days=5))
    [iid] = trigger(http, tenant, [patient(1, appointment, phone="+1 312 555 0101")])
    result = Worker(server.engine, server.clock, batch_size=10_000).run_batch()
    assert result.claimed >= 1
    [row] = outbox_rows(server, tenant.org_id)
    assert (row["instance_id"], row["step_id"], row["status"], row["provider"]) == (iid, 10, "sent", "outbox")
    assert row["sent_at"] == server.clock.now()

    cancel(http, tenant, iid)
    [row] = outbox_rows(server, tenant.org_id)
    assert row["status"] == "sent" and row["last_error"] is None
    events = get(http, tenant, iid)["events"]
    assert [(e["type"], e["stepId"]) for e in events] == [
        ("started", None),
        ("sms_queued", 10),
        ("wait", 20),
        ("cancelled", None),
    ]


def test_cancel_auth(server: Server, http: Client, tenant: Tenant) -> None:
    appointment = local(server.clock.now() + timedelta(days=5))
    (iid,) = trigger(http, tenant, [patient(1, appointment)])
    url = tenant.url(f"/{iid}/execution")

    r = http.delete(url)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json() == ["missing bearer token (Authorization: Bearer <token>)"]
    r = http.delete(url, headers={"Authorization": "Bearer not-a-real-token"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")

    read_only_token = server.new_token(tenant.org_id, scopes=["read.journey_instances"])
    r = http.delete(url, headers={"Authorization": f"Bearer {read_only_token}"})
    assert r.status_code == 403
    assert r.json() == ["this token lacks the create.journey_instances scope"]

    other = server.tenant()
    r = http.delete(url, headers=other.headers)
    assert r.status_code == 404
    assert r.json() == [f"org {tenant.org_id} not found"]
    # Another org's instance through this org's own journey: not found either.
    r = http.delete(other.url(f"/{iid}/execution"), headers=other.headers)
    assert r.status_code == 404
    assert r.json() == [f"instance {iid} not found"]

    assert get(http, tenant, iid)["status"] == "InProgress"
    assert server.count("instance_events", tenant.org_id) == 1  # only "started"

    create_only = server.new_token(tenant.org_id, scopes=["create.journey_instances"])
    r = http.get(tenant.url(f"/{iid}"), headers={"Authorization": f"Bearer {create_only}"})
    assert r.status_code == 403
    assert r.json() == ["this token lacks the read.journey_instances scope"]
    r = http.delete(url, headers={"Authorization": f"Bearer {create_only}"})
    assert r.status_code == 204
    assert get(http, tenant, iid)["status"] == "Cancelled"


# ---------------------------------------------------------------- GET one instance
def test_get_instance_shape_and_timeline(server: Server, http: Client, tenant: Tenant) -> None:
    triggered_at = server.clock.now()
    appointment_at = triggered_at + timedelta(days=5)
    appointment = local(appointment_at)
    parameters = {
        "patientId": "100042",
        "patientName": "Zebulon Quixote",
        "appointmentId": "77-QQQ-00042",
        "appointmentDateTime": appointment,
        "phoneNumber": "+1 312 555 0199",
    }
    (iid,) = trigger(http, tenant, [{"parameters": parameters}])

    fresh = get(http, tenant, iid)
    assert set(fresh) == INSTANCE_KEYS
    assert fresh["id"] == iid
    assert fresh["journeyBotName"] == "Appointment Reminder"
    assert fresh["status"] == "InProgress"
    assert fresh["lastStepExecuted"] is None
    assert fresh["parameters"] == parameters
    assert parse_z(fresh["createdDateTime"]) == triggered_at
    assert parse_z(fresh["startDateTime"]) == triggered_at
    (started,) = fresh["events"]
    assert started == {
        "eventDateTime": started["eventDateTime"],
        "flowId": "main",
        "flowName": "Main Flow",
        "stepId": None,
        "type": "started",
        "detail": {"batchId": fresh["journeyBatchId"], "version": 1},
    }
    assert parse_z(started["eventDateTime"]) == triggered_at

    server.clock.advance(timedelta(minutes=10))
    ran_at = server.clock.now()
    server.run_worker()
    server.clock.advance(timedelta(minutes=10))
    cancelled_at = server.clock.now()
    cancel(http, tenant, iid)

    inst = get(http, tenant, iid)
    assert set(inst) == INSTANCE_KEYS
    assert inst["status"] == "Cancelled"
    assert inst["lastStepExecuted"] == {
        "eventDateTime": inst["lastStepExecuted"]["eventDateTime"],
        "flowName": "Main Flow",
        "stepId": 20,
    }
    assert parse_z(inst["lastStepExecuted"]["eventDateTime"]) == ran_at
    events = inst["events"]
    assert all(set(e) == EVENT_KEYS for e in events)
    assert [(e["type"], e["flowId"], e["flowName"], e["stepId"]) for e in events] == [
        ("started", "main", "Main Flow", None),
        ("sms_queued", "main", "Main Flow", 10),
        ("wait", "main", "Main Flow", 20),
        ("cancelled", None, None, None),
    ]
    times = [parse_z(e["eventDateTime"]) for e in events]
    assert times == [triggered_at, ran_at, ran_at, cancelled_at]
    (message,) = outbox_rows(server, tenant.org_id)
    assert events[1]["detail"] == {"messageId": message["message_id"]}
    appointment_utc = (
        datetime.strptime(appointment, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHICAGO).astimezone(UTC)
    )
    assert parse_z(events[2]["detail"]["until"]) == appointment_utc - timedelta(hours=24)

    # The timeline never holds parameter values (PHI), even though the message body does.
    assert "Zebulon Quixote" in message["body"]
    timeline = json.dumps(events, ensure_ascii=False)
    for value in parameters.values():
        assert value not in timeline
    for fragment in ("Zebulon", "Quixote", "555 0199", "5550199", "100042", "77-QQQ"):
        assert fragment not in timeline


def test_get_unknown_or_foreign_instance_is_404(server: Server, http: Client, tenant: Tenant) -> None:
    appointment = local(server.clock.now() + timedelta(days=5))
    (iid,) = trigger(http, tenant, [patient(1, appointment)])

    unknown = "01234567-89ab-7cde-8f01-23456789abcd"
    r = http.get(tenant.url(f"/{unknown}"), headers=tenant.headers)
    assert r.status_code == 404
    assert r.json() == [f"instance {unknown} not found"]

    # Another journey of the same org: the instance is not reachable through it.
    text = EXAMPLE.read_text().replace("name: Appointment Reminder\n", "name: Second Reminder\n", 1)
    second = server.publish(tenant.org_id, text)
    two = Tenant(tenant.org_id, tenant.token, str(second["id"]), tenant.headers)
    r = http.get(two.url(f"/{iid}"), headers=tenant.headers)
    assert r.status_code == 404
    assert r.json() == [f"instance {iid} not found"]
    r = http.delete(two.url(f"/{iid}/execution"), headers=tenant.headers)
    assert r.status_code == 404
    assert r.json() == [f"instance {iid} not found"]

    # Another org: its token cannot see it, and its own journey does not hold it.
    other = server.tenant()
    r = http.get(tenant.url(f"/{iid}"), headers=other.headers)
    assert r.status_code == 404
    r = http.get(other.url(f"/{iid}"), headers=other.headers)
    assert r.status_code == 404
    assert r.json() == [f"instance {iid} not found"]

    r = http.get(tenant.url(f"/{iid}"))
    assert r.status_code == 401
    assert get(http, tenant, iid)["status"] == "InProgress"
