"""`--help` of every `journeys` command reads like a well-kept CLI's, and `journeys --version` works.

The commands are found from the Typer app itself, so a command added later is checked too: every
option and argument has help text and an upper-case metavar naming what it takes (ORG, FILE,
URL, N), never a Typer type label such as `<bool>`, `<str>` or `<list[str]>`; an option with a
default shows it. The conventions live in journeys/cli/common.py.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
from support.cli import JOURNEYS
from typer.testing import CliRunner

from journeys import __version__
from journeys.cli import app

pytestmark = pytest.mark.same_on_every_database  # no test here depends on JOURNEYS_TEST_DATABASE

TYPE_LABEL = re.compile(r"<[a-z][a-z_ ]*(\[[^\]]*\])?>")  # <bool>, <str>, <list[str]>, <int range>


def _walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """The command (a group or not) and everything under it, each with its words after `journeys`."""
    found = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found.extend(_walk(sub, (*path, name)))
    return found


COMMANDS = _walk(typer.main.get_command(app))


def test_the_walk_finds_the_commands() -> None:
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "init", "journey validate", "webhook deliveries", "channel set", "simulate", "demo"} <= paths
    assert len(paths) >= 30


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "journeys" for p, _ in COMMANDS])
def test_help(path: tuple[str, ...], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="journeys")
    assert result.exit_code == 0, result.output
    text = result.output
    usage = text.splitlines()[0]
    assert usage.startswith(f"Usage: {' '.join(('journeys', *path))} [OPTIONS]"), usage
    assert "{" not in usage, usage  # FILE, not Typer's {FILE}
    assert not TYPE_LABEL.search(text), text
    assert command.help and command.help.strip(), "the command says what it does"

    with command.make_context("journeys", [], resilient_parsing=True) as ctx:
        for param in command.get_params(ctx):
            where = f"{' '.join(path)} {param.opts[0] if param.opts else param.name}"
            assert (getattr(param, "help", None) or "").strip(), f"{where}: no help text"
            takes_value = param.param_type_name == "argument" or not (param.is_flag or param.count)
            if not takes_value:
                continue
            assert param.metavar and param.metavar == param.metavar.upper(), f"{where}: {param.metavar}"
            assert param.metavar in text, f"{where}: {param.metavar} not shown"
            if param.param_type_name == "option" and param.default not in (None, [], ()):
                record = param.get_help_record(ctx)
                assert record and "default: " in record[1], f"{where}: default {param.default!r} not shown"


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [*JOURNEYS, flag], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"journeys {__version__}\n", "")
    assert importlib.metadata.version("journeys") == __version__  # the package's metadata agrees
    assert list(tmp_path.iterdir()) == []  # no database touched


def test_short_help_option() -> None:
    assert CliRunner().invoke(app, ["journey", "validate", "-h"], prog_name="journeys").output.startswith(
        "Usage: journeys journey validate [OPTIONS] FILE"
    )
