"""Crash safety with real processes: a `journeys serve --no-worker` subprocess takes the triggers
over HTTP, `journeys worker` subprocesses run the steps and are killed with SIGKILL mid-run,
and afterwards every step has run exactly once and every message is in the outbox exactly once.

Also the cancel race: cancels over HTTP while a worker subprocess works through large batches;
a cancelled instance never runs another step and nothing of it is sent after the cancel. And a
step whose effects the database refuses must not stall every other instance.

Each test gets its own database (a SQLite file, or a fresh PostgreSQL database when
JOURNEYS_TEST_DATABASE=postgresql), set up through the CLI as an operator would.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.databases import own_database
from support.deployment import Deployment, kill9, wait_for
from support.server import Server

from journeys.store.db import read_only

DEADLINE_S = 120.0  # every loop below fails after this long

# Three sends around a short real-time wait: every instance is claimed twice, so its cursor
# must survive between batches. No send window and no cap: the time of day never matters.
DURABLE = """\
name: Durable
send_window: null
frequency_cap: null
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
flows:
  - id: main
    name: Main
    main: true
    steps:
      - {id: 1, type: send_sms, to: phone, body: "one {{ key }}"}
      - {id: 2, type: send_sms, to: phone, body: "two {{ key }}"}
      - {id: 3, type: wait, duration: 1s}
      - {id: 4, type: send_sms, to: phone, body: "three {{ key }}"}
"""
DURABLE_SMS_STEPS = {1: "one", 2: "two", 4: "three"}

RACE = """\
name: Race
send_window: null
frequency_cap: null
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
flows:
  - id: main
    name: Main
    main: true
    steps:
      - {id: 1, type: send_sms, to: phone, body: "one {{ key }}"}
      - {id: 2, type: wait, duration: 1s}
      - {id: 3, type: send_sms, to: phone, body: "two {{ key }}"}
      - {id: 4, type: wait, duration: 1s}
      - {id: 5, type: send_sms, to: phone, body: "three {{ key }}"}
