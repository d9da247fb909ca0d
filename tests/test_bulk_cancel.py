"""POST /api/orgs/{orgId}/journeys/{chatBotId}/instances/cancel (a journeys extension): cancel
every InProgress instance that matches a search filter — a snow-day closure — with the single
cancel's effects (timeline, queued messages dropped, webhooks, no further step), in chunks of
`JOURNEYS_CANCEL_CHUNK_SIZE` per transaction; and its refusals (no filter, bad filters, scopes).

Its own server (own database: SQLite, or PostgreSQL with JOURNEYS_TEST_DATABASE=postgresql) with
a chunk size of 3, so every bulk cancel here spans several transactions, the fake Twilio for
sends that stay queued, and a webhook receiver."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from support.api import bulk
from support.cli import JOURNEYS, clean_env
from support.clocks import LaggingClock
from support.databases import own_database
from support.fake_twilio import FakeTwilio, twilio_config
from support.keys import strong_key
from support.receivers import WebhookReceiver
from support.server import EXAMPLE, LOOPBACK_ALLOWED, START, Server, Tenant

from journeys.engine.worker import Worker
from journeys.store.db import read_only, transaction
from journeys.store.tables import journey_instances
from journeys.store.work import claim_due

SECRET_KEY = strong_key("bulk-cancel-test-secret-key")
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "bulk-cancel-twilio-auth-token"
HOOK_SECRET = "whsec-bulk-cancel-0123456789"
CHUNK = 3
DAY_A = "2026-11-10"  # the closure day
DAY_B = "2026-11-11"
NO_FILTER = (
    "filterSpecification: required (to cancel every InProgress instance of the journey, "
    'send "all": true instead)'
)
NO_CONDITION = (
    "filterSpecification: names no condition, so it would match every instance "
    '(to cancel every InProgress instance of the journey, send "all": true instead)'
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as f:
        yield f


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, fake: FakeTwilio) -> Iterator[Server]:
    with own_database(tmp_path_factory.mktemp("bulk_cancel"), "journeys.db") as url:
        server = Server(
            url,
            public_url_is_own=True,
            secret_key=SECRET_KEY,
            twilio_api_base=fake.url,
            cancel_chunk_size=CHUNK,
            outbound_allow=LOOPBACK_ALLOWED,
        )
        yield server
        server.stop()
        server.engine.dispose()


@pytest.fixture(autouse=True)
def _start_clock(srv: Server, fake: FakeTwilio) -> None:
    srv.clock.set(START)
    fake.reset()


# ---------------------------------------------------------------- helpers
def cancel_url(t: Tenant) -> str:
    return f"/api/orgs/{t.org_id}/journeys/{t.journey_id}/instances/cancel"


def patient(n: int, day: str, phone: str | None = None) -> dict[str, Any]:
    p = {
        "patientId": f"{100000 + n}",
        "patientName": f"Patient {n}",
        "appointmentId": f"APT-{n:05d}",
        "appointmentDateTime": f"{day} 0{n % 10}:00:00",
    }
    if phone is not None:
        p["phoneNumber"] = phone
    return {"parameters": p}


def by_appointment(srv: Server, t: Tenant) -> dict[str, dict[str, Any]]:
    r = srv.http.post(t.url("/search"), json={"includeParameters": True, "take": 1000}, headers=t.headers)
    assert r.status_code == 200, r.text
    return {i["parameters"]["appointmentId"]: i for i in r.json()}


def statuses(srv: Server, t: Tenant) -> dict[str, str]:
    return {k: v["status"] for k, v in by_appointment(srv, t).items()}


def events(srv: Server, t: Tenant, iid: str) -> list[dict[str, Any]]:
    r = srv.http.get(t.url(f"/{iid}"), headers=t.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


def closure_filter(day: str = DAY_A) -> dict[str, Any]:
    return {
        "type": "JourneyParameterSpecification",
        "parameterName": "appointmentDateTime",
        "operator": "startsWith",
        "rightOperand": day,
    }


def bulk_cancel(srv: Server, t: Tenant, body: Any, expect: int = 200) -> Any:
    r = srv.http.post(cancel_url(t), json=body, headers=t.headers)
    assert r.status_code == expect, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def instance_rows(srv: Server, org_id: str) -> list[tuple[Any, ...]]:
    ji = journey_instances
    q = (
        sa.select(ji.c.instance_id, ji.c.status, ji.c.rev, ji.c.due_at, ji.c.lease_owner, ji.c.ended_at)
        .where(ji.c.org_id == org_id)
        .order_by(ji.c.instance_id)
    )
    with read_only(srv.engine) as conn:
        return [tuple(r) for r in conn.execute(q)]


def snapshot(srv: Server, org_id: str) -> tuple[Any, ...]:
    return (
        instance_rows(srv, org_id),
        srv.count("instance_events", org_id),
        srv.count("outbox", org_id),
        srv.count("webhook_deliveries", org_id),
    )


# ---------------------------------------------------------------- cancelling
def test_cancels_every_matching_in_progress_instance_and_nothing_else(srv: Server) -> None:
    t = srv.tenant()
    bulk(srv.http, t, [patient(n, DAY_A) for n in range(1, 8)] + [patient(n, DAY_B) for n in (8, 9)])
    bulk(srv.http, t, [patient(10, DAY_A)])
    found = by_appointment(srv, t)
    already = found["APT-00010"]["id"]
    r = srv.http.delete(t.url(f"/{already}/execution"), headers=t.headers)
    assert r.status_code == 204
    already_events = events(srv, t, already)

    srv.clock.advance(timedelta(minutes=5))
    cancelled_at = srv.clock.now()
    dry = {"filterSpecification": closure_filter(), "dryRun": True}
    assert bulk_cancel(srv, t, dry) == {"wouldCancel": 7}
    assert set(statuses(srv, t).values()) == {"InProgress", "Cancelled"}
    assert bulk_cancel(srv, t, {"filterSpecification": closure_filter()}) == {"cancelled": 7}

    after = statuses(srv, t)
    assert after == {
        **{f"APT-{n:05d}": "Cancelled" for n in range(1, 8)},
        "APT-00008": "InProgress",
        "APT-00009": "InProgress",
        "APT-00010": "Cancelled",
    }
    for n in range(1, 8):
        timeline = events(srv, t, found[f"APT-{n:05d}"]["id"])
        assert [e["type"] for e in timeline] == ["started", "cancelled"]
        assert timeline[-1]["detail"] == {"by": "api", "bulk": True}
        assert timeline[-1]["eventDateTime"] == cancelled_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # The one cancelled before is not cancelled again.
    assert events(srv, t, already) == already_events
    # Again: nothing left to cancel.
    assert bulk_cancel(srv, t, {"filterSpecification": closure_filter()}) == {"cancelled": 0}
    assert bulk_cancel(srv, t, dry) == {"wouldCancel": 0}


def test_all_cancels_every_in_progress_instance_of_that_journey_only(srv: Server) -> None:
    t = srv.tenant()
    text = EXAMPLE.read_text().replace("name: Appointment Reminder\n", "name: Another Reminder\n", 1)
    other_journey = srv.publish(t.org_id, text)
    t2 = Tenant(t.org_id, t.token, str(other_journey["id"]), t.headers)
    other_org = srv.tenant()
    bulk(srv.http, t, [patient(n, DAY_A) for n in range(6)])  # twice the chunk: 3, 3, then 0
    bulk(srv.http, t2, [patient(n, DAY_A) for n in range(2)])
    bulk(srv.http, other_org, [patient(n, DAY_A) for n in range(2)])
    assert bulk_cancel(srv, t, {"all": True, "dryRun": True}) == {"wouldCancel": 6}
    assert bulk_cancel(srv, t, {"all": True}) == {"cancelled": 6}
    assert set(statuses(srv, t).values()) == {"Cancelled"}
    assert set(statuses(srv, t2).values()) == {"InProgress"}
    assert set(statuses(srv, other_org).values()) == {"InProgress"}
    assert bulk_cancel(srv, t, {"all": True}) == {"cancelled": 0}


def test_filters_combine_as_in_search(srv: Server) -> None:
    t = srv.tenant()
    bulk(srv.http, t, [patient(n, DAY_A) for n in range(1, 5)] + [patient(n, DAY_B) for n in range(5, 9)])
    # Day B, except patient 6 — and only InProgress ones (a Completed filter cancels nothing).
    completed = {"type": "JourneyStatusSpecification", "status": "Completed"}
    assert bulk_cancel(srv, t, {"filterSpecification": completed}) == {"cancelled": 0}
    spec = {
        "type": "AndSpecification",
        "specifications": [
            closure_filter(DAY_B),
            {
                "type": "NotSpecification",
                "specification": {
                    "type": "JourneyParameterSpecification",
                    "parameterName": "PatientName",  # names are case-insensitive, as in search
                    "operator": "equals",
                    "rightOperand": "Patient 6",
                },
            },
        ],
    }
    assert bulk_cancel(srv, t, {"filterSpecification": spec}) == {"cancelled": 3}
    after = statuses(srv, t)
    assert sorted(k for k, v in after.items() if v == "Cancelled") == ["APT-00005", "APT-00007", "APT-00008"]
    either = {
        "type": "OrSpecification",
        "specifications": [
            {"type": "JourneyParameterSpecification", "parameterName": "patientId", "operator": "in",
             "rightOperand": ["100001", "100006"]},
            closure_filter("2026-12"),
        ],
    }  # fmt: skip
    assert bulk_cancel(srv, t, {"filterSpecification": either}) == {"cancelled": 2}
    assert sorted(k for k, v in statuses(srv, t).items() if v == "InProgress") == [
        "APT-00002",
        "APT-00003",
        "APT-00004",
    ]


def test_the_single_cancels_effects_queued_sms_dropped_leases_cleared_webhooks_no_further_step(
    srv: Server, fake: FakeTwilio
) -> None:
    t = srv.tenant()
    srv.set_channel(t.org_id, "sms", "twilio", twilio_config(ACCOUNT_SID, AUTH_TOKEN, "+13125550199"))
    rec = WebhookReceiver(HOOK_SECRET)
    try:
        body = {"url": rec.url, "secret": HOOK_SECRET, "eventTypes": ["instance.cancelled"]}
        r = srv.http.post(f"/api/orgs/{t.org_id}/webhooks", json=body, headers=t.headers)
        assert r.status_code == 201, r.text
        srv.run_worker()
        fake.reset()
        phones = {n: f"+1312555{n:04d}" for n in range(1, 6)}
        bulk(srv.http, t, [patient(n, DAY_A, phones[n]) for n in (1, 2, 3)] + [patient(4, DAY_B, phones[4])])
        # A batch runs the first step; its messages stay queued (the delivery pass sees them as
        # not yet due).
        lagging = LaggingClock(srv.clock.now())  # a second worker of the deployment: its key too
        result = Worker(srv.engine, lagging, batch_size=10_000, vault=srv.worker.vault).run_batch()
        assert result.claimed == 4 and result.delivered == 0
        # Patient 5's instance is leased to a batch that is still running (claimed, not written).
        bulk(srv.http, t, [patient(5, DAY_A, phones[5])])
        with transaction(srv.engine) as conn:
            [claimed] = claim_due(conn, srv.clock.now(), 10, "batch-in-flight", timedelta(seconds=30))
        found = by_appointment(srv, t)
        ids = {n: found[f"APT-{n:05d}"]["id"] for n in range(1, 6)}
        assert claimed.instance_id == ids[5]
        revs = {row[0]: row[2] for row in instance_rows(srv, t.org_id)}

        srv.clock.advance(timedelta(minutes=1))
        cancelled_at = srv.clock.now()
        assert bulk_cancel(srv, t, {"filterSpecification": closure_filter()}) == {"cancelled": 4}

        rows = {row[0]: row for row in instance_rows(srv, t.org_id)}
        for n in (1, 2, 3, 5):
            _, status, rev, due_at, lease_owner, ended_at = rows[ids[n]]
            assert (status, rev, due_at, lease_owner) == ("Cancelled", revs[ids[n]] + 1, None, None)
            assert ended_at == cancelled_at
        assert rows[ids[4]][1] == "InProgress"
        with read_only(srv.engine) as conn:
            outbox = {
                r.instance_id: (r.status, r.last_error)
                for r in conn.execute(
                    sa.text("SELECT instance_id, status, last_error FROM outbox WHERE org_id = :o"),
                    {"o": t.org_id},
                )
            }
            hooks = sorted(
                (r.instance_id, r.event_type)
                for r in conn.execute(
                    sa.text("SELECT instance_id, event_type FROM webhook_deliveries WHERE org_id = :o"),
                    {"o": t.org_id},
                )
            )
        assert outbox == {
            ids[1]: ("dropped", "instance cancelled"),
            ids[2]: ("dropped", "instance cancelled"),
            ids[3]: ("dropped", "instance cancelled"),
            ids[4]: ("queued", None),
        }
        assert hooks == sorted((ids[n], "instance.cancelled") for n in (1, 2, 3, 5))

        # Past every wait: the cancelled instances run no further step and send nothing.
        srv.clock.set(datetime(2026, 11, 12, 18, 0, tzinfo=UTC))
        srv.run_worker()
        assert [e["type"] for e in events(srv, t, ids[5])] == ["started", "cancelled"]
        for n in (1, 2, 3):
            kinds = [e["type"] for e in events(srv, t, ids[n])]
            assert kinds == ["started", "sms_queued", "wait", "cancelled"]
        assert statuses(srv, t)["APT-00004"] == "Completed"
        sent_to = {r.form.get("To") for r in fake.requests if r.path == fake.messages_path}
        assert sent_to == {phones[4]}
        assert sorted(p["headers"]["X-Journeys-Event"] for p in rec.posts) == ["instance.cancelled"] * 4
    finally:
        rec.stop()


# ---------------------------------------------------------------- refusals
BAD_BODIES: list[tuple[Any, list[str]]] = [
    ({}, [NO_FILTER]),
    ({"filterSpecification": None}, [NO_FILTER]),
    ({"all": False}, [NO_FILTER]),
    ({"dryRun": True}, [NO_FILTER]),
    ({"filterSpecification": {"type": "AndSpecification", "specifications": []}}, [NO_CONDITION]),
    (
        {
            "filterSpecification": {
                "type": "NotSpecification",
                "specification": {"type": "OrSpecification", "specifications": []},
            }
        },
        [NO_CONDITION],
    ),
    (
        {"all": True, "filterSpecification": closure_filter()},
        ['filterSpecification: give a filter or "all": true, not both'],
    ),
    ({"all": "yes"}, ["all: must be true or false", NO_FILTER]),
    ({"all": True, "dryRun": 1}, ["dryRun: must be true or false"]),
    (
        {"filterSpecification": closure_filter(), "take": 10, "skip": 0},
        [
            "take: unknown field (expected: filterSpecification, all, dryRun)",
            "skip: unknown field (expected: filterSpecification, all, dryRun)",
        ],
    ),
    (
        {"filterSpecification": {"type": "FuzzySpecification"}},
        [
            "filterSpecification.type: unknown specification type 'FuzzySpecification' (expected one of: "
            "AndSpecification, OrSpecification, NotSpecification, JourneyParameterSpecification, "
            "JourneyStatusSpecification, JourneyDateSpecification)"
        ],
    ),
    (
        {"filterSpecification": {**closure_filter(), "parameterName": "appointmentDay"}},
        ["filterSpecification.parameterName: 'appointmentDay' is not a parameter of this journey"],
    ),
    (
        {"filterSpecification": {**closure_filter(), "operator": "like"}},
        [
            "filterSpecification.operator: unknown operator 'like' "
            "(expected one of: equals, notEquals, contains, startsWith, in)"
        ],
    ),
    ({"filterSpecification": "everything"}, ["filterSpecification: must be an object, not a string"]),
    ([closure_filter()], ["request body: must be a JSON object, not an array"]),
]


@pytest.mark.parametrize("body, messages", BAD_BODIES)
def test_bad_bodies_are_refused_and_change_nothing(srv: Server, body: Any, messages: list[str]) -> None:
    t = srv.tenant()
    bulk(srv.http, t, [patient(1, DAY_A), patient(2, DAY_B)])
    before = snapshot(srv, t.org_id)
    assert bulk_cancel(srv, t, body, 400) == messages
    assert snapshot(srv, t.org_id) == before


def test_bodies_that_are_not_json_are_refused(srv: Server) -> None:
    t = srv.tenant()
    bulk(srv.http, t, [patient(1, DAY_A)])
    before = snapshot(srv, t.org_id)
    headers = {**t.headers, "Content-Type": "application/json"}
    r = srv.http.post(cancel_url(t), content=b"", headers=headers)
    assert r.status_code == 400 and r.json() == ["request body is empty; expected a JSON object"]
    r = srv.http.post(cancel_url(t), content=b'{"all": tru', headers=headers)
    assert r.status_code == 400 and r.json()[0].startswith("request body is not valid JSON")
    assert snapshot(srv, t.org_id) == before


def test_scopes_orgs_and_journeys(srv: Server) -> None:
    t = srv.tenant()
    bulk(srv.http, t, [patient(1, DAY_A)])
    before = snapshot(srv, t.org_id)
    body = {"all": True}
    r = srv.http.post(cancel_url(t), json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = srv.http.post(cancel_url(t), json=body, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    read_only_token = srv.new_token(t.org_id, scopes=["read.journey_instances"])
    r = srv.http.post(cancel_url(t), json=body, headers={"Authorization": f"Bearer {read_only_token}"})
    assert r.status_code == 403
    assert r.json() == ["this token lacks the create.journey_instances scope"]
    other = srv.tenant()
    r = srv.http.post(cancel_url(t), json=body, headers=other.headers)
    assert r.status_code == 404 and r.json() == [f"org {t.org_id} not found"]
    unknown = str(uuid.uuid4())
    url = f"/api/orgs/{t.org_id}/journeys/{unknown}/instances/cancel"
    r = srv.http.post(url, json=body, headers=t.headers)
    assert r.status_code == 404 and r.json() == [f"journey {unknown} not found"]
    # Another org's journey id under this org's path: not found either.
    r = srv.http.post(
        f"/api/orgs/{t.org_id}/journeys/{other.journey_id}/instances/cancel", json=body, headers=t.headers
    )
    assert r.status_code == 404
    assert snapshot(srv, t.org_id) == before
    create_only = srv.new_token(t.org_id, scopes=["create.journey_instances"])
    r = srv.http.post(cancel_url(t), json=body, headers={"Authorization": f"Bearer {create_only}"})
    assert r.status_code == 200 and r.json() == {"cancelled": 1}


def test_one_transaction_with_the_default_chunk_size(server: Server, tenant: Tenant) -> None:
    """The session server: JOURNEYS_CANCEL_CHUNK_SIZE is 10,000, so this is one chunk."""
    assert server.settings.cancel_chunk_size == 10_000
    bulk(server.http, tenant, [patient(n, DAY_A) for n in range(1, 5)])
    spec = {
        "type": "JourneyParameterSpecification",
        "parameterName": "patientName",
        "operator": "in",
        "rightOperand": ["Patient 1", "Patient 3", "Nobody"],
    }
    assert bulk_cancel(server, tenant, {"filterSpecification": spec}) == {"cancelled": 2}
    assert sorted(statuses(server, tenant).values()) == ["Cancelled", "Cancelled", "InProgress", "InProgress"]


# ---------------------------------------------------------------- journeys cancel (the CLI)
def run_cli(srv: Server, *args: str, key: bool = True) -> subprocess.CompletedProcess[str]:
    """The command line of the server's deployment (with its secret key, unless not `key`)."""
    secret = {"JOURNEYS_SECRET_KEY": srv.settings.secret_key or ""} if key else {}
    return subprocess.run(
        [*JOURNEYS, "--db", srv.settings.database_url, *args],
        env=clean_env(**secret),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_cancel(srv: Server) -> None:
    t = srv.tenant()
    bulk(srv.http, t, [patient(n, DAY_A) for n in range(1, 6)] + [patient(n, DAY_B) for n in (6, 7)])
    found = by_appointment(srv, t)
    base = ["cancel", "--org", t.org_id, "--journey", t.journey_id]
    closure = json.dumps(closure_filter())

    keyless = run_cli(srv, *base, "--filter", closure, "--dry-run", "--json", key=False)
    assert keyless.returncode == 1 and keyless.stdout == "" and "Traceback" not in keyless.stderr
    refused = f"the patient data of org {t.org_id} is stored encrypted: set JOURNEYS_SECRET_KEY"
    assert refused in keyless.stderr
    proc = run_cli(srv, *base, "--filter", closure, "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"wouldCancel": 5}
    proc = run_cli(srv, *base, "--filter", closure, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "5 InProgress instances of Appointment Reminder would be cancelled" in proc.stdout
    assert set(statuses(srv, t).values()) == {"InProgress"}

    # --param NAME=VALUE conditions (equals) and --filter are combined with And.
    one = ["--param", "patientName=Patient 1", "--param", "patientId=100001"]
    proc = run_cli(srv, *base, "--filter", closure, *one)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cancelled 1 instances of Appointment Reminder"
    timeline = events(srv, t, found["APT-00001"]["id"])
    assert timeline[-1]["type"] == "cancelled" and timeline[-1]["detail"] == {"by": "cli", "bulk": True}

    proc = run_cli(srv, *base, "--filter", closure, "--json")  # 4 more, in chunks of 3
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"cancelled": 4}
    proc = run_cli(srv, *base, "--all", "--json")
    assert json.loads(proc.stdout) == {"cancelled": 2}
    assert set(statuses(srv, t).values()) == {"Cancelled"}


@pytest.mark.parametrize(
    "args, message",
    [
        ([], NO_FILTER),
        (["--filter", '{"type": "AndSpecification", "specifications": []}'], NO_CONDITION),
        (["--filter", "{not json"], "--filter: not valid JSON (give a filterSpecification object)"),
        (["--param", "patientName"], "--param 'patientName': use NAME=VALUE"),
        (["--param", "=x"], "--param '=x': use NAME=VALUE"),
        (
            ["--param", "appointmentDay=2026-11-10"],
            "filterSpecification.parameterName: 'appointmentDay' is not a parameter of this journey",
        ),
        (["--all", "--param", "patientId=1"], 'filterSpecification: give a filter or "all": true, not both'),
        (
            ["--filter", json.dumps({"type": "JourneyDateSpecification", "field": "createdDateTime",
                                     "operator": "after", "rightOperand": "monday"})],
            "filterSpecification.rightOperand: 'monday' is not an ISO 8601 date-time",
        ),
    ],
)  # fmt: skip
def test_cli_cancel_refuses_bad_input_and_changes_nothing(srv: Server, args: list[str], message: str) -> None:
    t = srv.tenant()
    bulk(srv.http, t, [patient(1, DAY_A)])
    before = snapshot(srv, t.org_id)
    proc = run_cli(srv, "cancel", "--org", t.org_id, "--journey", t.journey_id, *args)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert f"error: {message}" in proc.stderr
    assert proc.stdout == ""
    assert snapshot(srv, t.org_id) == before


def test_cli_cancel_unknown_journey_or_org(srv: Server) -> None:
    t = srv.tenant()
    other = srv.tenant()
    for org, journey in ((t.org_id, other.journey_id), ("no-such-org", t.journey_id)):
        proc = run_cli(srv, "cancel", "--org", org, "--journey", journey, "--all")
        assert proc.returncode == 1
        assert f"error: unknown journey {journey} of org {org}" in proc.stderr


def test_a_failure_part_way_says_how_many_were_cancelled_and_a_retry_finishes(srv: Server) -> None:
    """The database refuses the second chunk (a real trigger raises on one of its rows): the
    first chunk stays cancelled, the answer says how many, and the same request again finishes
    once the cause is gone."""
    t = srv.tenant()
    bulk(srv.http, t, [patient(n, DAY_A) for n in range(1, 8)])
    ids = sorted(i["id"] for i in by_appointment(srv, t).values())
    poison = ids[4]  # in the second chunk of three (chunks go by id)
    if srv.engine.dialect.name == "postgresql":
        create = [
            "CREATE FUNCTION refuse_cancel() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused'; END $$",
            "CREATE TRIGGER refuse_cancel BEFORE UPDATE ON journey_instances FOR EACH ROW "
            f"WHEN (NEW.instance_id = '{poison}') EXECUTE FUNCTION refuse_cancel()",
        ]
        drop = ["DROP TRIGGER refuse_cancel ON journey_instances", "DROP FUNCTION refuse_cancel()"]
    else:
        create = [
            "CREATE TRIGGER refuse_cancel BEFORE UPDATE ON journey_instances "
            f"WHEN NEW.instance_id = '{poison}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        ]
        drop = ["DROP TRIGGER refuse_cancel"]
    with srv.engine.begin() as conn:
        for sql in create:
            conn.exec_driver_sql(sql)
    try:
        r = srv.http.post(cancel_url(t), json={"filterSpecification": closure_filter()}, headers=t.headers)
        assert r.status_code == 500, r.text
        assert r.json() == [
            "the database failed after 3 instances were cancelled (they stay cancelled); "
            "send the same request again to cancel the rest"
        ]
        rows = {row[0]: row[1] for row in instance_rows(srv, t.org_id)}
        assert [rows[i] for i in ids] == ["Cancelled"] * 3 + ["InProgress"] * 4
    finally:
        with srv.engine.begin() as conn:
            for sql in drop:
                conn.exec_driver_sql(sql)
    assert bulk_cancel(srv, t, {"filterSpecification": closure_filter()}) == {"cancelled": 4}
    assert set(statuses(srv, t).values()) == {"Cancelled"}
