"""`journeys fhir set|list|remove` as a user runs them, with their bad inputs, on the suite's
database (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import JOURNEYS, clean_env
from support.databases import own_database
from support.mllp import EXAMPLE_JOURNEY, EXAMPLE_MAPPING

ROOT = Path(__file__).resolve().parent.parent
FHIR_MAPPING = ROOT / "examples" / "feeds" / "appointment-reminder.fhir.yaml"


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[str]:
    with own_database(tmp_path) as url:
        yield url


def journeys(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOURNEYS, "--db", db, *args], env=clean_env(), capture_output=True, text=True, timeout=120
    )


def _demo(db: str) -> str:
    org = json.loads(journeys(db, "org", "create", "Demo Clinic", "--json").stdout)["id"]
    assert journeys(db, "journey", "publish", str(EXAMPLE_JOURNEY), "--org", org).returncode == 0
    return str(org)


def test_set_list_and_remove(db: str) -> None:
    org = _demo(db)
    stored = journeys(db, "fhir", "set", str(FHIR_MAPPING), "--json")
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["feed"] == "ehr-fhir" and json.loads(stored.stdout)["org"] == org
    assert journeys(db, "fhir", "set", str(FHIR_MAPPING)).returncode == 0  # again: replaced
    listed = json.loads(journeys(db, "fhir", "list", "--org", org, "--json").stdout)
    assert [(f["feed"], f["kind"]) for f in listed] == [("ehr-fhir", "fhir")]
    removed = journeys(db, "fhir", "remove", "--org", org, "--feed", "ehr-fhir")
    assert removed.returncode == 0 and "removed feed ehr-fhir" in removed.stdout
    assert json.loads(journeys(db, "fhir", "list", "--org", org, "--json").stdout) == []
    log = [
        json.loads(line)
        for line in journeys(db, "audit", "export", "--org", org, "--json").stdout.splitlines()
    ]
    assert [e["action"] for e in log if e["action"].startswith("feed.")] == [
        "feed.set",
        "feed.set",
        "feed.remove",
    ]


def test_bad_inputs(db: str, tmp_path: Path) -> None:
    org = _demo(db)
    hl7 = journeys(db, "fhir", "set", str(EXAMPLE_MAPPING))
    assert hl7.returncode == 1 and "kind: must be fhir for a stored feed" in hl7.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        FHIR_MAPPING.read_text()
        .replace("Appointment.id", "Appointment..id")
        .replace("cancelled: cancel", "canceled: cancel")
    )
    problems = journeys(db, "fhir", "set", str(bad))
    assert problems.returncode == 1
    assert f"{bad}:17: parameters.appointmentId: 'Appointment..id' is not a FHIR path" in problems.stderr
    assert f"{bad}:25: statuses.canceled: not an Appointment status" in problems.stderr
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(FHIR_MAPPING.read_text().replace("journey: Appointment Reminder", "journey: Nope"))
    unbound = journeys(db, "fhir", "set", str(elsewhere))
    assert unbound.returncode == 1 and "the org has no journey with the id or name 'Nope'" in unbound.stderr
    no_api = tmp_path / "no-api.yaml"
    no_api.write_text(FHIR_MAPPING.read_text() + "patient_api: ehr\n")
    unregistered = journeys(db, "fhir", "set", str(no_api))
    assert unregistered.returncode == 1
    assert "patient_api: the org has no registered API 'ehr' (journeys api set)" in unregistered.stderr
    missing = journeys(db, "fhir", "set", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    nobody = journeys(db, "fhir", "list", "--org", "no-such-org")
    assert nobody.returncode == 1 and "unknown org no-such-org" in nobody.stderr
    gone = journeys(db, "fhir", "remove", "--org", org, "--feed", "never")
    assert gone.returncode == 1 and f"org {org} has no feed never" in gone.stderr
    for proc in (hl7, problems, unbound, missing, nobody, gone):
        assert "Traceback" not in proc.stderr
    assert json.loads(journeys(db, "fhir", "list", "--org", org, "--json").stdout) == []
