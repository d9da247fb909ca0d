"""Scale-out on PostgreSQL, with real processes: several `journeys serve --no-worker` API servers
take triggers over HTTP, several `journeys worker` processes run the steps on one database, and
they survive what production does to them: SIGKILL, SIGTERM and a restart of the PostgreSQL
server. Afterwards every step has run exactly once and every message is in the outbox exactly
once.

PostgreSQL-only (127.0.0.1:5432, user postgres): each test makes a fresh database and drops it.
Without PostgreSQL the tests skip with the reason (and fail under CI=true). Everything is set
up through the CLI as an operator would, and observed through HTTP and read-only SQL, so the
tests do not depend on how workers claim or lease their work.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from support.databases import make_postgres_database, require_postgres
from support.deployment import Deployment, alt_phone, key, kill9, phone
from support.deployment import wait_for as support_wait_for

pytestmark = pytest.mark.postgres_only

POLL_S = 0.2  # how often the tests look at the database while they wait

# Three immediate sends, two of them to one phone parameter and one to another. No send window
# and no cap: the time of day never matters.
IMMEDIATE = """\
name: Scale Out
send_window: null
frequency_cap: null
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
  - {name: altPhone, type: phone}
flows:
  - id: main
    name: Main
    main: true
    steps:
      - {id: 1, type: send_sms, to: phone, body: "one {{ key }}"}
      - {id: 2, type: send_sms, to: altPhone, body: "two {{ key }}"}
      - {id: 3, type: send_sms, to: phone, body: "three {{ key }}"}
"""
IMMEDIATE_SMS = {1: ("one", "phone"), 2: ("two", "altPhone"), 3: ("three", "phone")}


def waiting_journey(seconds: int) -> str:
    """Three sends with a real-time wait between them: every instance is claimed three times."""
    return f"""\
name: Waits
send_window: null
frequency_cap: null
parameters:
  - {{name: key, identifier: true}}
  - {{name: phone, type: phone}}
  - {{name: altPhone, type: phone}}
flows:
  - id: main
    name: Main
    main: true
    steps:
      - {{id: 1, type: send_sms, to: phone, body: "one {{{{ key }}}}"}}
      - {{id: 2, type: wait, duration: {seconds}s}}
      - {{id: 3, type: send_sms, to: altPhone, body: "two {{{{ key }}}}"}}
      - {{id: 4, type: wait, duration: {seconds}s}}
      - {{id: 5, type: send_sms, to: phone, body: "three {{{{ key }}}}"}}
"""


WAITING_SMS = {1: ("one", "phone"), 3: ("two", "altPhone"), 5: ("three", "phone")}


# ---------------------------------------------------------------- the deployment
def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def parameters(i: int) -> dict[str, str]:
    return {"key": key(i), "phone": phone(i), "altPhone": alt_phone(i)}


@contextmanager
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A fresh PostgreSQL database and a deployment on it; on failure the subprocess logs are
    printed; every subprocess is killed and the database dropped at the end."""
    require_postgres()
    url, drop = make_postgres_database()
    d = Deployment(
        url,
        tmp_path,
        # Our own read-only engine (not the product's): it reconnects after a server restart.
        engine=sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True, pool_size=2),
        log_level="INFO",
        worker_poll_interval=POLL_S,
        parameters=parameters,
    )
    try:
        yield d
    except BaseException:
        d.dump_logs()
        raise
    finally:
        try:
            d.close()
        finally:
            drop()


def wait_for(
    what: str, check: Callable[[], bool], deadline: float, alive: Sequence[subprocess.Popen[bytes]] = ()
) -> None:
    """Poll `check` every POLL_S until it holds; fail at the deadline, or at once if a process
    in `alive` has exited."""
    support_wait_for(what, check, deadline, alive, interval=POLL_S)


