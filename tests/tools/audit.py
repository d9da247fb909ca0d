"""`make audit`: pip-audit on requirements.lock, with a verdict `make test` can rely on.

pip-audit asks PyPI's JSON API (https://pypi.org/pypi/NAME/VERSION/json) about every locked
version. Three outcomes:

- a known vulnerability in a locked version: the vulnerabilities are listed, exit 1;
- the vulnerability service could not be asked (no network, a mirror without PyPI's JSON API,
  a timeout), for any locked package: pip-audit itself would then report a package as "not
  found on PyPI" and pass; here it skips with the reason (exit 0), except with
  JOURNEYS_AUDIT_REQUIRED=1, where it fails (exit 1);
- every locked package audited, none vulnerable: exit 0.

Usage: python tests/tools/audit.py [LOCK [PIP-AUDIT OPTION...]], e.g. `-s osv` to ask OSV instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# Errors pip-audit raises when it cannot ask the service (its own wording, and requests').
UNREACHABLE = (
    "ConnectionError",
    "Could not connect",
    "ServiceError",
    "Max retries exceeded",
    "Name or service not known",
    "Temporary failure in name resolution",
    "timed out",
    "Timeout",
)


def _pip_audit(lock: Path, report: Path, options: list[str]) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).with_name("pip-audit")),
        "--requirement", str(lock),
        "--require-hashes",
        "--disable-pip",
        "--progress-spinner", "off",
        "--format", "json",
        "--output", str(report),
        *options,
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _cannot_audit(reason: str) -> int:
    """Skip, saying why — unless JOURNEYS_AUDIT_REQUIRED=1 (a CI with internet access sets it).
    Not CI=true: this project's CI machine reaches PyPI's package index but no vulnerability feed
    (PyPI's JSON API answers 404 there, OSV does not resolve), so requiring it would fail every run."""
    if os.environ.get("JOURNEYS_AUDIT_REQUIRED") == "1":
        required = "JOURNEYS_AUDIT_REQUIRED=1: the audit must run"
        print(f"make audit: FAILED: {reason} ({required})", file=sys.stderr)
        return 1
    print(f"make audit: SKIPPED, nothing was audited: {reason}")
    return 0


def _verdict(found: dict[str, Any]) -> int:
    dependencies: list[dict[str, Any]] = found.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions", [])) or "none yet"
            print(f"{dependency['name']} {dependency['version']}: {vuln['id']} (fixed in: {fixed})")
    if vulnerable:
        print(f"make audit: FAILED: {len(vulnerable)} locked package(s) with a known vulnerability; "
              "bump them: make lock UPGRADE_PACKAGE=NAME", file=sys.stderr)
        return 1
    if skipped:
        first = skipped[0]["skip_reason"]
        return _cannot_audit(
            f"{len(skipped)} of {len(dependencies)} locked packages could not be audited "
            f"(PyPI's vulnerability feed, https://pypi.org/pypi/NAME/VERSION/json, is not "
            f"reachable from here; first: {first})")
    print(f"make audit: {len(dependencies)} locked packages, no known vulnerabilities")
    return 0


def main(argv: list[str]) -> int:
    lock = Path(argv[1] if len(argv) > 1 else "requirements.lock")
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "audit.json"
        run = _pip_audit(lock, report, argv[2:])
        if not report.exists() or not report.read_text():
            errors = run.stderr.strip()
            last = errors.splitlines()[-1] if errors else f"pip-audit exited {run.returncode}"
            if any(mark in errors for mark in UNREACHABLE):
                return _cannot_audit(f"the vulnerability service is not reachable ({last})")
            print(errors, file=sys.stderr)
            print(f"make audit: FAILED: pip-audit could not run ({last})", file=sys.stderr)
            return 1
        return _verdict(json.loads(report.read_text()))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
