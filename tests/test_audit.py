"""The audit log: entries chained by hash per org, ids and counts only, tampering found by
`verify`, concurrent writers never fork a chain; `journeys audit export|verify`; the CLI's
state-changing commands recorded. Runs on the suite's database (SQLite or PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from support.databases import make_postgres_database, require_postgres
from support.keys import strong_key

from journeys.accounts import audit
from journeys.accounts.audit import Action, ActorKind, AuditEntry
from journeys.accounts.service import create_org
from journeys.store.db import create_db_engine, read_only, transaction
from journeys.store.migrate import upgrade

START = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent
_ENTRY_POINT = Path(sys.executable).parent / "journeys"
JOURNEYS = [str(_ENTRY_POINT)] if _ENTRY_POINT.exists() else [sys.executable, "-m", "journeys.cli"]


def new_org(engine: Engine) -> str:
    with transaction(engine) as conn:
        return create_org(conn, "Audit Clinic", START).id


@pytest.fixture()
def org(engine: Engine) -> str:
    return new_org(engine)


def entry(org: str, n: int = 0, **kw: Any) -> AuditEntry:
    values: dict[str, object] = {
        "org_id": org,
        "at": START + timedelta(seconds=n),
        "actor_kind": ActorKind.USER,
        "actor_id": "01a22cf8-user",
        "action": Action.INSTANCE_VIEW,
        "target_kind": "instance",
        "target_ids": (f"instance-{n}",),
        "count": 1,
        "client_address": "192.0.2.10",
    }
    values.update(kw)
    return AuditEntry(**values)  # type: ignore[arg-type]


def record_many(engine: Engine, org: str, n: int) -> list[audit.AuditRecord]:
    out = []
    for i in range(n):
        with transaction(engine) as conn:
            out.append(audit.record(conn, entry(org, i)))
    return out


def verify(engine: Engine, org: str) -> audit.Verification:
    with read_only(engine) as conn:
        return audit.verify(conn, org)


def test_entries_chain_by_hash_per_org(engine: Engine, org: str) -> None:
    other = new_org(engine)
    recs = record_many(engine, org, 3)
    with transaction(engine) as conn:
        first_other = audit.record(conn, entry(other))
    assert [r.seq for r in recs] == [1, 2, 3] and first_other.seq == 1
    assert recs[0].prev_hash == audit.GENESIS == first_other.prev_hash
    assert recs[1].prev_hash == recs[0].hash and recs[2].prev_hash == recs[1].hash
    # The hash is SHA-256 over the previous hash and the canonical entry.
    fields = {
        "at": "2026-11-02T16:00:01.000000Z",
        "actor": ["user", "01a22cf8-user"],
        "action": "instance.view",
        "target": ["instance", ["instance-1"]],
        "count": 1,
        "client": "192.0.2.10",
    }
    body = json.dumps({"org": org, "seq": 2, **fields}, sort_keys=True, separators=(",", ":"))
    assert recs[1].hash == hashlib.sha256(f"{recs[0].hash}\n{body}".encode()).hexdigest()
    assert verify(engine, org) == audit.Verification(3) and verify(engine, other).ok
    with read_only(engine) as conn:
        exported = [r.wire() for r in audit.export(conn, org)]
        later = [r.seq for r in audit.export(conn, org, since=START + timedelta(seconds=1))]
    assert exported[0] == {
        "orgId": org, "seq": 1, "at": "2026-11-02T16:00:00.000000Z",
        "actor": {"kind": "user", "id": "01a22cf8-user"}, "action": "instance.view",
        "target": {"kind": "instance", "ids": ["instance-0"]}, "count": 1, "clientAddress": "192.0.2.10",
        "prevHash": audit.GENESIS, "hash": recs[0].hash,
    }  # fmt: skip
    assert later == [2, 3]
    assert verify(engine, new_org(engine)) == audit.Verification(0)  # an empty log is intact


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target_ids": ("John Smith",)}, "each target id must be an id"),
        ({"target_ids": ("+1 312 555 0100",)}, "each target id must be an id"),
        ({"actor_id": "ann smith"}, "actor_id must be an id"),
        ({"target_kind": "Patient Name"}, "target_kind must be a lower-case name"),
        ({"client_address": "not-an-ip"}, "client_address must be an IP address"),
        ({"count": -1}, "count must not be negative"),
        ({"at": datetime(2026, 11, 2, 16, 0)}, "aware"),
        ({"target_ids": tuple(f"i{n}" for n in range(101))}, "at most 100 target ids"),
    ],
)
def test_an_entry_holds_ids_and_counts_only(org: str, change: dict[str, Any], message: str) -> None:
    with pytest.raises(audit.AuditError, match=message):
        entry(org, **change)
    with pytest.raises(ValueError):
        entry(org, action="instance.delete_everything")


@pytest.mark.parametrize(
    ("tamper", "broken", "problem"),
    [
        ("UPDATE audit_log SET count = 99 WHERE org_id = :o AND seq = 3", 3, "entry 3 was changed"),
        ("UPDATE audit_log SET actor_id = 'mallory' WHERE org_id = :o AND seq = 1", 1, "entry 1 was changed"),
        ("DELETE FROM audit_log WHERE org_id = :o AND seq = 2", 2, "entry 2 is missing (the next one is 3)"),
        (
            "DELETE FROM audit_log WHERE org_id = :o AND seq = 5",
            5,
            "entry 5 is missing (the chain's head is 5)",
        ),
        ("UPDATE audit_log SET prev_hash = hash WHERE org_id = :o AND seq = 4", 4, "entry 4 does not follow"),
    ],
)
def test_verify_finds_the_first_broken_link(
    engine: Engine, org: str, tamper: str, broken: int, problem: str
) -> None:
    record_many(engine, org, 5)
    with transaction(engine) as conn:
        conn.execute(sa.text(tamper), {"o": org})
    result = verify(engine, org)
    assert (result.ok, result.broken_seq, result.checked) == (False, broken, broken - 1)
    assert result.problem is not None and result.problem.startswith(problem), result.problem


def test_rewriting_an_entry_with_a_recomputed_hash_breaks_the_next_link(engine: Engine, org: str) -> None:
    record_many(engine, org, 3)
    with transaction(engine) as conn:
        conn.execute(
            sa.text("UPDATE audit_log SET hash = :h WHERE org_id = :o AND seq = 2"), {"o": org, "h": "f" * 64}
        )
    result = verify(engine, org)
    assert (
        result.broken_seq == 2
    )  # its own hash no longer matches; had it been recomputed, 3's link would break


def _concurrent_appends(engine: Engine, org: str, writers: int, each: int) -> None:
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            barrier.wait()
            for i in range(each):
                with transaction(engine) as conn:
                    audit.record(conn, entry(org, w * 1000 + i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    result = verify(engine, org)
    assert result == audit.Verification(writers * each), result
    with read_only(engine) as conn:
        seqs = [r.seq for r in audit.export(conn, org)]
    assert seqs == list(range(1, writers * each + 1))


def test_concurrent_writers_do_not_fork_the_chain(engine: Engine, org: str) -> None:
    """Writers start at once on an org without entries (the chain's head does not exist yet)."""
    _concurrent_appends(engine, org, writers=6, each=10)


@pytest.mark.postgres_only
def test_concurrent_writers_do_not_fork_the_chain_on_postgresql() -> None:
    require_postgres()
    url, drop = make_postgres_database()
    eng = create_db_engine(url, pool_size=8)
    try:
        upgrade(eng)
        _concurrent_appends(eng, new_org(eng), writers=8, each=15)
    finally:
        eng.dispose()
        drop()


# ---------------------------------------------------------------------------- the CLI
def run(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
    return subprocess.run(
        [*JOURNEYS, "--db", database_url, *args],
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_audit_commands(engine: Engine, database_url: str, tmp_path: Path, org: str) -> None:
    record_many(engine, org, 3)
    proc = run(database_url, tmp_path, "audit", "verify", "--org", org)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0,
        f"audit log of {org}: 3 entries, chain intact\n",
        "",
    )
    proc = run(
        database_url, tmp_path, "audit", "export", "--org", org, "--json", "--since", "2026-11-02T16:00:01Z"
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["seq"] for e in lines] == [2, 3] and lines[0]["actor"] == {
        "kind": "user",
        "id": "01a22cf8-user",
    }
    text = run(database_url, tmp_path, "audit", "export", "--org", org).stdout.splitlines()
    assert text[0].startswith(
        "1  2026-11-02T16:00:00.000000Z  user:01a22cf8-user  instance.view  instance:instance-0"
    )
    assert len(text) == 4 and "audit.export" in text[3]  # the first export was recorded

    for args, code, message in [
        (
            ("audit", "export", "--org", org, "--since", "yesterday"),
            2,
            "--since 'yesterday': use an ISO 8601 time",
        ),
        (("audit", "export", "--org", "no-such-org"), 1, "unknown org no-such-org"),
        (("audit", "verify", "--org", "no-such-org"), 1, "unknown org no-such-org"),
    ]:
        proc = run(database_url, tmp_path, *args)
        assert (proc.returncode, proc.stdout) == (code, ""), (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, proc.stderr

    with transaction(engine) as conn:
        conn.execute(sa.text("UPDATE audit_log SET count = 7 WHERE org_id = :o AND seq = 2"), {"o": org})
    proc = run(database_url, tmp_path, "audit", "verify", "--org", org)
    assert (proc.returncode, proc.stdout) == (1, "")
    changed = "entry 2 was changed (its hash does not match its content)"
    assert proc.stderr == f"error: audit log of {org} is broken at entry 2: {changed}\n"
    proc = run(database_url, tmp_path, "audit", "verify", "--org", org, "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["brokenSeq"] == 2


def test_cli_state_changing_commands_are_recorded_without_patient_data(
    database_url: str, tmp_path: Path, org: str
) -> None:
    def ok(*args: str) -> str:
        proc = run(database_url, tmp_path, *args)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    journey = json.loads(ok("journey", "publish", str(ROOT / "examples" / "appointment-reminder.yaml"),
                            "--org", org, "--json"))  # fmt: skip
    ok("optout", "add", "--org", org, "--phone", "+13125550199", "--reason", "asked at the desk")
    ok("optout", "add", "--org", org, "--phone", "+13125550199")  # unchanged: nothing to record
    ok("optout", "remove", "--org", org, "--phone", "+13125550199")
    reply = json.loads(ok("reply", "--org", org, "--from", "+13125550199", "--body", "Hello there", "--json"))
    ok("cancel", "--org", org, "--journey", journey["id"], "--all", "--dry-run")  # changes nothing
    ok("cancel", "--org", org, "--journey", journey["id"], "--all")
    exported = [json.loads(line) for line in ok("audit", "export", "--org", org, "--json").splitlines()]
    assert [(e["action"], e["target"], e["count"]) for e in exported] == [
        ("journey.publish", {"kind": "journey", "ids": [journey["id"]]}, None),
        ("optout.add", {"kind": "sms_consent", "ids": []}, 1),
        ("optout.remove", {"kind": "sms_consent", "ids": []}, 1),
        ("reply.receive", {"kind": "inbound_message", "ids": [reply["id"]]}, 1),
        ("instances.cancel", {"kind": "journey", "ids": [journey["id"]]}, 0),
    ]
    assert {e["actor"]["kind"] for e in exported} == {"cli"} and all(e["actor"]["id"] for e in exported)
    dump = json.dumps(exported)
    for phi in ("3125550199", "Hello", "desk"):
        assert phi not in dump
    assert "chain intact" in ok("audit", "verify", "--org", org)


def test_cli_org_token_journey_and_channel_commands_are_recorded(database_url: str, tmp_path: Path) -> None:
    def ok(*args: str, **env: str) -> str:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
        proc = subprocess.run(
            [*JOURNEYS, "--db", database_url, *args],
            cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    org = json.loads(ok("org", "create", "Recorded Clinic", "--json"))["id"]
    token = json.loads(ok("token", "create", "--org", org, "--name", "ehr", "--json"))["id"]
    ok("token", "revoke", token)
    journey = json.loads(ok("journey", "publish", str(ROOT / "examples" / "appointment-reminder.yaml"),
                            "--org", org, "--json"))["id"]  # fmt: skip
    settings = ("host=smtp.example.org", "port=587", "security=starttls", "username=u",
                "password=secret-password", "from_address=c@example.org")  # fmt: skip
    smtp = [arg for setting in settings for arg in ("--set", setting)]
    key = strong_key("audit-cli")
    ok("channel", "set", "--org", org, "--channel", "email", "--provider", "smtp", *smtp,
       JOURNEYS_SECRET_KEY=key)  # fmt: skip
    ok("channel", "remove", "--org", org, "--channel", "email")
    exported = [json.loads(line) for line in ok("audit", "export", "--org", org, "--json").splitlines()]
    assert [(e["action"], e["target"]) for e in exported] == [
        ("org.create", {"kind": "org", "ids": [org]}),
        ("token.create", {"kind": "token", "ids": [token]}),
        ("token.revoke", {"kind": "token", "ids": [token]}),
        ("journey.publish", {"kind": "journey", "ids": [journey]}),
        ("channel.set", {"kind": "channel", "ids": ["email"]}),
        ("channel.remove", {"kind": "channel", "ids": ["email"]}),
    ]
    assert "secret-password" not in json.dumps(exported)