def terminate(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    proc.terminate()
    return proc.wait(timeout)


def assert_every_step_ran_exactly_once(
    d: Deployment, n: int, sms_steps: dict[int, tuple[str, str]], waits: int = 0
) -> None:
    """Every instance completed; each step's event is on its timeline once; one outbox row per
    (instance, step), each sent, with its own idempotency key, the text its step rendered, and
    the message id its event names."""
    total = n * len(sms_steps)
    statuses = d.rows("SELECT status, count(*) AS n FROM journey_instances WHERE org_id = :o GROUP BY status")
    assert {r["status"]: r["n"] for r in statuses} == {"Completed": n}

    kinds = d.rows("SELECT kind, count(*) AS n FROM instance_events WHERE org_id = :o GROUP BY kind")
    expected = {"started": n, "sms_queued": total, "completed": n}
    if waits:
        expected["wait"] = n * waits
    assert {r["kind"]: r["n"] for r in kinds} == expected
    repeated = d.rows(
        "SELECT instance_id, step_id, kind, count(*) AS n FROM instance_events WHERE org_id = :o "
        "AND step_id IS NOT NULL GROUP BY instance_id, step_id, kind HAVING count(*) <> 1 LIMIT 20"
    )
    assert repeated == []
    per_step = d.rows(
        "SELECT step_id, count(DISTINCT instance_id) AS n FROM instance_events "
        "WHERE org_id = :o AND kind = 'sms_queued' GROUP BY step_id"
    )
    assert {r["step_id"]: r["n"] for r in per_step} == dict.fromkeys(sms_steps, n)

    duplicated = d.rows(
        "SELECT instance_id, step_id, count(*) AS n FROM outbox WHERE org_id = :o "
        "GROUP BY instance_id, step_id HAVING count(*) <> 1 LIMIT 20"
    )
    assert duplicated == []
    assert d.scalar("SELECT count(*) FROM outbox WHERE org_id = :o") == total
    assert d.scalar("SELECT count(DISTINCT idempotency_key) FROM outbox WHERE org_id = :o") == total
    assert d.scalar("SELECT count(DISTINCT message_id) FROM outbox WHERE org_id = :o") == total
    sent = d.rows(
        "SELECT status, count(*) AS n, count(sent_at) AS with_time FROM outbox WHERE org_id = :o "
        "GROUP BY status"
    )
    assert sent == [{"status": "sent", "n": total, "with_time": total}]

    params = {
        r["instance_id"]: json.loads(r["parameters"])
        for r in d.rows("SELECT instance_id, parameters FROM journey_instances WHERE org_id = :o")
    }
    messages = d.rows(
        "SELECT message_id, instance_id, step_id, to_address, body FROM outbox WHERE org_id = :o"
    )
    for m in messages:
        p = params[m["instance_id"]]
        text, to = sms_steps[m["step_id"]]
        assert (m["body"], m["to_address"]) == (f"{text} {p['key']}", p[to]), m
    events = d.rows(
        "SELECT instance_id, step_id, detail FROM instance_events WHERE org_id = :o AND kind = 'sms_queued'"
    )
    assert sorted(
        (e["instance_id"], e["step_id"], json.loads(e["detail"])["messageId"]) for e in events
    ) == sorted((m["instance_id"], m["step_id"], m["message_id"]) for m in messages)
    # The keys are the ones triggered, each once.
    assert sorted(p["key"] for p in params.values()) == [key(i) for i in range(n)]


# ---------------------------------------------------------------- 1. many processes
N_SCALE = 10_000


def test_four_workers_two_api_servers_run_every_step_exactly_once(tmp_path: Path) -> None:
    with deployment(tmp_path) as d:
        d.set_up(IMMEDIATE, "Scale Out Clinic")
        apis = [d.serve(), d.serve()]
        workers = [d.worker(batch_size=200) for _ in range(4)]
        started = time.monotonic()
        # The workers run while the triggers come in, on both servers at once.
        d.trigger([client for _, client in apis], N_SCALE, chunk=1000)
        triggered = time.monotonic()
        assert d.scalar("SELECT count(*) FROM journey_instances WHERE org_id = :o") == N_SCALE
        wait_for(
            "every instance to complete and every message to go out",
            d.all_done,
            started + 300,
            alive=[p for p, _ in apis] + workers,
        )
        print(
            f"\n[scale-out] {N_SCALE} instances triggered in {triggered - started:.1f}s, "
            f"all done after {time.monotonic() - started:.1f}s"
        )
        assert_every_step_ran_exactly_once(d, N_SCALE, IMMEDIATE_SMS)
        for proc, _ in apis:
            assert proc.poll() is None
        for proc in workers:
            assert proc.poll() is None
            assert terminate(proc) in (0, -signal.SIGTERM)


# ---------------------------------------------------------------- 2. SIGKILL, ten times
N_KILL = 4000
KILLS = 10


def test_sigkill_a_worker_ten_times(tmp_path: Path) -> None:
    with deployment(tmp_path) as d:
        d.set_up(waiting_journey(1), "Scale Out Clinic")
        proc, client = d.serve()
        d.trigger([client], N_KILL)
        terminate(proc)
        assert d.scalar("SELECT count(*) FROM journey_instances WHERE org_id = :o") == N_KILL
        total = N_KILL * len(WAITING_SMS)

        started = time.monotonic()
        deadline = started + 300
        rng = random.Random()
        workers = [d.worker(batch_size=100), d.worker(batch_size=100)]
        killed_at: list[int] = []
        for kills in range(KILLS):
            before = d.sms_queued()
            assert before < total, f"the workers finished after only {kills} kill(s)"
            # Spread the kills over the run: each after a random share of what is left, then at
            # a random moment in what follows (inside a batch, between a commit and delivery, ...).
            target = before + rng.randint(1, max(1, (total - before) // (KILLS + 2 - kills)))
            wait_for("some progress", lambda t=target: d.sms_queued() >= t, deadline, alive=workers)
            time.sleep(rng.uniform(0.0, 0.1))
            progress = d.sms_queued()
            assert progress < total, f"the workers finished before kill {kills + 1}"
            victim = rng.randrange(2)
            kill9(workers[victim])
            killed_at.append(progress)
            workers[victim] = d.worker(batch_size=100)
        wait_for(
            "every instance to complete and every message to go out", d.all_done, deadline, alive=workers
        )
        print(
            f"\n[sigkill] {KILLS} kills at {killed_at} of {total} sends; "
            f"all done after {time.monotonic() - started:.1f}s"
        )
        assert_every_step_ran_exactly_once(d, N_KILL, WAITING_SMS, waits=2)
        for w in workers:
            assert terminate(w) in (0, -signal.SIGTERM)


# ---------------------------------------------------------------- 3. PostgreSQL restarts
N_RESTART = 2000


def postgres_cluster() -> str:
    """The version of the local cluster `main` on port 5432, for pg_ctlcluster."""
    reason = None
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_isready") is None:
        reason = "pg_ctlcluster/pg_isready are not installed"
    elif os.geteuid() != 0:
        reason = "pg_ctlcluster needs root here"
    else:
        versions = sorted(p.parent.name for p in Path("/etc/postgresql").glob("*/main"))
        if shutil.which("pg_lsclusters"):
            listed = subprocess.run(
                ["pg_lsclusters", "--no-header"], capture_output=True, text=True, timeout=30
            )
            on_5432 = {
                f[0]
                for f in (line.split() for line in listed.stdout.splitlines())
                if f[1:3] == ["main", "5432"]
            }
            versions = [v for v in versions if v in on_5432]
        if len(versions) == 1:
            return versions[0]
        reason = f"no single PostgreSQL cluster 'main' on port 5432 in /etc/postgresql ({versions})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
    pytest.skip(reason)


def pg_ctl(version: str, action: str) -> None:
    args = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
    if action == "stop":
        args += ["-m", "fast"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"


def postgres_ready() -> bool:
    done = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], timeout=30)
    return done.returncode == 0


def ensure_postgres_running(version: str) -> None:
    if postgres_ready():
        return
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
        capture_output=True,
        timeout=120,
    )
    deadline = time.monotonic() + 60
    while not postgres_ready() and time.monotonic() < deadline:
        time.sleep(0.2)


def assert_unavailable(r: httpx.Response) -> None:
    """503 with the MedChat error body (a JSON array of messages) and a Retry-After header."""
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body, list) and body and all(isinstance(m, str) for m in body), body
    assert "retry-after" in r.headers
    assert int(r.headers["retry-after"]) > 0


