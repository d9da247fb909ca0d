"""A published definition as YAML text a designer can edit (the console's "edit a copy").

Fields left at their defaults are left out, and each step starts with its id and type; loading
the text again (`load_definition_text`) gives the same definition."""

from __future__ import annotations

from typing import Any

import yaml

from journeys.definitions.model import JourneyDefinition

_FIRST = ("id", "type")


def definition_yaml(defn: JourneyDefinition) -> str:
    data = defn.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for flow in data.get("flows", []):
        flow["steps"] = [_id_first(step) for step in flow.get("steps", [])]
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _id_first(step: dict[str, Any]) -> dict[str, Any]:
    return {**{k: step[k] for k in _FIRST if k in step}, **step}
