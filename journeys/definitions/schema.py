"""The JSON Schema of a journey definition, generated from the pydantic model.

`docs/journey-definition.schema.json` is this module's output; regenerate it after changing
the model with::

    python -m journeys.definitions.schema > docs/journey-definition.schema.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from journeys.definitions.model import JourneyDefinition

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://journeys.dev/schema/journey-definition.json"
SCHEMA_TITLE = "Journey definition"
SCHEMA_DESCRIPTION = (
    "A patient journey: its parameters and its flows of steps (send_sms, send_email, http_request, "
    "wait, wait_until, wait_for_reply, branch, set_parameters, goto, end). "
    "Cross-references (step ids, parameter names, template variables) are checked by "
    "`journeys journey validate`, not by this schema."
)


def definition_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) for a journey definition."""
    schema = JourneyDefinition.model_json_schema()
    header: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": SCHEMA_TITLE,
        "description": SCHEMA_DESCRIPTION,
    }
    return {**header, **{key: value for key, value in schema.items() if key not in header}}


def definition_json_schema_text() -> str:
    """The schema as the committed file holds it: 2-space indent, trailing newline."""
    return json.dumps(definition_json_schema(), indent=2) + "\n"


def main() -> None:
    sys.stdout.write(definition_json_schema_text())


if __name__ == "__main__":
    main()