def test_postgres_restart_during_a_run(tmp_path: Path) -> None:
    require_postgres()
    version = postgres_cluster()
    with deployment(tmp_path) as d:
        d.set_up(waiting_journey(3), "Scale Out Clinic")
        api, client = d.serve()
        workers = [d.worker(batch_size=200), d.worker(batch_size=200)]
        started = time.monotonic()
        deadline = started + 300
        d.trigger([client], N_RESTART)
        total = N_RESTART * len(WAITING_SMS)
        search_body = {
            "filterSpecification": {
                "type": "JourneyParameterSpecification",
                "parameterName": "key",
                "operator": "equals",
                "rightOperand": key(0),
            },
            "includeParameters": True,
        }
        r = client.post(d.instances_url("/search"), json=search_body, headers=d.headers)
        assert r.status_code == 200, r.text
        assert [i["parameters"]["key"] for i in r.json()] == [key(0)]

        # Some work done, some left (the waits keep it going for seconds).
        wait_for("the first sends", lambda: d.sms_queued() >= N_RESTART, deadline, alive=[api, *workers])
        assert d.sms_queued() < total
        try:
            pg_ctl(version, "stop")
            assert not postgres_ready()
            # While it is down: the API says "retry later", it does not fail with a 500.
            assert_unavailable(client.post(d.instances_url("/search"), json=search_body, headers=d.headers))
            assert_unavailable(
                client.post(
                    d.instances_url("/bulk"),
                    json={
                        "flowId": None,
                        "timeZone": "America/Chicago",
                        "instances": [
                            {"parameters": {"key": "DOWN", "phone": phone(0), "altPhone": alt_phone(0)}}
                        ],
                    },
                    headers=d.headers,
                )
            )
            assert_unavailable(client.get(d.instances_url("/00000000000000000000000000"), headers=d.headers))
            time.sleep(3)  # the workers' batches fail meanwhile
            for proc in [api, *workers]:
                assert proc.poll() is None, f"{proc.args[3]} exited while the database was down"
        finally:
            ensure_postgres_running(version)
        assert postgres_ready()
        restarted = time.monotonic()

        # Back up: the API answers again at once, and the workers finish the run.
        r = client.post(d.instances_url("/search"), json=search_body, headers=d.headers)
        assert r.status_code == 200, r.text
        assert [i["parameters"]["key"] for i in r.json()] == [key(0)]
        progress_at_restart = d.sms_queued()
        wait_for(
            "every instance to complete and every message to go out",
            d.all_done,
            deadline,
            alive=[api, *workers],
        )
        print(
            f"\n[restart] {progress_at_restart} of {total} sends done when PostgreSQL came back; "
            f"all done {time.monotonic() - restarted:.1f}s later ({time.monotonic() - started:.1f}s in all)"
        )
        # The bulk request that got a 503 created nothing.
        assert d.scalar("SELECT count(*) FROM journey_instances WHERE org_id = :o") == N_RESTART
        assert_every_step_ran_exactly_once(d, N_RESTART, WAITING_SMS, waits=2)
        r = client.post(d.instances_url("/search"), json=search_body, headers=d.headers)
        assert r.status_code == 200, r.text
        assert [(i["parameters"]["key"], i["status"]) for i in r.json()] == [(key(0), "Completed")]
        # The API server and the workers reconnected rather than crashed.
        for proc in [api, *workers]:
            assert proc.poll() is None, f"{proc.args[3]} exited"
        for w in workers:
            assert terminate(w) in (0, -signal.SIGTERM)


