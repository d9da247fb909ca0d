"""An instance's parameters as stored: the JSON sealed with the org's key, and the searchable
rows (`instance_parameters`) as blind indexes, so search works on values it cannot read.

With encryption on (journeys.keys.phi), each parameter has one row whose value is the blind
index of its value (`equals`, `in`, `notEquals`), and a parameter the journey marks `search:
prefix` has one more per prefix length, named `name~k`, the blind index of its first k
characters (`startsWith` with an operand of that length): 1 to 12 for most parameters; for a
datetime, the year, month, day, hour and minute (4, 7, 10, 13 and 16: `2026-12-01` is the day,
as a closure-day cancel asks). A value shorter than k gets a row
no operand can match, so every such parameter has the same rows and replacing it replaces them
all. `contains` cannot be answered from blind indexes: it is refused, naming the parameter.
With encryption off, rows hold the values themselves and every operator works as before."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from journeys.definitions import JourneyDefinition
from journeys.errors import Invalid
from journeys.keys.phi import PREFIX_LENGTHS, OrgPhi
from journeys.records import ParameterRow
from journeys.store.instances import AndFilter, Filter, NotFilter, OrFilter, ParamFilter

NO_MATCH = "\x00"  # appended to a value shorter than a prefix length: no operand has a NUL


DATETIME_PREFIXES = (4, 7, 10, 13, 16)  # YYYY, YYYY-MM, YYYY-MM-DD, … HH, … HH:MM
TEXT_PREFIXES = tuple(range(1, PREFIX_LENGTHS + 1))


def prefix_names(defn: JourneyDefinition) -> dict[str, tuple[int, ...]]:
    """The parameters marked `search: prefix` (lower-cased names), with their prefix lengths."""
    return {
        p.name.lower(): DATETIME_PREFIXES if p.type == "datetime" else TEXT_PREFIXES
        for p in defn.parameters
        if p.prefix_searchable
    }


def parameter_rows(
    phi: OrgPhi,
    instance: tuple[str, str],
    journey_id: str,
    params: Mapping[str, str],
    names: Iterable[str],
    prefix: Mapping[str, tuple[int, ...]],
) -> list[ParameterRow]:
    """The searchable rows of parameters `names` (canonical) of the instance (org, id)."""
    org_id, instance_id = instance
    rows = []
    for name in names:
        key, value = name.lower(), params[name]
        rows.append(ParameterRow(org_id, instance_id, journey_id, key, phi.blind(key, value)))
        if phi.encrypted and key in prefix:
            for k in prefix[key]:
                part = value[:k] if k <= len(value) else value + NO_MATCH
                named = f"{key}~{k}"
                rows.append(ParameterRow(org_id, instance_id, journey_id, named, phi.blind(named, part)))
    return rows


def searchable(flt: Filter, phi: OrgPhi, defn: JourneyDefinition) -> Filter:
    """The filter with values turned into what the rows hold; raises Invalid naming each
    condition blind indexes cannot answer."""
    if not phi.encrypted:
        return flt
    errors: list[str] = []
    out = _blind(flt, phi, _Rules(defn), errors)
    if errors:
        raise Invalid(errors)
    return out


def _blind(flt: Filter, phi: OrgPhi, rules: _Rules, errors: list[str]) -> Filter:
    if isinstance(flt, AndFilter | OrFilter):
        return type(flt)(tuple(_blind(c, phi, rules, errors) for c in flt.children))
    if isinstance(flt, NotFilter):
        return NotFilter(_blind(flt.child, phi, rules, errors))
    if not isinstance(flt, ParamFilter):
        return flt
    name, value = flt.name, flt.value
    if flt.operator == "in":
        return ParamFilter(name, "in", tuple(phi.blind(name, v) for v in value))
    assert isinstance(value, str)
    if flt.operator in ("equals", "notEquals"):
        return ParamFilter(name, flt.operator, phi.blind(name, value))
    if flt.operator == "startsWith":
        problem = rules.prefix_problem(name, value)
        if problem is None:
            k = len(value)
            return ParamFilter(f"{name}~{k}", "equals", phi.blind(f"{name}~{k}", value))
        errors.append(problem)
        return flt
    errors.append(
        f"filterSpecification: parameter {rules.shown(name)!r} is stored encrypted, so 'contains' cannot "
        "search it (use equals, in, or startsWith on a parameter marked 'search: prefix')"
    )
    return flt


class _Rules:
    """What the journey allows searching by prefix, and its parameters' names as written."""

    def __init__(self, defn: JourneyDefinition) -> None:
        self.prefix = prefix_names(defn)
        self.names = {p.name.lower(): p.name for p in defn.parameters}

    def shown(self, name: str) -> str:
        return self.names.get(name, name)

    def prefix_problem(self, name: str, value: str) -> str | None:
        if name not in self.prefix:
            return (
                f"filterSpecification: parameter {self.shown(name)!r} is stored encrypted and not marked "
                "'search: prefix' in the journey, so 'startsWith' cannot search it (use equals or in)"
            )
        lengths = self.prefix[name]
        if len(value) not in lengths:
            what = (
                "a year, month, day, hour or minute: 4, 7, 10, 13 or 16 characters (e.g. 2026-12-01)"
                if lengths == DATETIME_PREFIXES
                else f"1 to {PREFIX_LENGTHS} characters"
            )
            shown = self.shown(name)
            return f"filterSpecification: 'startsWith' on encrypted parameter {shown!r} takes {what}"
        return None