"""


# ---------------------------------------------------------------- the deployment
@pytest.fixture()
def database_url_for_test(tmp_path: Path) -> Iterator[str]:
    """A database of this test's own (the session's shared one has the in-thread server's
    instances; a worker subprocess must see only ours)."""
    with own_database(tmp_path, "durable.db") as url:
        yield url


@pytest.fixture()
def deployment(database_url_for_test: str, tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(database_url_for_test, tmp_path)
    try:
        yield d
    finally:
        d.close()  # before the database is dropped


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(20)


def describe(iid: str, timeline: list[dict[str, Any]], messages: list[dict[str, Any]]) -> str:
    lines = [f"instance {iid}:"]
    lines += [f"  event {parse_at(e['at']).isoformat()} step {e['step_id']} {e['kind']}" for e in timeline]
    lines += [
        f"  outbox step {m['step_id']} {m['status']} created {parse_at(m['created_at']).isoformat()} "
        f"sent {m['sent_at'] and parse_at(m['sent_at']).isoformat()}"
        for m in messages
    ]
    return "\n".join(lines)


def parse_at(value: Any) -> datetime:
    """A timestamp column as an aware UTC datetime (SQLite returns naive UTC text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# ---------------------------------------------------------------- crash safety
N_CRASH = 3000
KILLS = 5


def test_killing_workers_mid_run_loses_no_step_and_repeats_none(deployment: Deployment) -> None:
    d = deployment
    d.set_up(DURABLE, "Durable Clinic")
    _, client = d.serve()
    try:
        d.trigger([client], N_CRASH)
    finally:
        client.close()
    assert d.scalar("SELECT count(*) FROM journey_instances WHERE org_id = :o") == N_CRASH
    total_sms = N_CRASH * len(DURABLE_SMS_STEPS)
    progress_sql = "SELECT count(*) FROM instance_events WHERE org_id = :o AND kind = 'sms_queued'"

    deadline = time.monotonic() + DEADLINE_S
    kills = 0
    rng = random.Random()
    while kills < KILLS:
        before = d.scalar(progress_sql)
        assert before < total_sms, f"the workers finished after only {kills} kill(s)"
        # Some progress, but not all: spread the kills over the run, each after a random share
        # of what is left, then kill -9 at a random moment in what follows (inside the next
        # batch's transaction, between a commit and its delivery pass, ...).
        target = before + rng.randint(1, (total_sms - before) // (KILLS + 2 - kills))
        proc = d.worker(batch_size=50)
        try:

            def progressed(t: int = target, p: subprocess.Popen[bytes] = proc) -> bool:
                assert p.poll() is None, "the worker exited by itself"
                return bool(d.scalar(progress_sql) >= t)

            wait_for("some progress", progressed, deadline)
            time.sleep(rng.uniform(0.0, 0.05))
            assert proc.poll() is None, "the worker exited by itself"
            kill9(proc)
            kills += 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert d.scalar(progress_sql) < total_sms  # the kills did interrupt the run

    # Two fresh workers finish the work from the last committed state.
    finishers = [d.worker(batch_size=50), d.worker(batch_size=50)]
    try:
        wait_for(
            "every instance to complete and every message to go out", d.all_done, deadline
        )
    finally:
        for proc in finishers:
            stop(proc)

    # Every instance completed.
    statuses = d.rows("SELECT status, count(*) AS n FROM journey_instances WHERE org_id = :o GROUP BY status")
    assert {r["status"]: r["n"] for r in statuses} == {"Completed": N_CRASH}
    # The timeline: each instance started once, each step ran exactly once, it completed once,
    # and nothing failed or was retried.
    kinds = d.rows("SELECT kind, count(*) AS n FROM instance_events WHERE org_id = :o GROUP BY kind")
    assert {r["kind"]: r["n"] for r in kinds} == {
        "started": N_CRASH,
        "sms_queued": total_sms,
        "wait": N_CRASH,
        "completed": N_CRASH,
    }
    assert (
        d.rows(
            "SELECT instance_id, step_id, kind, count(*) AS n FROM instance_events WHERE org_id = :o "
            "AND step_id IS NOT NULL GROUP BY instance_id, step_id, kind HAVING count(*) <> 1"
        )
        == []
    )
    per_step = d.rows(
        "SELECT step_id, count(DISTINCT instance_id) AS n FROM instance_events "
        "WHERE org_id = :o AND kind = 'sms_queued' GROUP BY step_id"
    )
    assert {r["step_id"]: r["n"] for r in per_step} == dict.fromkeys(DURABLE_SMS_STEPS, N_CRASH)

    # The outbox: exactly one row per (instance, step), no idempotency key twice, all sent.
    assert (
        d.rows(
            "SELECT instance_id, step_id, count(*) AS n FROM outbox WHERE org_id = :o "
            "GROUP BY instance_id, step_id HAVING count(*) <> 1"
        )
        == []
    )
    assert d.scalar("SELECT count(*) FROM outbox WHERE org_id = :o") == total_sms
    assert d.scalar("SELECT count(DISTINCT idempotency_key) FROM outbox WHERE org_id = :o") == total_sms
    assert d.scalar("SELECT count(DISTINCT message_id) FROM outbox WHERE org_id = :o") == total_sms
    sent = d.rows(
        "SELECT status, count(*) AS n, count(sent_at) AS with_time FROM outbox WHERE org_id = :o "
        "GROUP BY status"
    )
    assert sent == [{"status": "sent", "n": total_sms, "with_time": total_sms}]

    # Each message is the one its step rendered for its instance, and its event names it.
    params = {
        r["instance_id"]: json.loads(r["parameters"])
        for r in d.rows("SELECT instance_id, parameters FROM journey_instances WHERE org_id = :o")
    }
    messages = d.rows(
        "SELECT message_id, instance_id, step_id, to_address, body FROM outbox WHERE org_id = :o"
    )
    for m in messages:
        p = params[m["instance_id"]]
        assert m["body"] == f"{DURABLE_SMS_STEPS[m['step_id']]} {p['key']}"
        assert m["to_address"] == p["phone"]
    queued_events = d.rows(
        "SELECT instance_id, step_id, detail FROM instance_events WHERE org_id = :o AND kind = 'sms_queued'"
    )
    assert sorted(
        (e["instance_id"], e["step_id"], json.loads(e["detail"])["messageId"]) for e in queued_events
    ) == (sorted((m["instance_id"], m["step_id"], m["message_id"]) for m in messages))


# ---------------------------------------------------------------- the cancel race
N_RACE = 1500


def test_cancel_wins_against_a_worker_mid_batch(deployment: Deployment) -> None:
    d = deployment
    d.set_up(RACE, "Durable Clinic")
    _, client = d.serve()
    try:
        d.trigger([client], N_RACE)
        ids = [
            r["instance_id"]
            for r in d.rows(
                "SELECT instance_id FROM journey_instances WHERE org_id = :o ORDER BY instance_id"
            )
        ]
        assert len(ids) == N_RACE
        to_cancel = random.Random(7).sample(ids, N_RACE // 2)
        deadline = time.monotonic() + DEADLINE_S
        proc = d.worker(batch_size=500)
        try:
            # Start cancelling once the worker is busy with its first large batch.
            wait_for(
                "the worker's first batch",
                lambda: d.scalar("SELECT count(*) FROM outbox WHERE org_id = :o") > 0,
                deadline,
            )

            def cancel(iid: str) -> tuple[str, int]:
                r = client.delete(d.instances_url(f"/{iid}/execution"), headers=d.headers)
                return iid, r.status_code

            with ThreadPoolExecutor(4) as pool:
                answers = dict(pool.map(cancel, to_cancel))
            wait_for(
                "every instance to end",
                lambda: (
                    d.scalar(
                        "SELECT count(*) FROM journey_instances WHERE org_id = :o AND status = 'InProgress'"
                    )
                    == 0
                ),
                deadline,
            )
            stop(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    finally:
        client.close()

    status = {
        r["instance_id"]: r["status"]
        for r in d.rows("SELECT instance_id, status FROM journey_instances WHERE org_id = :o")
    }
    # 204 cancelled it; 409 came after it had completed. Nothing else.
    assert set(answers.values()) <= {204, 409}, Counter(answers.values())
    for iid, code in answers.items():
        assert status[iid] == ("Cancelled" if code == 204 else "Completed"), (iid, code, status[iid])
    cancelled = {iid for iid, s in status.items() if s == "Cancelled"}
    assert cancelled == {iid for iid, code in answers.items() if code == 204}
    assert set(status.values()) <= {"Cancelled", "Completed"}
    assert cancelled, "no cancel landed before its instance completed"

    events: dict[str, list[dict[str, Any]]] = {}
    for e in d.rows(
        "SELECT instance_id, event_id, at, step_id, kind FROM instance_events WHERE org_id = :o "
        "ORDER BY instance_id, event_id"
    ):
        events.setdefault(e["instance_id"], []).append(e)
    outbox: dict[str, list[dict[str, Any]]] = {}
    for m in d.rows("SELECT instance_id, step_id, status, created_at, sent_at FROM outbox WHERE org_id = :o"):
        outbox.setdefault(m["instance_id"], []).append(m)

    for iid in cancelled:
        timeline = events[iid]
        kinds = [e["kind"] for e in timeline]
        # The cancel is the last thing on the timeline, once; no step ran after it.
        assert kinds.count("cancelled") == 1 and kinds[-1] == "cancelled", (iid, kinds)
        assert "completed" not in kinds
        cancelled_at = parse_at(timeline[-1]["at"])
        assert all(parse_at(e["at"]) <= cancelled_at for e in timeline), (iid, timeline)
        for m in outbox.get(iid, []):
            # Nothing was queued after the cancel, nothing is left queued, and nothing went out
            # after the cancel.
            assert parse_at(m["created_at"]) <= cancelled_at, (iid, m, cancelled_at)
            assert m["status"] in ("sent", "dropped"), (iid, m)
            if m["status"] == "sent":
                assert parse_at(m["sent_at"]) <= cancelled_at, describe(iid, timeline, outbox[iid])
        queued = [e["step_id"] for e in timeline if e["kind"] == "sms_queued"]
        assert sorted(queued) == sorted(m["step_id"] for m in outbox.get(iid, []))
        assert len(queued) == len(set(queued))

    for iid, s in status.items():
        if s == "Completed":
            assert [e["step_id"] for e in events[iid] if e["kind"] == "sms_queued"] == [1, 3, 5]
            assert sorted(m["status"] for m in outbox[iid]) == ["sent"] * 3


# ---------------------------------------------------------------- a step the database refuses
POISON = """\
name: Long Note
send_window: null
frequency_cap: null
parameters:
  - {name: key, identifier: true}
  - {name: note}
  - {name: summary, required: false}
flows:
  - id: main
    name: Main
    main: true
    steps:
      - {id: 1, type: set_parameters, values: {summary: "{{ note }} / {{ note | reverse | join }}"}}
      - {id: 2, type: end}
"""


def test_one_instance_whose_effects_cannot_be_written_does_not_stall_the_others(
    database_url_for_test: str,
) -> None:
    """A step's effects that the database refuses (here: a set_parameters value that renders
    to 1,000 characters of 4-byte UTF-8, beyond PostgreSQL's B-tree row limit in the search
    index) must fail or finish that one instance; it must not fail every batch it is in, for
    ever, holding up every other instance (the earliest due one is in every batch)."""
    server = Server(database_url_for_test)
    try:
        tenant = server.tenant(POISON)
        rng = random.Random(3)
        # 500 distinct supplementary-plane characters: 2,000 bytes, as much as a trigger allows.
        note = "".join(chr(rng.randint(0x20000, 0x2A6DF)) for _ in range(500))
        body = {
            "flowId": None,
            "timeZone": "UTC",
            "instances": [
                {"parameters": {"key": "long", "note": note}},
                {"parameters": {"key": "short", "note": "see you soon"}},
            ],
        }
        r = server.http.post(tenant.url("/bulk"), json=body, headers=tenant.headers)
        assert r.status_code == 204, r.text
        for _ in range(8):  # the retries of a failing step, with the clock moved past each backoff
            server.run_worker()
            server.clock.advance(timedelta(hours=1))
        with read_only(server.engine) as conn:
            rows = conn.execute(
                sa.text("SELECT parameters, status FROM journey_instances WHERE org_id = :o"),
                {"o": tenant.org_id},
            ).mappings()
            status = {json.loads(row["parameters"])["key"]: row["status"] for row in rows}
        assert status["short"] == "Completed", status
        assert status["long"] in ("Completed", "Failed"), status
    finally:
        server.stop()