# ---------------------------------------------------------------- 4. SIGTERM
N_TERM = 5000
BIG_BATCH = 2000

# The worker's sessions that are inside a batch: their open transaction has locked or changed
# instance rows (claiming, locking or renewing a batch, or writing its steps' effects), and it is
# not a delivery pass (which updates the outbox without writing events). Plain reads (the next
# due time) take no row-level lock and do not count. With each, the transaction's full 64-bit
# id, so we can ask afterwards whether it committed.
_MID_BATCH = """
SELECT a.pid, a.backend_xid::text AS xid, pg_snapshot_xmax(pg_current_snapshot())::text AS xmax,
       left(a.query, 60) AS query
FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'relation'
JOIN pg_class c ON c.oid = l.relation
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL
GROUP BY a.pid, a.backend_xid, a.query
HAVING bool_or(c.relname = 'journey_instances' AND l.mode IN ('RowShareLock', 'RowExclusiveLock'))
   AND (bool_or(c.relname = 'instance_events' AND l.mode = 'RowExclusiveLock')
        OR NOT bool_or(c.relname = 'outbox' AND l.mode = 'RowExclusiveLock'))
"""


def completed(d: Deployment) -> int:
    return int(d.scalar("SELECT count(*) FROM journey_instances WHERE org_id = :o AND status = 'Completed'"))


