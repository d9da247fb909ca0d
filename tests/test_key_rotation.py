"""`journeys keys status|rotate`: moving to a new JOURNEYS_SECRET_KEY. With the old key listed in
JOURNEYS_PREVIOUS_SECRET_KEYS, every org's data key is rewrapped and every sealed secret resealed;
afterwards the new key alone reads everything. Without the old key the command refuses, naming
the org, and changes nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from support.cli import JOURNEYS, clean_env
from support.databases import own_database
from support.keys import strong_key

from journeys.keys.box import SecretBox
from journeys.keys.envelope import LocalKeyProvider
from journeys.keys.material import secret_bytes
from journeys.keys.service import keyring
from journeys.messaging.org_channels import org_channel
from journeys.store.channels import set_channel
from journeys.store.db import create_db_engine, read_only, transaction

NOW = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)
OLD = strong_key("rotation: old")
NEW = strong_key("rotation: new")
AUTH_TOKEN = "tw-auth-token-0123456789abcdef"


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[str]:
    with own_database(tmp_path) as url:
        yield url


def journeys(db: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOURNEYS, "--db", db, *args], env=clean_env(**env), capture_output=True, text=True, timeout=120
    )


def ok_json(db: str, *args: str, **env: str) -> Any:
    proc = journeys(db, *args, "--json", **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def org_with_old_keys(db: str) -> tuple[str, bytes]:
    """An org whose data key and Twilio credentials were made under OLD; a value sealed with it."""
    org = ok_json(db, "org", "create", "Rotation Clinic")["id"]
    config = ["account_sid=AC0123", f"auth_token={AUTH_TOKEN}", "from=+13125550100"]
    settings = [arg for item in config for arg in ("--set", item)]
    proc = journeys(
        db, "channel", "set", "--org", org, "--channel", "sms", "--provider", "twilio", *settings,
        JOURNEYS_SECRET_KEY=OLD,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    engine = create_db_engine(db)
    with transaction(engine) as conn:
        sealed = keyring(conn, LocalKeyProvider(secret_bytes(OLD)), org, NOW).seal("Jane Doe")
    engine.dispose()
    return org, sealed


def test_rotation_moves_every_key_to_the_new_secret(db: str) -> None:
    org, sealed = org_with_old_keys(db)
    before = ok_json(db, "keys", "status", JOURNEYS_SECRET_KEY=NEW, JOURNEYS_PREVIOUS_SECRET_KEYS=OLD)
    assert before["data_keys_other"] == 1 and before["secrets_other"] == 1 and not before["done"]

    rotated = ok_json(db, "keys", "rotate", JOURNEYS_SECRET_KEY=NEW, JOURNEYS_PREVIOUS_SECRET_KEYS=OLD)
    assert rotated == {"rewrapped": 1, "resealed": 1, "unreadable": 0, "done": True}
    again = ok_json(db, "keys", "rotate", JOURNEYS_SECRET_KEY=NEW)  # run again: nothing left to do
    assert again == {"rewrapped": 0, "resealed": 0, "unreadable": 0, "done": True}

    engine = create_db_engine(db)  # the new key alone now reads the data and the credentials
    with read_only(engine) as conn:
        ring = keyring(conn, LocalKeyProvider(secret_bytes(NEW)), org, NOW)
        found = org_channel(conn, org, "sms")
    engine.dispose()
    assert ring.open(sealed) == "Jane Doe"
    assert found is not None and SecretBox(NEW).open(found.sealed)["auth_token"] == AUTH_TOKEN
    text = journeys(db, "keys", "status", JOURNEYS_SECRET_KEY=NEW)
    assert text.returncode == 0 and "1 wrapped by it, 0 by a previous key" in text.stdout


def test_without_the_old_key_rotation_names_the_org_and_changes_nothing(db: str) -> None:
    org, _ = org_with_old_keys(db)
    status = ok_json(db, "keys", "status", JOURNEYS_SECRET_KEY=NEW)
    assert status["data_keys_other"] == 1 and status["secrets_unreadable"] == 1
    proc = journeys(db, "keys", "rotate", JOURNEYS_SECRET_KEY=NEW)
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"org {org}" in proc.stderr and "JOURNEYS_PREVIOUS_SECRET_KEYS" in proc.stderr
    assert "Traceback" not in proc.stderr and OLD not in proc.stderr and NEW not in proc.stderr
    after = ok_json(db, "keys", "status", JOURNEYS_SECRET_KEY=OLD)  # still all under the old key
    assert after["data_keys_current"] == 1 and after["secrets_current"] == 1


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({}, "JOURNEYS_SECRET_KEY is not set"),
        ({"JOURNEYS_SECRET_KEY": "hunter2"}, "JOURNEYS_SECRET_KEY: is too short"),
    ],
)
def test_rotation_needs_a_strong_current_key(db: str, env: dict[str, str], problem: str) -> None:
    proc = journeys(db, "keys", "rotate", **env)
    assert proc.returncode == 1 and problem in proc.stderr and "Traceback" not in proc.stderr


def test_a_weak_key_from_before_can_be_the_previous_one(db: str) -> None:
    """Upgrading from a key too weak for today's rule: it becomes the previous key, and its
    credentials (sealed before HKDF) are resealed under the new one."""
    org = ok_json(db, "org", "create", "Weak Key Clinic")["id"]
    weak = "my-clinic-secret"
    legacy = Fernet(base64.urlsafe_b64encode(hashlib.sha256(("journeys:" + weak).encode()).digest()))
    sealed = legacy.encrypt(json.dumps({"account_sid": "AC1", "auth_token": AUTH_TOKEN}).encode()).decode()
    engine = create_db_engine(db)
    with transaction(engine) as conn:
        set_channel(conn, org, "sms", "twilio", sealed, NOW)
    engine.dispose()
    env = {"JOURNEYS_SECRET_KEY": NEW, "JOURNEYS_PREVIOUS_SECRET_KEYS": f" ,{weak}"}
    rotated = ok_json(db, "keys", "rotate", **env)
    assert rotated == {"rewrapped": 0, "resealed": 1, "unreadable": 0, "done": True}
    assert ok_json(db, "keys", "status", JOURNEYS_SECRET_KEY=NEW)["secrets_current"] == 1
