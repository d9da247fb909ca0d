"""The Find-a-patient form, translated to the API's search body (and the parser's problems back
to the form's words). The body goes through the API's own parser (journeys.instances.search), so
the console's filters mean exactly what the API's do."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.datastructures import QueryParams

from journeys.instances.search import DATE_FIELDS, OPERATORS

TAKES = (25, 50, 100)
DEFAULT_TAKE = TAKES[0]
OPERATOR_LABELS = {
    "equals": "equals",
    "notEquals": "does not equal",
    "contains": "contains",
    "startsWith": "starts with",
    "in": "is one of (comma-separated)",
}
DATE_FIELD_LABELS = {
    "createdDateTime": "Created",
    "startDateTime": "Started",
    "lastEventDateTime": "Last step ran",
}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FIELD_WORDS = {
    "parameterName": "parameter",
    "operator": "operator",
    "rightOperand": "value",
    "rightOperand[0]": "from",
    "rightOperand[1]": "to",
    "field": "date field",
    "status": "status",
}
_SPEC = "filterSpecification.specifications"
ADVANCED = "Advanced filter"


@dataclass(frozen=True)
class Condition:
    parameter: str = ""
    operator: str = "equals"
    value: str = ""


@dataclass(frozen=True)
class SearchForm:
    """What the form holds (from the query string, so a search is a link)."""

    journey_id: str | None = None  # None: the form was not submitted
    conditions: tuple[Condition, ...] = ()
    status: str = ""
    date_field: str = "createdDateTime"
    date_from: str = ""
    date_to: str = ""
    advanced: str = ""
    skip: str = "0"
    take: str = str(DEFAULT_TAKE)

    @classmethod
    def from_query(cls, query: QueryParams) -> SearchForm:
        names, ops, values = query.getlist("param"), query.getlist("op"), query.getlist("value")
        conditions = tuple(
            Condition(n.strip(), ops[i] if i < len(ops) else "equals", values[i] if i < len(values) else "")
            for i, n in enumerate(names)
            if n.strip() or (i < len(values) and values[i].strip())
        )
        return cls(
            journey_id=query.get("journey"),
            conditions=conditions,
            status=query.get("status", ""),
            date_field=query.get("date_field", "createdDateTime"),
            date_from=query.get("from", "").strip(),
            date_to=query.get("to", "").strip(),
            advanced=query.get("filter", "").strip(),
            skip=query.get("skip", "0").strip() or "0",
            take=query.get("take", str(DEFAULT_TAKE)).strip() or str(DEFAULT_TAKE),
        )

    @property
    def submitted(self) -> bool:
        return self.journey_id is not None

    @property
    def rows(self) -> list[Condition]:
        """The conditions to show: those given, and an empty one to add another."""
        return [*self.conditions, Condition()]

    def body(self) -> Built:
        """The API's search body, with each specification's name in the form's words."""
        specs: list[Any] = []
        labels: list[tuple[str, str]] = []
        problems: list[str] = []
        for i, c in enumerate(self.conditions, start=1):
            operand: Any = c.value
            if c.operator == "in":
                operand = [v.strip() for v in c.value.split(",") if v.strip()]
            specs.append(
                {
                    "type": "JourneyParameterSpecification",
                    "parameterName": c.parameter,
                    "operator": c.operator,
                    "rightOperand": operand,
                }
            )
            labels.append((f"Condition {i}", "value"))
        if self.status:
            specs.append({"type": "JourneyStatusSpecification", "status": self.status})
            labels.append(("Status", "value"))
        dates = self._dates()
        if dates is not None:
            specs.append(dates)
            labels.append(("Dates", {"after": "from", "before": "to"}.get(dates["operator"], "")))
        if self.advanced:
            try:
                specs.append(orjson.loads(self.advanced))
                labels.append((ADVANCED, ""))
            except orjson.JSONDecodeError as exc:
                problems.append(f"{ADVANCED}: not valid JSON ({exc})")
        body: dict[str, Any] = {
            "includeParameters": True,
            "skip": _number(self.skip),
            "take": _number(self.take),
        }
        if specs:
            body["filterSpecification"] = {"type": "AndSpecification", "specifications": specs}
        return Built(body, tuple(labels), tuple(problems))

    def _dates(self) -> dict[str, Any] | None:
        start = _moment(self.date_from, 0) if self.date_from else None
        end = _moment(self.date_to, 1) if self.date_to else None
        if start is None and end is None:
            return None
        spec: dict[str, Any] = {"type": "JourneyDateSpecification", "field": self.date_field}
        if start is not None and end is not None:
            spec.update(operator="between", rightOperand=[start, end])
        elif start is not None:
            spec.update(operator="after", rightOperand=start)
        else:
            spec.update(operator="before", rightOperand=end)
        return spec

    def link(self, **changes: str) -> str:
        """This search's query string with `changes` (e.g. another page)."""
        pairs: list[tuple[str, str]] = [("journey", self.journey_id or "")]
        for c in self.conditions:
            pairs += [("param", c.parameter), ("op", c.operator), ("value", c.value)]
        values: Mapping[str, str] = {
            "status": self.status,
            "date_field": self.date_field,
            "from": self.date_from,
            "to": self.date_to,
            "filter": self.advanced,
            "take": self.take,
            "skip": self.skip,
            **changes,
        }
        pairs += [(k, v) for k, v in values.items() if v]
        return "?" + urlencode(pairs)


@dataclass(frozen=True)
class Built:
    """A search body built from the form: `labels[i]` names its i-th specification; `problems`
    were found before the parser could look (the advanced filter is not JSON)."""

    body: dict[str, Any]
    labels: tuple[tuple[str, str], ...]  # each specification's name, and its operand's
    problems: tuple[str, ...]

    def explain(self, message: str) -> str:
        """A parser's message about the body, in the form's words (e.g. `Condition 1, value: …`)."""
        for i, (label, operand) in enumerate(self.labels):
            prefix = f"{_SPEC}[{i}]"
            if not (message.startswith(prefix + ".") or message.startswith(prefix + ":")):
                continue
            rest = message[len(prefix) :]
            if label == ADVANCED:
                return f"{ADVANCED}{rest}" if rest.startswith(":") else f"{ADVANCED}: {rest[1:]}"
            path, _, text = rest.partition(": ")
            path = path.lstrip(".")
            word = operand if path == "rightOperand" else _FIELD_WORDS.get(path, path)
            return f"{label}, {word}: {text}" if word else f"{label}: {text}"
        return message


def _number(text: str) -> Any:
    """A whole number when the text is one; else the text itself, for the parser to refuse."""
    return int(text) if re.fullmatch(r"-?\d{1,12}", text) else text


def _moment(text: str, days_after: int) -> str:
    """A day (YYYY-MM-DD, UTC: its start, or with days_after=1 the next day's start: `to` is
    inclusive), or anything else as given (an ISO date-time, or something the parser refuses)."""
    if _DAY.match(text):
        try:
            day = date.fromisoformat(text) + timedelta(days=days_after)
        except (ValueError, OverflowError):
            return text
        return f"{day.isoformat()}T00:00:00Z"
    return text


__all__ = ["DATE_FIELDS", "OPERATORS", "SearchForm"]
