"""Loading journey definitions from YAML or JSON, reporting problems with their source lines.

The text is parsed once into YAML nodes, from which a map of every path (``flows[0].steps[2]``,
``flows[0].steps[2].to``) to its line is recorded; the data is then checked against the model
(`JourneyDefinition`) and the cross-reference rules (`validator.validate_graph`), and every
problem found is reported together in one `DefinitionError`. When the model rejects the data,
the cross-references are still checked over the parts it accepts (`partial.partial_definition`),
so one run reports the problems of both kinds.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from journeys.definitions.model import (
    STEP_TYPES,
    BranchCase,
    BranchStep,
    Condition,
    EndStep,
    Flow,
    FrequencyCap,
    GotoStep,
    HttpRequestStep,
    JourneyDefinition,
    Parameter,
    ReplyRoute,
    SendEmailStep,
    SendSmsStep,
    SendWindow,
    SetParametersStep,
    WaitForReplyStep,
    WaitStep,
    WaitUntilStep,
)
from journeys.definitions.partial import partial_definition
from journeys.definitions.problems import DefinitionError, Problem
from journeys.definitions.validator import validate_graph

_STEP_MODELS: dict[str, type[BaseModel]] = {
    "send_sms": SendSmsStep,
    "send_email": SendEmailStep,
    "http_request": HttpRequestStep,
    "wait": WaitStep,
    "wait_until": WaitUntilStep,
    "wait_for_reply": WaitForReplyStep,
    "branch": BranchStep,
    "set_parameters": SetParametersStep,
    "goto": GotoStep,
    "end": EndStep,
}
_LAST_PART = re.compile(r"(\.[^.\[\]]*|\[\d+\])$")
_DURATION_FIELDS = ("duration", "before", "after", "timeout")
_CONDITION_VALUE_FIELDS = ("equals", "not_equals", "in")


# --- YAML ------------------------------------------------------------------------------------

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 numbers, so ``at: 17:30`` stays the text "17:30"."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _join(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _record_lines(root: yaml.Node, lines: dict[str, int], problems: list[Problem]) -> None:
    """Record the line of every mapping key and sequence item; report duplicate keys."""
    visited: set[int] = set()  # an alias is walked once, so a "billion laughs" file stays cheap
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    lines[""] = root.start_mark.line + 1
    while stack:
        node, path = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                child = _join(path, str(key_node.value))
                line = key_node.start_mark.line + 1
                if key_node.value in seen:
                    problems.append(Problem(f"duplicate key '{key_node.value}'", child, line))
                seen.add(key_node.value)
                lines.setdefault(child, line)
                stack.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = _join(path, index)
                lines.setdefault(child, item.start_mark.line + 1)
                stack.append((item, child))


def _nul_problems(data: Any) -> list[Problem]:
    """A problem for every text holding a NUL character (a YAML "\\0" or a JSON "\\u0000"):
    PostgreSQL cannot store it. Shared (aliased) nodes are visited once."""
    problems: list[Problem] = []
    visited: set[int] = set()
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                problems.append(Problem("must not contain NUL characters (\\u0000)", path))
            continue
        if not isinstance(value, dict | list) or id(value) in visited:
            continue
        visited.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            child = _join(path, key if isinstance(key, int | str) else str(key))
            if isinstance(key, str) and "\x00" in key:
                problems.append(Problem("a key must not contain NUL characters (\\u0000)", child))
            stack.append((item, child))
    return problems


def _parse_yaml(text: str, lines: dict[str, int], problems: list[Problem]) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _record_lines(node, lines, problems)
        return loader.construct_document(node)
    finally:
        loader.dispose()


_YAML_HINTS = (
    ("'\\t'", "indent with spaces, not tabs"),
    ("mapping values are not allowed", "a value containing ': ' must be quoted"),
    ("<block end>", "check the indentation"),
)


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Problem(f"YAML syntax error: {exc}")
    parts = [part for part in (exc.context, exc.problem) if part]
    message = "YAML syntax error: " + (", ".join(parts) if parts else "invalid YAML")
    hints = [hint for needle, hint in _YAML_HINTS if needle in message]
    mark = exc.problem_mark or exc.context_mark
    context = exc.context_mark
    if context is not None and mark is not None and context.line != mark.line:
        hints.append(f"it started on line {context.line + 1}")
    if hints:
        message += f" ({'; '.join(hints)})"
    return Problem(message, "", mark.line + 1 if mark else None)


def _parse(text: str, filename: str, lines: dict[str, int], problems: list[Problem]) -> Any:
    if filename.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(Problem(f"JSON syntax error: {exc.msg}", "", exc.lineno))
            return None
        try:  # JSON is YAML: parse again only to learn the lines
            _parse_yaml(text, lines, problems)
        except yaml.YAMLError:
            lines.clear()
        return data
    try:
        return _parse_yaml(text, lines, problems)
    except yaml.YAMLError as exc:
        problems.append(_yaml_problem(exc))
        return None


# --- pydantic errors -> problems -------------------------------------------------------------


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _model_at(parts: list[str | int], data: Any) -> type[BaseModel] | None:
    """The model that validates the mapping at `parts` (for listing its fields)."""
    shape = [p if isinstance(p, str) else 0 for p in parts]
    if not shape:
        return JourneyDefinition
    if shape == ["parameters", 0]:
        return Parameter
    if shape == ["send_window"]:
        return SendWindow
    if shape == ["frequency_cap"]:
        return FrequencyCap
    if shape == ["flows", 0]:
        return Flow
    if shape == ["flows", 0, "steps", 0] and isinstance(data, dict):
        return _STEP_MODELS.get(str(data.get("type")))
    if shape[:4] != ["flows", 0, "steps", 0]:
        return None
    inner = shape[4:]
    if inner == ["replies", 0]:
        return ReplyRoute
    if inner == ["cases", 0]:
        return BranchCase
    if inner[:3] == ["cases", 0, "when"]:
        rest = inner[3:]  # e.g. [], ["not"], ["all", 0], ["any", 0, "not"]
        while rest[:1] == ["not"] or (rest[:1] in (["all"], ["any"]) and rest[1:2] == [0]):
            rest = rest[1:] if rest[0] == "not" else rest[2:]
        return Condition if not rest else None
    return None


def _field_names(model: type[BaseModel]) -> list[str]:
    """The names a definition spells the model's fields with (``else``, not ``else_``)."""
    return [info.alias or name for name, info in model.model_fields.items()]


