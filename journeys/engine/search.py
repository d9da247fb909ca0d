"""Parsing a MedChat search body into a filter tree, with every problem reported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from journeys.definitions.values import NUL_PROBLEM, has_nul
from journeys.store.instances import AndFilter, Filter, NotFilter, OrFilter, ParamFilter, StatusFilter
from journeys.store.tables import STATUSES

OPERATORS = ("equals", "notEquals", "contains", "startsWith", "in")
SPEC_TYPES = (
    "AndSpecification",
    "OrSpecification",
    "NotSpecification",
    "JourneyParameterSpecification",
    "JourneyStatusSpecification",
)
MAX_DEPTH = 16
MAX_NODES = 200
MAX_IN_VALUES = 1000


@dataclass(frozen=True)
class SearchQuery:
    filter: Filter | None
    include_parameters: bool
    skip: int
    take: int


class SearchError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


class _Parser:
    def __init__(self, known_parameters: set[str]) -> None:
        self.known = known_parameters  # lower-cased names
        self.errors: list[str] = []
        self.nodes = 0

    def spec(self, node: Any, path: str, depth: int) -> Filter | None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            if self.nodes == MAX_NODES + 1:
                self.errors.append(f"filterSpecification: more than {MAX_NODES} specifications")
            return None
        if depth > MAX_DEPTH:
            self.errors.append(f"{path}: nested deeper than {MAX_DEPTH} levels")
            return None
        if not isinstance(node, dict):
            self.errors.append(f"{path}: must be an object, not {_type_name(node)}")
            return None
        kind = node.get("type")
        if kind == "AndSpecification" or kind == "OrSpecification":
            children = node.get("specifications")
            if not isinstance(children, list):
                self.errors.append(f"{path}.specifications: must be an array of specifications")
                return None
            parsed = [self.spec(c, f"{path}.specifications[{i}]", depth + 1) for i, c in enumerate(children)]
            if any(p is None for p in parsed):
                return None
            items = tuple(p for p in parsed if p is not None)
            return AndFilter(items) if kind == "AndSpecification" else OrFilter(items)
        if kind == "NotSpecification":
            child = self.spec(node.get("specification"), f"{path}.specification", depth + 1)
            return NotFilter(child) if child is not None else None
        if kind == "JourneyStatusSpecification":
            status = node.get("status")
            if status not in STATUSES:
                self.errors.append(
                    f"{path}.status: unknown status {status!r} (expected one of: {', '.join(STATUSES)})"
                )
                return None
            return StatusFilter(status)
        if kind == "JourneyParameterSpecification":
            return self.parameter(node, path)
        if kind is None:
            self.errors.append(f"{path}.type: missing (expected one of: {', '.join(SPEC_TYPES)})")
        else:
            self.errors.append(
                f"{path}.type: unknown specification type {kind!r} (expected one of: {', '.join(SPEC_TYPES)})"
            )
        return None

    def parameter(self, node: dict[str, Any], path: str) -> Filter | None:
        ok = True
        name = node.get("parameterName")
        if not isinstance(name, str) or not name:
            self.errors.append(f"{path}.parameterName: must be a non-empty string")
            ok = False
        elif name.lower() not in self.known:
            self.errors.append(f"{path}.parameterName: {name!r} is not a parameter of this journey")
            ok = False
        operator = node.get("operator")
        if operator not in OPERATORS:
            self.errors.append(
                f"{path}.operator: unknown operator {operator!r} (expected one of: {', '.join(OPERATORS)})"
            )
            return None
        operand = node.get("rightOperand")
        if operator == "in":
            if not isinstance(operand, list) or not all(isinstance(v, str) for v in operand):
                self.errors.append(f"{path}.rightOperand: must be an array of strings for operator 'in'")
                return None
            if len(operand) > MAX_IN_VALUES:
                self.errors.append(f"{path}.rightOperand: at most {MAX_IN_VALUES} values for operator 'in'")
                return None
            value: str | tuple[str, ...] = tuple(operand)
        else:
            if not isinstance(operand, str):
                self.errors.append(f"{path}.rightOperand: must be a string, not {_type_name(operand)}")
                return None
            value = operand
        if any(has_nul(v) for v in ((value,) if isinstance(value, str) else value)):
            self.errors.append(f"{path}.rightOperand: {NUL_PROBLEM}")
            return None
        if not ok:
            return None
        assert isinstance(name, str)
        return ParamFilter(name.lower(), operator, value)


def parse_search(body: Any, known_parameters: set[str], default_take: int, max_take: int) -> SearchQuery:
    """Parse a search body; raise SearchError listing every problem."""
    if not isinstance(body, dict):
        raise SearchError([f"request body: must be a JSON object, not {_type_name(body)}"])
    parser = _Parser({n.lower() for n in known_parameters})
    spec = body.get("filterSpecification")
    flt = None if spec is None else parser.spec(spec, "filterSpecification", 0)
    # Documented as a boolean and integers: null is not one (leave the field out for the default).
    include = body.get("includeParameters", False)
    if not isinstance(include, bool):
        parser.errors.append("includeParameters: must be true or false")
    skip = body.get("skip", 0)
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
        parser.errors.append("skip: must be a whole number >= 0")
    take = body.get("take", default_take)
    if not isinstance(take, int) or isinstance(take, bool) or not 1 <= take <= max_take:
        parser.errors.append(f"take: must be a whole number from 1 to {max_take}")
    if parser.errors:
        raise SearchError(parser.errors)
    return SearchQuery(flt, bool(include), int(skip), int(take))
