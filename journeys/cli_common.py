"""Helpers shared by the `journeys` command modules."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from journeys.clock import iso_z
from journeys.config import Settings
from journeys.definitions import DefinitionError, JourneyDefinition, load_definition_file
from journeys.store.db import create_db_engine
from journeys.store.migrate import upgrade

_state: dict[str, Any] = {}


def _settings() -> Settings:
    overrides: dict[str, Any] = {}
    if _state.get("db"):
        overrides["database_url"] = _state["db"]
    return Settings(**overrides)


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


def _fail(message: str, code: int = 1) -> None:
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