def _locate(loc: tuple[str | int, ...], data: Any) -> tuple[list[str | int], Any, Any]:
    """Turn a pydantic loc into data path parts (dropping union tags); also the parent and node."""
    parts: list[str | int] = []
    parent: Any = None
    node: Any = data
    for i, elem in enumerate(loc):
        is_tag = (
            isinstance(node, dict)
            and isinstance(elem, str)
            and elem not in node
            and i < len(loc) - 1
            and node.get("type") == elem
        )
        if is_tag:
            continue
        parts.append(elem)
        parent = node
        if isinstance(node, dict):
            node = node.get(elem)
        elif isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
            node = node[elem]
        else:
            node = None
    return parts, parent, node


def _path(parts: list[str | int]) -> str:
    path = ""
    for part in parts:
        path = _join(path, part)
    return path


def _text_hint(parts: list[str | int], value: Any) -> str:
    """Why a value that should be text is not, when it is a common slip."""
    field = parts[-1] if parts else ""
    if field in _DURATION_FIELDS and isinstance(value, int | float):
        return " (a duration needs a unit, e.g. '30m', '24h', '2d')"
    if field == "at" or (parts[:1] == ["send_window"] and field in ("start", "end")):
        return f' (write the time of day in quotes, e.g. {field}: "09:00")'
    if isinstance(value, int | float | bool) and (
        field in _CONDITION_VALUE_FIELDS or (len(parts) > 1 and parts[-2] in _CONDITION_VALUE_FIELDS)
    ):
        return " (conditions compare parameter values as text: quote the value)"
    return ""


def _pattern_rule(parts: list[str | int], ctx: dict[str, Any]) -> str:
    """The naming rule a value broke, in words."""
    field = parts[-1] if parts else ""
    if parts[:1] == ["parameters"]:
        return "a parameter name uses letters, digits and '_' and does not start with a digit"
    if len(parts) == 3 and parts[0] == "flows" and field == "id":
        return "a flow id uses letters, digits, '_', '.' and '-' and starts with a letter or digit"
    if field == "outcome":
        return "an outcome uses lower-case letters, digits and '_' and starts with a letter"
    return f"expected to match {ctx.get('pattern')}"


