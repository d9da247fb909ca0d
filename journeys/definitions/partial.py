"""What the cross-reference checks can still see of a definition that fails the model.

When `JourneyDefinition` rejects a file, the loader reports the model's problems and then runs
the cross-reference checks (`validator.validate_graph`) over `partial_definition(data)`, so one
run reports every problem it can find: a bad step type and, elsewhere, a reference to an unknown
parameter come out together.

In that view every flow, step and parameter keeps its place (so each problem's path is right).
One that passes the model is itself; one that fails stands in as an `UnparsedStep` or
`UnparsedParameter` holding only what can be read from the raw data (its id, its name), so a
reference to it is not reported as unknown, and its own references are not checked until it
parses. The checks that need every step (reachability, loops without a wait) are skipped while
any step stands in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, get_args

from pydantic import Field, TypeAdapter, ValidationError

from journeys.definitions.model import (
    STEP_TYPES,
    Flow,
    JourneyDefinition,
    Parameter,
    ParameterType,
    Step,
)

_STEP: TypeAdapter[Any] = TypeAdapter(Step)
_STEP_ID: TypeAdapter[int] = TypeAdapter(Annotated[int, Field(ge=0)])
_BOOL: TypeAdapter[bool] = TypeAdapter(bool)
_PARAMETER_TYPES: tuple[str, ...] = get_args(ParameterType)


@dataclass(frozen=True)
class UnparsedParameter:
    """A parameter that failed the model: its name ("" when it is not text), and its type,
    `required` and `identifier` where the raw values are valid (else None, True, False)."""

    name: str
    type: str | None
    required: bool = True
    identifier: bool = False


@dataclass(frozen=True)
class UnparsedStep:
    """A step that failed the model: its id (None when unreadable) and its type."""

    id: int | None
    type: str | None
    next: None = None  # its references are not checked until it parses

    def may_wait_for_reply(self) -> bool:
        """Whether it is, or may be meant as, a wait_for_reply step (its outcomes are unknown)."""
        return self.type == "wait_for_reply" or self.type not in STEP_TYPES


def partial_definition(data: dict[str, Any]) -> JourneyDefinition | None:
    """The parts of `data` the cross-reference checks can use (see the module's doc); None when
    the lists that give parameters and steps their places are themselves unreadable, so any
    reference problem found would only follow from that."""
    parameters = _list(data.get("parameters"))
    flows = _list(data.get("flows"))
    if parameters is None or flows is None:
        return None
    parsed_flows: list[Flow] = []
    for raw in flows:
        flow = _flow(raw)
        if flow is None:
            return None
        parsed_flows.append(flow)
    return JourneyDefinition.model_construct(
        name=data.get("name") if isinstance(data.get("name"), str) else "",
        description=None,
        parameters=[_parameter(raw) for raw in parameters],
        send_window=None,
        frequency_cap=None,
        flows=parsed_flows,
    )


def is_complete(defn: JourneyDefinition) -> bool:
    """Whether every step of `defn` is known (nothing stands in), so the whole graph can be checked."""
    return all(
        flow.steps and not any(isinstance(step, UnparsedStep) for step in flow.steps) for flow in defn.flows
    )


def _list(value: Any) -> list[Any] | None:
    if value is None:  # missing or null: the model reports it; there is nothing to refer to
        return []
    return value if isinstance(value, list) else None


def _parameter(raw: Any) -> Parameter | UnparsedParameter:
    try:
        return Parameter.model_validate(raw)
    except ValidationError:
        pass
    if not isinstance(raw, dict):
        return UnparsedParameter("", None)
    name, kind = raw.get("name"), raw.get("type", "string")
    return UnparsedParameter(
        name if isinstance(name, str) else "",
        kind if kind in _PARAMETER_TYPES else None,
        _read(_BOOL, raw.get("required", True), True),
        _read(_BOOL, raw.get("identifier", False), False),
    )


def _flow(raw: Any) -> Flow | None:
    """The flow, or one built from its readable parts; None when its steps are not a list."""
    try:
        return Flow.model_validate(raw)
    except ValidationError:
        pass
    if not isinstance(raw, dict):
        return Flow.model_construct(id="", name="", main=False, steps=[])
    steps = _list(raw.get("steps"))
    if steps is None:
        return None
    flow_id = raw.get("id")
    return Flow.model_construct(
        id=flow_id if isinstance(flow_id, str) else "",
        name=raw.get("name") if isinstance(raw.get("name"), str) else "",
        main=_read(_BOOL, raw.get("main", False), False),
        steps=[_step(step) for step in steps],
    )


def _step(raw: Any) -> Any:
    try:
        return _STEP.validate_python(raw)
    except ValidationError:
        pass
    if not isinstance(raw, dict):
        return UnparsedStep(None, None)
    kind = raw.get("type")
    return UnparsedStep(_read(_STEP_ID, raw.get("id"), None), kind if isinstance(kind, str) else None)


def _read(adapter: TypeAdapter[Any], value: Any, default: Any) -> Any:
    """`value` as the model would read it (e.g. "10" as a step id), or `default`."""
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return default
