"""JOURNEYS_SECRET_KEY: at least 32 random bytes, read as hex, base64 or a long passphrase; weak
keys refused with a message that says how to make one (and never quotes the key); keys derived
with HKDF; values sealed under the old single-SHA-256 derivation still open."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from pydantic import ValidationError
from support.cli import JOURNEYS, clean_env
from support.keys import strong_key

from journeys.config import Settings
from journeys.errors import Invalid
from journeys.keys.box import SecretBox, SecretKeyMissing
from journeys.keys.material import WeakSecretKey, derive, secret_bytes

pytestmark = pytest.mark.same_on_every_database


@pytest.mark.parametrize(
    "key",
    [
        secrets.token_urlsafe(32),  # 43 characters
        base64.b64encode(secrets.token_bytes(32)).decode(),  # openssl rand -base64 32
        secrets.token_hex(32),  # openssl rand -hex 32
        "correct horse battery staple, and then some more words to pass sixty-four",
    ],
)
def test_strong_keys_are_read(key: str) -> None:
    assert len(secret_bytes(key)) >= 32
    assert Settings(secret_key=key).secret_key == key


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("hunter2", "is too short"),
        ("test-secret-key-for-webhooks", "is too short"),
        (secrets.token_hex(31), "is too short"),  # 31 bytes
        (secrets.token_urlsafe(24), "is too short"),
        ("k" * 100, "too few distinct characters"),
        ("01" * 64, "too few distinct characters"),
    ],
)
def test_weak_keys_are_refused_saying_how_to_make_one(key: str, problem: str) -> None:
    with pytest.raises(WeakSecretKey) as caught:
        secret_bytes(key)
    assert problem in str(caught.value) and "secrets.token_urlsafe(32)" in str(caught.value)
    assert key not in str(caught.value)
    with pytest.raises(ValidationError):
        Settings(secret_key=key)
    with pytest.raises(Invalid):
        SecretBox(key)


def test_an_empty_key_is_no_key() -> None:
    assert Settings(secret_key="  ").secret_key is None
    with pytest.raises(SecretKeyMissing):
        SecretBox(None).seal({"a": 1})


def test_the_server_refuses_to_start_with_a_weak_key(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*JOURNEYS, "--db", f"sqlite:///{tmp_path / 'x.db'}", "serve"],
        cwd=tmp_path,
        env=clean_env(JOURNEYS_SECRET_KEY="my-clinic-secret"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "JOURNEYS_SECRET_KEY" in proc.stderr and "is too short" in proc.stderr
    assert "my-clinic-secret" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.db").exists()  # refused before anything was created


def test_the_key_can_be_kept_in_a_file(tmp_path: Path) -> None:
    key = secrets.token_urlsafe(32)
    path = tmp_path / "secret-key"
    path.write_text(f"  {key}\n")
    assert Settings(secret_key_file=str(path)).secret_key == key


def _serve_refused(tmp_path: Path, **env: str) -> str:
    proc = subprocess.run(
        [*JOURNEYS, "--db", f"sqlite:///{tmp_path / 'x.db'}", "serve"],
        cwd=tmp_path, env=clean_env(**env), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "x.db").exists()  # refused before anything was created
    return proc.stderr


def test_a_key_file_that_is_missing_weak_or_beside_a_key_is_refused(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")
    err = _serve_refused(tmp_path, JOURNEYS_SECRET_KEY_FILE=missing)
    assert f"JOURNEYS_SECRET_KEY_FILE: no such file: {missing}" in err
    weak = tmp_path / "weak"
    weak.write_text("my-clinic-secret\n")
    err = _serve_refused(tmp_path, JOURNEYS_SECRET_KEY_FILE=str(weak))
    assert "JOURNEYS_SECRET_KEY_FILE" in err and "is too short" in err and "my-clinic-secret" not in err
    strong = tmp_path / "strong"
    strong.write_text(strong_key("file"))
    both = {"JOURNEYS_SECRET_KEY_FILE": str(strong), "JOURNEYS_SECRET_KEY": strong_key("env")}
    err = _serve_refused(tmp_path, **both)
    assert "set JOURNEYS_SECRET_KEY or JOURNEYS_SECRET_KEY_FILE, not both" in err
    folder = tmp_path / "a-folder"
    folder.mkdir()
    err = _serve_refused(tmp_path, JOURNEYS_SECRET_KEY_FILE=str(folder))
    assert "JOURNEYS_SECRET_KEY_FILE: cannot read" in err


def test_derived_keys_differ_by_purpose_and_secret() -> None:
    material = secret_bytes(strong_key("a"))
    assert derive(material, "one") != derive(material, "two")
    assert derive(material, "one") != derive(secret_bytes(strong_key("b")), "one")
    assert derive(material, "one") == derive(material, "one")
    assert material not in derive(material, "one")


def test_values_sealed_before_hkdf_still_open() -> None:
    key = strong_key("legacy")
    legacy = Fernet(base64.urlsafe_b64encode(hashlib.sha256(("journeys:" + key).encode()).digest()))
    old = legacy.encrypt(json.dumps({"auth_token": "t0k3n"}).encode()).decode()
    box = SecretBox(key)
    assert box.open(old) == {"auth_token": "t0k3n"}
    new = box.seal({"auth_token": "t0k3n"})
    with pytest.raises(InvalidToken):  # sealed now under the HKDF key, not the old one
        legacy.decrypt(new.encode())
    assert box.open(new) == {"auth_token": "t0k3n"}
    with pytest.raises(SecretKeyMissing):
        SecretBox(strong_key("another")).open(new)
