"""Parsing a MedChat search body into a filter tree, with every problem reported. The same
parser reads the filter of a bulk cancel (`parse_cancel`): one grammar for both."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from journeys.definitions.values import NUL_PROBLEM, has_nul
from journeys.errors import Invalid
from journeys.store.instances import (
    AndFilter,
    DateFilter,
    Filter,
    NotFilter,
    OrFilter,
    ParamFilter,
    StatusFilter,
    has_condition,
)
from journeys.store.tables import STATUSES

OPERATORS = ("equals", "notEquals", "contains", "startsWith", "in")
SPEC_TYPES = (
    "AndSpecification",
    "OrSpecification",
    "NotSpecification",
    "JourneyParameterSpecification",
    "JourneyStatusSpecification",
    "JourneyDateSpecification",
)
# JourneyDateSpecification (a journeys extension): the wire name of each time it can filter on.
DATE_FIELDS = {
    "createdDateTime": "created_at",
    "startDateTime": "start_at",
    "lastEventDateTime": "last_event_at",  # lastStepExecuted.eventDateTime
}
DATE_OPERATORS = ("after", "before", "between")
CANCEL_FIELDS = ("filterSpecification", "all", "dryRun")
MAX_DEPTH = 16
MAX_NODES = 200
MAX_IN_VALUES = 1000
MAX_SKIP = 2**31 - 1  # a 32-bit count, as MedChat's; beyond it the databases' OFFSET overflows


@dataclass(frozen=True)
class CancelQuery:
    """A bulk cancel: the filter (None only with `all`), and whether only to count."""

    filter: Filter | None
    all: bool
    dry_run: bool


@dataclass(frozen=True)
class SearchQuery:
    filter: Filter | None
    include_parameters: bool
    skip: int
    take: int


class SearchError(Invalid):
    pass


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
        if kind == "JourneyDateSpecification":
            return self.date(node, path)
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


    def date(self, node: dict[str, Any], path: str) -> Filter | None:
        field = node.get("field")
        column = DATE_FIELDS.get(field) if isinstance(field, str) else None
        if column is None:
            self.errors.append(
                f"{path}.field: unknown date field {field!r} (expected one of: {', '.join(DATE_FIELDS)})"
            )
        operator = node.get("operator")
        if operator not in DATE_OPERATORS:
            self.errors.append(
                f"{path}.operator: unknown date operator {operator!r} "
                f"(expected one of: {', '.join(DATE_OPERATORS)})"
            )
            return None
        operand = node.get("rightOperand")
        if operator == "between":
            if not isinstance(operand, list) or len(operand) != 2:
                self.errors.append(
                    f"{path}.rightOperand: must be an array of two date-times for operator 'between'"
                )
                return None
            start = self.moment(operand[0], f"{path}.rightOperand[0]")
            end = self.moment(operand[1], f"{path}.rightOperand[1]")
            if start is None or end is None:
                return None
            if start >= end:
                self.errors.append(f"{path}.rightOperand: the first date-time must be before the second")
                return None
        else:
            moment = self.moment(operand, f"{path}.rightOperand")
            if moment is None:
                return None
            start, end = (moment, None) if operator == "after" else (None, moment)
        return DateFilter(column, start, end) if column is not None else None

    def moment(self, value: Any, path: str) -> datetime | None:
        """An ISO 8601 date-time with `Z` or an offset (an absolute moment)."""
        parsed = None
        if isinstance(value, str) and len(value) >= 16 and value[10:11] in ("T", "t", " "):
            try:
                given = datetime.fromisoformat(value)
                parsed = given.astimezone(UTC) if given.tzinfo is not None else None
            except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted out of range
                parsed = None
        if parsed is None:
            what = repr(value) if isinstance(value, str) else _type_name(value)
            self.errors.append(
                f"{path}: {what} is not an ISO 8601 date-time with Z or an offset "
                "(e.g. '2026-11-01T00:00:00Z')"
            )
            return None
        return parsed


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
    if not isinstance(skip, int) or isinstance(skip, bool) or not 0 <= skip <= MAX_SKIP:
        parser.errors.append(f"skip: must be a whole number from 0 to {MAX_SKIP}")
    take = body.get("take", default_take)
    if not isinstance(take, int) or isinstance(take, bool) or not 1 <= take <= max_take:
        parser.errors.append(f"take: must be a whole number from 1 to {max_take}")
    if parser.errors:
        raise SearchError(parser.errors)
    return SearchQuery(flt, bool(include), int(skip), int(take))


def parse_cancel(body: Any, known_parameters: set[str]) -> CancelQuery:
    """Parse a bulk-cancel body: `filterSpecification` (the search grammar), or `"all": true` to
    cancel every InProgress instance of the journey — never by default: a missing filter, or one
    that names no condition (an empty And), is an error. `dryRun: true` only counts."""
    if not isinstance(body, dict):
        raise SearchError([f"request body: must be a JSON object, not {_type_name(body)}"])
    parser = _Parser({n.lower() for n in known_parameters})
    for key in body:
        if key not in CANCEL_FIELDS:
            parser.errors.append(f"{key}: unknown field (expected: {', '.join(CANCEL_FIELDS)})")
    flags = {}
    for name in ("all", "dryRun"):
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            parser.errors.append(f"{name}: must be true or false")
        flags[name] = value is True
    spec = body.get("filterSpecification")
    flt = None if spec is None else parser.spec(spec, "filterSpecification", 0)
    if spec is None and not flags["all"]:
        parser.errors.append(
            "filterSpecification: required (to cancel every InProgress instance of the journey, "
            'send "all": true instead)'
        )
    elif spec is not None and flags["all"]:
        parser.errors.append('filterSpecification: give a filter or "all": true, not both')
    elif flt is not None and not has_condition(flt):
        parser.errors.append(
            "filterSpecification: names no condition, so it would match every instance "
            '(to cancel every InProgress instance of the journey, send "all": true instead)'
        )
    if parser.errors:
        raise SearchError(parser.errors)
    return CancelQuery(flt, flags["all"], flags["dryRun"])
