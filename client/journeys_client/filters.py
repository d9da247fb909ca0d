"""Search and cancel filters, built as values and sent as MedChat's `filterSpecification`:

from journeys_client.filters import param, status, all_of
all_of(param("patientName").equals("John Smith"), status("InProgress"))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Filter = dict[str, Any]


@dataclass(frozen=True)
class _Param:
    name: str

    def _spec(self, operator: str, operand: str | list[str]) -> Filter:
        return {
            "type": "JourneyParameterSpecification",
            "parameterName": self.name,
            "operator": operator,
            "rightOperand": operand,
        }

    def equals(self, value: str) -> Filter:
        return self._spec("equals", value)

    def not_equals(self, value: str) -> Filter:
        return self._spec("notEquals", value)

    def contains(self, value: str) -> Filter:
        return self._spec("contains", value)

    def starts_with(self, value: str) -> Filter:
        return self._spec("startsWith", value)

    def is_in(self, values: Iterable[str]) -> Filter:
        return self._spec("in", list(values))


def param(name: str) -> _Param:
    """A condition on a parameter's value."""
    return _Param(name)


def status(value: str) -> Filter:
    """Instances with this status: InProgress, Completed, Cancelled or Failed."""
    return {"type": "JourneyStatusSpecification", "status": value}


def all_of(*filters: Filter) -> Filter:
    return {"type": "AndSpecification", "specifications": list(filters)}


def any_of(*filters: Filter) -> Filter:
    return {"type": "OrSpecification", "specifications": list(filters)}


def not_(f: Filter) -> Filter:
    return {"type": "NotSpecification", "specification": f}


def created(operator: str, *when: str) -> Filter:
    """journeys extension: created `after`, `before` or `between` ISO 8601 times."""
    operand: str | list[str] = list(when) if operator == "between" else when[0]
    return {
        "type": "JourneyDateSpecification",
        "field": "createdDateTime",
        "operator": operator,
        "rightOperand": operand,
    }
