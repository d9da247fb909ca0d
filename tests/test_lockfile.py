"""requirements.lock and pyproject.toml cannot drift apart silently.

`make install` installs exactly what requirements.lock pins (`pip install --require-hashes`) and
then the package with `--no-deps`, so pip never checks pyproject's ranges itself: here every
dependency pyproject names (runtime, the `dev` extra and the build backend) must be pinned in the
lock with a version inside pyproject's range, and every pin must carry its hashes. After a change
to pyproject's dependencies, `make lock` regenerates the lock.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

pytestmark = pytest.mark.same_on_every_database  # reads two files; no database

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def _lock() -> dict[NormalizedName, tuple[Version, int]]:
    """Name -> (pinned version, number of hashes), from requirements.lock."""
    pins: dict[NormalizedName, tuple[Version, int]] = {}
    current: NormalizedName | None = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pin = PIN.match(line)
        if pin:
            current = canonicalize_name(pin[1])
            assert current not in pins, f"{pin[1]} pinned twice"
            pins[current] = (Version(pin[2]), len(HASH.findall(line)))
        elif line[:1].isspace() and current is not None:
            version, hashes = pins[current]
            pins[current] = (version, hashes + len(HASH.findall(line)))
        else:
            pytest.fail(f"requirements.lock: not a `NAME==VERSION --hash=…` pin: {line!r}")
    return pins


def _pyproject_requirements() -> list[tuple[str, Requirement]]:
    """(where, requirement) for every dependency pyproject.toml names."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    named = [("dependencies", text) for text in pyproject["project"]["dependencies"]]
    for extra, texts in pyproject["project"].get("optional-dependencies", {}).items():
        named += [(f"optional-dependencies.{extra}", text) for text in texts]
    named += [("build-system.requires", text) for text in pyproject["build-system"]["requires"]]
    return [(where, Requirement(text)) for where, text in named]


def test_every_pyproject_dependency_is_pinned_within_its_range() -> None:
    pins = _lock()
    problems = []
    for where, requirement in _pyproject_requirements():
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{where}: {requirement} is not in requirements.lock")
            continue
        version = pins[name][0]
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{where}: {requirement} but requirements.lock pins {version}")
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


def test_every_extra_a_dependency_asks_for_is_pinned() -> None:
    """psycopg[binary] needs psycopg-binary: what an extra adds must be locked too."""
    pins = _lock()
    missing = []
    for where, requirement in _pyproject_requirements():
        for extra in requirement.extras:
            for text in importlib.metadata.requires(requirement.name) or []:
                needed = Requirement(text)
                if needed.marker is None or not needed.marker.evaluate({"extra": extra}):
                    continue
                if canonicalize_name(needed.name) not in pins:
                    missing.append(f"{where}: {requirement} needs {needed.name}, not in requirements.lock")
    assert not missing, "run `make lock`:\n" + "\n".join(missing)


def test_every_pin_has_hashes() -> None:
    """`pip install --require-hashes` refuses a pin without one."""
    pins = _lock()
    assert pins, "requirements.lock pins nothing"
    assert not [name for name, (_, hashes) in pins.items() if hashes == 0]
