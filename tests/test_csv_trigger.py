"""`journeys trigger --csv`: a spreadsheet's rows started through the bulk trigger, on the suite's
database (SQLite, or PostgreSQL with JOURNEYS_TEST_DATABASE=postgresql). The appointment times
are far in the future, so nothing depends on the wall clock."""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from support.cli import JOURNEYS, clean_env
from support.databases import own_database

from journeys.store.db import create_db_engine, read_only

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "appointment-reminder.yaml"
HEADER = "patientId,patientName,appointmentId,appointmentDateTime\n"


@dataclass
class Env:
    url: str
    cwd: Path
    org: str = ""
    journey: str = ""

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*JOURNEYS, "--db", self.url, *args],
            cwd=self.cwd,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def csv(
        self, content: str | bytes, *extra: str, name: str = "rows.csv"
    ) -> subprocess.CompletedProcess[str]:
        path = self.cwd / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return self.run(
            "trigger",
            "--org",
            self.org,
            "--journey",
            self.journey,
            "--csv",
            str(path),
            "--tz",
            "America/Chicago",
            *extra,
        )

    def count(self, sql: str) -> int:
        engine = create_db_engine(self.url)
        try:
            with read_only(engine) as conn:
                return int(conn.execute(text(sql), {"org": self.org}).scalar_one())
        finally:
            engine.dispose()

    def instances(self) -> int:
        return self.count("SELECT count(*) FROM journey_instances WHERE org_id = :org")


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with own_database(tmp_path) as url:
        e = Env(url, tmp_path)
        out = e.run("org", "create", "Clinic", "--json")
        e.org = json.loads(out.stdout)["id"]
        out = e.run("journey", "publish", "--org", e.org, str(EXAMPLE), "--json")
        assert out.returncode == 0, out.stderr
        e.journey = _journey_id(json.loads(out.stdout))
        yield e


def _journey_id(published: Any) -> str:
    return str(published.get("id") or published.get("chatBotId") or published["journeyId"])


def _row(n: int, when: str = "2099-03-0{d} 09:00") -> str:
    return f"p{n},Pat {n},A{n},{when.format(d=1 + n % 8)}\n"


def test_good_file_triggers_every_row(env: Env) -> None:
    out = env.csv(HEADER + "".join(_row(n) for n in range(1, 6)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "triggered 5, rejected 0"
    assert env.instances() == 5
    assert (
        env.count("SELECT count(*) FROM audit_log WHERE org_id = :org AND action = 'instances.trigger'") == 1
    )


def test_dry_run_writes_nothing(env: Env) -> None:
    out = env.csv(HEADER + _row(1) + _row(2), "--dry-run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "would trigger 2, rejected 0"
    assert env.instances() == 0


def test_bad_rows_are_rejected_with_line_numbers_and_the_rest_triggered(env: Env) -> None:
    assert env.csv(HEADER + _row(9), name="first.csv").returncode == 0  # A9 is active now
    content = (
        HEADER
        + _row(1)  # line 2
        + "p2,Pat 2,,2099-03-01 09:00\n"  # line 3: appointmentId missing
        + "p3,Pat 3,A3,next tuesday\n"  # line 4: bad datetime
        + _row(1)  # line 5: duplicate of line 2
        + _row(9)  # line 6: active instance
        + _row(6)  # line 7
    )
    report = env.cwd / "report.csv"
    out = env.csv(content, "--report", str(report), "--json")
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout)
    assert result["triggered"] == 2
    assert len(result["batchIds"]) == 1
    rows = {r["row"]: r["problems"] for r in result["rejected"]}
    assert sorted(rows) == [3, 4, 5, 6]
    assert rows[3] == ["appointmentId: required parameter is missing"]  # an empty cell is left out
    assert rows[4][0].startswith("appointmentDateTime: ")
    assert "also given at row 2" in rows[5][0]
    assert "an active instance already exists" in rows[6][0]
    assert env.instances() == 3
    with report.open(newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    assert lines[0] == ["row", "problem"]
    assert [int(r[0]) for r in lines[1:]] == [3, 4, 5, 6]


def test_map_and_bom(env: Env) -> None:
    content = "\ufeffPatient,patientName,Appt,appointmentDateTime\n" + _row(1)
    out = env.csv(content.encode("utf-8"), "--map", "Patient=patientId", "--map", "appt=AppointmentId")
    assert out.returncode == 0, out.stderr
    assert env.instances() == 1


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("", (), "the file is empty"),
        ("\n\n", (), "the file is empty"),
        (",,\n" + _row(1), (), "header row"),
        ("patientId,PatientId,appointmentId\n", (), "duplicate column headers"),
        (HEADER, (), "no rows"),
        (HEADER + _row(1), ("--map", "nope=patientId"), "no column 'nope'"),
        (HEADER + _row(1), ("--map", "patientId=nope"), "no parameter 'nope'"),
    ],
)
def test_usage_errors_exit_2(env: Env, content: str, extra: tuple[str, ...], message: str) -> None:
    out = env.csv(content, *extra)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert message in out.stderr
    assert env.instances() == 0


def test_bad_tz_unknown_org_and_journey_exit_2(env: Env) -> None:
    path = env.cwd / "rows.csv"
    path.write_text(HEADER + _row(1), encoding="utf-8")
    base = ["trigger", "--csv", str(path)]
    out = env.run(*base, "--org", env.org, "--journey", env.journey, "--tz", "Mars/Olympus")
    assert out.returncode == 2 and "--tz" in out.stderr
    out = env.run(*base, "--org", "nope", "--journey", env.journey, "--tz", "UTC")
    assert out.returncode == 2 and "unknown journey" in out.stderr
    out = env.run(*base, "--org", env.org, "--journey", "nope", "--tz", "UTC")
    assert out.returncode == 2 and "unknown journey" in out.stderr
    out = env.run(
        "trigger",
        "--csv",
        str(env.cwd / "missing.csv"),
        "--org",
        env.org,
        "--journey",
        env.journey,
        "--tz",
        "UTC",
    )
    assert out.returncode == 2 and "cannot read" in out.stderr
    assert env.instances() == 0


def test_json_shape(env: Env) -> None:
    out = env.csv(HEADER + _row(1) + "p2,Pat 2,A2,\n", "--json")
    assert out.returncode == 1
    result = json.loads(out.stdout)
    assert set(result) == {"dryRun", "triggered", "rejected", "batchIds", "stopped"}
    assert result["dryRun"] is False and result["triggered"] == 1 and result["stopped"] is None
    assert result["rejected"] == [
        {"row": 3, "problems": ["appointmentDateTime: required parameter is missing"]}
    ]


def test_line_numbers_count_blank_lines_and_quoted_newlines() -> None:
    from journeys.definitions.loader import load_definition_file
    from journeys.instances.csv_import import read_rows

    defn = load_definition_file(EXAMPLE)
    content = HEADER + '"p1","Pat\nOne",A1,2099-03-01 09:00\n\n' + _row(2)
    rows = read_rows(content.encode("utf-8"), defn)
    assert [r.line for r in rows] == [2, 5]
    assert dict(rows[0].parameters)["patientName"] == "Pat\nOne"