def full_xid(xid: str, xmax: str) -> int:
    """A 32-bit xid as a 64-bit one, with the epoch of a nearby 64-bit xid (a snapshot's xmax,
    which an xid still in progress may equal or pass)."""
    low, near = int(xid), int(xmax)
    epoch = near >> 32
    diff = low - (near & 0xFFFFFFFF)
    if diff > 2**31:
        epoch -= 1
    elif diff < -(2**31):
        epoch += 1
    return (epoch << 32) | low


def test_sigterm_finishes_the_batch(tmp_path: Path) -> None:
    with deployment(tmp_path) as d:
        d.set_up(IMMEDIATE, "Scale Out Clinic")
        api, client = d.serve()
        d.trigger([client], N_TERM)
        terminate(api)  # from here on the worker is the only other session on the database
        assert d.scalar("SELECT count(*) FROM journey_instances WHERE org_id = :o") == N_TERM

        started = time.monotonic()
        deadline = started + 180
        proc = d.worker(batch_size=BIG_BATCH)
        # Once its first batch has committed, catch it inside its next batch and SIGTERM it.
        wait_for("the first batch", lambda: d.sms_queued() > 0, deadline, alive=[proc])
        while True:
            assert proc.poll() is None, f"the worker exited with {proc.returncode}"
            assert time.monotonic() < deadline, "never saw the worker inside a batch"
            completed_before = completed(d)
            assert completed_before < N_TERM - BIG_BATCH, "missed the second batch"
            with d.engine.connect() as conn:
                mid_batch = [dict(r) for r in conn.execute(sa.text(_MID_BATCH)).mappings()]
            if mid_batch:
                proc.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                break
            time.sleep(0.01)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker did not exit within 30 s of SIGTERM")
        took = time.monotonic() - signalled
        print(f"\n[sigterm] the worker exited {took:.1f}s after SIGTERM with code {code}")
        assert code in (0, -signal.SIGTERM), code

        # The batch it was in when told to stop was finished, not abandoned: the transaction we
        # saw committed, and more instances completed than before the signal.
        print(f"[sigterm] signalled inside {mid_batch}")
        with d.engine.connect() as conn:
            for x in mid_batch:
                if x["xid"] is None:  # it had locked no row yet
                    continue
                status = conn.execute(
                    sa.text("SELECT pg_xact_status(CAST(:x AS text)::xid8)"),
                    {"x": str(full_xid(x["xid"], x["xmax"]))},
                ).scalar_one()
                assert status == "committed", (x, status)

        # Nothing is half-done: an instance either ran all three sends (events and outbox rows
        # alike) and completed, or ran none and is still due.
        events: dict[str, list[tuple[int | None, str]]] = {}
        for e in d.rows("SELECT instance_id, step_id, kind FROM instance_events WHERE org_id = :o"):
            events.setdefault(e["instance_id"], []).append((e["step_id"], e["kind"]))
        outbox: dict[str, list[int]] = {}
        for m in d.rows("SELECT instance_id, step_id FROM outbox WHERE org_id = :o"):
            outbox.setdefault(m["instance_id"], []).append(m["step_id"])
        status = {
            r["instance_id"]: r["status"]
            for r in d.rows("SELECT instance_id, status FROM journey_instances WHERE org_id = :o")
        }
        shapes: Counter[str] = Counter()
        for iid, s in status.items():
            kinds = [k for _, k in events.get(iid, [])]
            queued = sorted(step for step, k in events.get(iid, []) if k == "sms_queued")
            assert queued == sorted(outbox.get(iid, [])), (iid, events.get(iid), outbox.get(iid))
            if s == "Completed":
                assert queued == [1, 2, 3] and kinds.count("completed") == 1, (iid, s, events.get(iid))
            else:
                assert s == "InProgress" and queued == [] and set(kinds) <= {"started"}, (
                    iid,
                    s,
                    events.get(iid),
                )
            shapes[s] += 1
        print(f"[sigterm] after the exit: {dict(shapes)}; {completed_before} had completed at the signal")
        assert shapes["Completed"] > completed_before, (shapes, completed_before)
        # It stopped after the batch in hand instead of running everything.
        assert shapes["Completed"] < N_TERM, shapes

        # A new worker completes the rest, exactly once.
        proc = d.worker(batch_size=BIG_BATCH)
        wait_for("every instance to complete and every message to go out", d.all_done, deadline, alive=[proc])
        assert_every_step_ran_exactly_once(d, N_TERM, IMMEDIATE_SMS)
        assert terminate(proc) in (0, -signal.SIGTERM)
