"""Running the `journeys` command as a user does: its entry point and a clean environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_ENTRY_POINT = Path(sys.executable).parent / "journeys"
# The command line that runs `journeys` (the installed entry point, else the module).
JOURNEYS = [str(_ENTRY_POINT)] if _ENTRY_POINT.exists() else [sys.executable, "-m", "journeys.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any JOURNEYS_* setting that could leak in from the caller,
    unbuffered, with `extra` added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env