def _error_problem(err: ErrorDetails, data: Any) -> Problem:
    parts, parent, _ = _locate(tuple(err["loc"]), data)
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    value = err["input"]
    field = parts[-1] if parts else ""
    path = _path(parts)
    expected_steps = ", ".join(STEP_TYPES)

    if kind == "missing":
        return Problem(f"missing field '{field}'", _path(parts[:-1]))
    if kind == "extra_forbidden":
        model = _model_at(parts[:-1], parent)
        close = difflib.get_close_matches(str(field), _field_names(model), n=1) if model else []
        return Problem("unknown field" + (f" (did you mean '{close[0]}'?)" if close else ""), path)
    if kind == "union_tag_invalid":
        return Problem(
            f"unknown step type '{ctx.get('tag')}' (expected one of: {expected_steps})", _join(path, "type")
        )
    if kind == "union_tag_not_found":
        return Problem(f"missing field 'type' (one of: {expected_steps})", path)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return Problem(f"expected a mapping, got {_describe(value)}", path)
    if kind == "list_type":
        return Problem(f"expected a list, got {_describe(value)}", path)
    if kind == "string_type":
        return Problem(f"expected text, got {_describe(value)}{_text_hint(parts, value)}", path)
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return Problem(f"expected a whole number, got {_describe(value)}", path)
    if kind in ("bool_type", "bool_parsing"):
        return Problem(f"expected true or false, got {_describe(value)}", path)
    if kind == "literal_error":
        options = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        what = "parameter type" if parts[:1] == ["parameters"] and field == "type" else "value"
        return Problem(f"unknown {what} {value!r} (expected one of: {options})", path)
    if kind == "string_pattern_mismatch":
        return Problem(f"{value!r} is not allowed ({_pattern_rule(parts, ctx)})", path)
    if kind == "string_too_short":
        return Problem("must not be empty", path)
    if kind == "too_short":
        needs = {"flows": "a journey needs at least one flow", "steps": "a flow needs at least one step"}
        return Problem(needs.get(str(field), "must not be empty"), path)
    if kind == "greater_than_equal":
        return Problem(f"must be {ctx.get('ge')} or more", path)
    if kind == "value_error" and "error" in ctx:
        return Problem(str(ctx["error"]), path)
    return Problem(err["msg"], path)


# --- public API ------------------------------------------------------------------------------


def _line_for(path: str, lines: dict[str, int]) -> int | None:
    """The line of `path`, or of its nearest ancestor that is in the file."""
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        shorter = _LAST_PART.sub("", path)
        path = "" if shorter == path else shorter


def _with_lines(problems: list[Problem], lines: dict[str, int]) -> list[Problem]:
    located = [
        p if p.line is not None else Problem(p.message, p.path, _line_for(p.path, lines)) for p in problems
    ]
    return sorted(located, key=lambda p: (p.line is not None, p.line or 0))


Locate = Callable[[list[Problem]], list[Problem]]


def parse_located(text: str, filename: str) -> tuple[Any, list[Problem], Locate]:
    """Parse a YAML or JSON document as definitions are (YAML 1.1's base-60 numbers off, duplicate
    keys reported): the data (None when it cannot be parsed), the problems so far, and a
    function that gives problems the line of their path. For other files read like definitions
    (a feed's mapping, journeys.feeds.mapping)."""
    lines: dict[str, int] = {}
    problems: list[Problem] = []
    data = _parse(text, filename, lines, problems)
    if data is not None:
        problems.extend(_nul_problems(data))
    return data, problems, lambda found: _with_lines(found, lines)


def load_definition_text(text: str, filename: str = "<definition>") -> JourneyDefinition:
    """Parse and validate a definition; raise `DefinitionError` listing every problem."""
    lines: dict[str, int] = {}
    problems: list[Problem] = []
    data = _parse(text, filename, lines, problems)
    if problems and data is None:
        raise DefinitionError(_with_lines(problems, lines), filename)
    if data is None:
        raise DefinitionError([Problem("the definition is empty", "", 1)], filename)
    if not isinstance(data, dict):
        message = f"expected a mapping with keys name, parameters and flows, got {_describe(data)}"
        problem = Problem(message, "", lines.get(""))
        raise DefinitionError([problem], filename)
    nul = _nul_problems(data)
    if nul:
        raise DefinitionError(_with_lines(problems + nul, lines), filename)
    try:
        defn = JourneyDefinition.model_validate(data)
    except ValidationError as exc:
        problems.extend(_error_problem(err, data) for err in exc.errors())
        partial = partial_definition(data)
        if partial is not None:
            problems.extend(validate_graph(partial))
        raise DefinitionError(_with_lines(problems, lines), filename) from None
    problems.extend(validate_graph(defn))
    if problems:
        raise DefinitionError(_with_lines(problems, lines), filename)
    return defn


def load_definition_file(path: str | Path) -> JourneyDefinition:
    """Read a UTF-8 YAML or JSON file and load it with `load_definition_text`."""
    filename = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DefinitionError([Problem(f"cannot read file: {exc.strerror or exc}")], filename) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DefinitionError([Problem("the file is not valid UTF-8 text", "", line)], filename) from None
    return load_definition_text(text, filename)


def definition_from_stored(data: dict[str, Any]) -> JourneyDefinition:
    """Rebuild a definition stored as JSON (validated when it was published)."""
    return JourneyDefinition.model_validate(data)
