"""Helpers shared by the `journeys` command modules."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer
from pydantic import ValidationError

from journeys.clock import SystemClock, iso_z
from journeys.config import Settings
from journeys.store.db import create_db_engine
from journeys.store.migrate import upgrade

_state: dict[str, Any] = {}


def _settings() -> Settings:
    """The settings, or exit 1 naming each bad JOURNEYS_* variable (never a traceback)."""
    overrides: dict[str, Any] = {}
    if _state.get("db"):
        overrides["database_url"] = _state["db"]
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        for err in exc.errors():
            name = "JOURNEYS_" + "_".join(str(part) for part in err["loc"]).upper()
            typer.echo(f"error: {name}: {err['msg']}", err=True)
        raise typer.Exit(1) from None


def _engine() -> Any:
    s = _settings()
    engine = create_db_engine(s.database_url, pool_size=s.pool_size, max_overflow=s.max_overflow)
    upgrade(engine)
    return engine


def _now() -> datetime:
    return SystemClock().now()


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
