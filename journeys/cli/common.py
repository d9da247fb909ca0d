"""Helpers shared by the `journeys` command modules."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from typer.core import TyperCommand

from journeys.clock import iso_z
from journeys.config import Settings
from journeys.definitions import DefinitionError, JourneyDefinition, load_definition_file
from journeys.errors import JourneysError
from journeys.store.db import create_db_engine
from journeys.store.migrate import upgrade

_state: dict[str, Any] = {}


# --- conventions for every command (journeys/cli*.py) ------------------------------------------
# Help reads like a well-kept CLI's: plain text (no Rich panels, and no markup, so "[...]" in help
# stays as written); every option and argument has help text and an upper-case metavar naming
# what it takes (ORG, FILE, URL, N, TEXT); defaults are shown, in words where they come from the
# environment. Results go to stdout, problems and errors to stderr (see _fail, _load_or_exit).
# tests/test_cli_help.py checks every command the app has.


class _Command(TyperCommand):
    """Arguments in help as git shows them: `Usage: journeys journey validate [OPTIONS] FILE` and
    `FILE  <its help>` (Typer would print `{FILE}` and `FILE <path>  [required]`)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        params = self.get_params(ctx)
        arguments = [
            (_argument_name(p), getattr(p, "help", None) or "")
            for p in params
            if p.param_type_name == "argument"
        ]
        options = [
            record for p in params if p.param_type_name == "option" and (record := p.get_help_record(ctx))
        ]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_name(param: Any) -> str:
    return str(param.metavar or (param.name or "").upper())


class _App(typer.Typer):
    """A Typer whose commands use `_Command` unless told otherwise."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", _Command)
        register = super().command(*args, **kwargs)

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            register(_reporting_errors(fn))
            return fn

        return decorator


def _reporting_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The CLI's translation of the error model: a JourneysError's messages on stderr, exit 1."""

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except JourneysError as exc:
            _fail("; ".join(exc.messages))

    return command


def new_app(help: str) -> typer.Typer:
    """A command group with the conventions above."""
    return _App(
        help=help,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
        pretty_exceptions_show_locals=False,  # locals may hold patient data or secrets
    )


def org_option(help: str = "The org's id") -> Any:
    """--org ORG, required."""
    return typer.Option(..., "--org", metavar="ORG", help=help)


def org_filter_option(help: str) -> Any:
    """--org ORG, optional: only that org's rows."""
    return typer.Option(None, "--org", metavar="ORG", help=help)


def definition_file_argument() -> Any:
    """FILE: a journey definition."""
    return typer.Argument(..., metavar="FILE", help="A journey definition file (YAML or JSON)")


def json_option(help: str = "Print one JSON object instead of text") -> Any:
    return typer.Option(False, "--json", help=help)


def key_values(items: list[str]) -> dict[str, str]:
    """Repeated `--set KEY=VALUE` options as a mapping, or exit 1 naming the one that is not."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail(f"--set {key.strip()!r}: use KEY=VALUE")
        out[key.strip()] = value
    return out


def limit_option(help: str, maximum: int = 10_000) -> Any:
    return typer.Option(100, "--limit", metavar="N", min=1, max=maximum, help=help)


def _settings() -> Settings:
    """The settings, or exit 1 naming each bad JOURNEYS_* variable (never a traceback)."""
    overrides: dict[str, Any] = {}
    if _state.get("db"):
        overrides["database_url"] = _state["db"]
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        # Name the variable and the problem, never the value (it may be a secret).
        for err in exc.errors():
            name = "JOURNEYS_" + "_".join(str(p) for p in err.get("loc", ())).upper()
            message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            typer.echo(f"error: {name}: {message}", err=True)
        raise typer.Exit(1) from None


def _engine() -> Any:
    s = _settings()
    engine = create_db_engine(s.database_url, pool_size=s.pool_size, max_overflow=s.max_overflow)
    upgrade(engine)
    return engine


def _now() -> datetime:
    return _settings().clock().now()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(_jsonable(value), ensure_ascii=False))


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load_or_exit(file: Path) -> JourneyDefinition:
    """Load a definition, or print its problems (FILE:LINE: path: message) on stderr and exit 1."""
    try:
        return load_definition_file(file)
    except DefinitionError as exc:
        for problem in exc.problems:
            typer.echo(problem.format(str(file)), err=True)
        raise typer.Exit(1) from None
