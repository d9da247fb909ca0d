"""Cross-reference checks on a definition that already matches the model.

`validate_graph` reports problems by path only (``flows[0].steps[2].to``); the loader adds line
numbers. It checks names and ids are unique, that every reference (``next``, ``to``,
``parameter``, template variables) points at something of the right kind, that every step can be
reached, and that no loop can send messages without ever waiting.
"""

from __future__ import annotations

import difflib

import jinja2

from journeys.definitions.loader import Problem
from journeys.definitions.model import EndStep, JourneyDefinition, Parameter, SendSmsStep, WaitUntilStep
from journeys.definitions.templates import compile_template, template_variables

Position = tuple[int, int]  # (flow index, step index)


def _step_path(pos: Position) -> str:
    return f"flows[{pos[0]}].steps[{pos[1]}]"


def validate_graph(defn: JourneyDefinition) -> list[Problem]:
    """Return every cross-reference problem in `defn` (an empty list when it is sound)."""
    problems: list[Problem] = []
    _check_parameters(defn, problems)
    _check_flows(defn, problems)
    ids, unique = _check_step_ids(defn, problems)
    for fi, flow in enumerate(defn.flows):
        for si, step in enumerate(flow.steps):
            path = _step_path((fi, si))
            if isinstance(step, EndStep) and step.next is not None:
                problems.append(
                    Problem(
                        "an end step finishes the instance, so 'next' has no effect (remove it)",
                        f"{path}.next",
                    )
                )
            elif step.next is not None and step.next not in ids:
                problems.append(Problem(f"no step with id {step.next}", f"{path}.next"))
            if isinstance(step, SendSmsStep):
                _check_parameter_ref(defn, step.to, "phone", f"{path}.to", problems)
                _check_template(defn, step.body, f"{path}.body", problems)
            elif isinstance(step, WaitUntilStep):
                _check_parameter_ref(defn, step.parameter, "datetime", f"{path}.parameter", problems)
                if step.before is not None and step.after is not None:
                    problems.append(Problem("set either 'before' or 'after', not both", f"{path}.after"))
    if unique:  # with duplicate ids the graph is ambiguous; fix those first
        successors = _successors(defn, ids)
        _check_reachable(defn, successors, problems)
        _check_loops(defn, successors, problems)
    return problems


def _check_parameters(defn: JourneyDefinition, problems: list[Problem]) -> None:
    seen: dict[str, int] = {}
    for i, param in enumerate(defn.parameters):
        key = param.name.lower()
        if key in seen:
            first = defn.parameters[seen[key]].name
            problems.append(
                Problem(
                    f"duplicate parameter name '{param.name}' (parameter names are case-insensitive; "
                    f"parameters[{seen[key]}] is '{first}')",
                    f"parameters[{i}].name",
                )
            )
        else:
            seen[key] = i
        if param.identifier and not param.required:
            problems.append(
                Problem(
                    f"identifier parameter '{param.name}' must be required "
                    "(identifier implies required: true)",
                    f"parameters[{i}].required",
                )
            )


def _check_flows(defn: JourneyDefinition, problems: list[Problem]) -> None:
    seen: dict[str, int] = {}
    main: int | None = None
    for i, flow in enumerate(defn.flows):
        if flow.id in seen:
            problems.append(
                Problem(
                    f"duplicate flow id '{flow.id}' (flows[{seen[flow.id]}] has the same id)",
                    f"flows[{i}].id",
                )
            )
        else:
            seen[flow.id] = i
        if flow.main:
            if main is None:
                main = i
            else:
                problems.append(
                    Problem(
                        f"only one flow can be the main flow "
                        f"(flows[{main}] '{defn.flows[main].id}' already is)",
                        f"flows[{i}].main",
                    )
                )


def _check_step_ids(defn: JourneyDefinition, problems: list[Problem]) -> tuple[dict[int, Position], bool]:
    ids: dict[int, Position] = {}
    unique = True
    for fi, flow in enumerate(defn.flows):
        for si, step in enumerate(flow.steps):
            if step.id in ids:
                unique = False
                problems.append(
                    Problem(
                        f"duplicate step id {step.id} ({_step_path(ids[step.id])} has the same id; "
                        "step ids must be unique across the whole journey)",
                        f"{_step_path((fi, si))}.id",
                    )
                )
            else:
                ids[step.id] = (fi, si)
    return ids, unique


def _suggestion(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_parameter_ref(
    defn: JourneyDefinition, name: str, wanted: str, path: str, problems: list[Problem]
) -> None:
    param: Parameter | None = defn.parameter(name)
    if param is None:
        of_type = [p.name for p in defn.parameters if p.type == wanted]
        hint = _suggestion(name, of_type) or (
            f" ({wanted} parameters: {', '.join(of_type)})" if of_type else f" (declare a {wanted} parameter)"
        )
        problems.append(Problem(f"no parameter named '{name}'{hint}", path))
    elif param.type != wanted:
        problems.append(Problem(f"parameter '{param.name}' is of type {param.type}, not {wanted}", path))


def _check_template(defn: JourneyDefinition, source: str, path: str, problems: list[Problem]) -> None:
    try:
        compile_template(source)
        names = template_variables(source)
    except jinja2.TemplateSyntaxError as exc:
        where = f" (line {exc.lineno} of the template)" if exc.lineno and "\n" in source.strip() else ""
        problems.append(Problem(f"template syntax error: {exc.message}{where}", path))
        return
    canonical = {p.name for p in defn.parameters}
    by_lower = {p.name.lower(): p.name for p in defn.parameters}
    for name in sorted(names):
        if name in canonical:
            continue
        if name.lower() in by_lower:
            hint = (
                f": did you mean '{by_lower[name.lower()]}'? "
                "(templates must spell parameter names exactly as declared)"
            )
        else:
            hint = _suggestion(name, sorted(canonical))
            hint = hint or (f" (parameters: {', '.join(sorted(canonical))})" if canonical else "")
        problems.append(Problem(f"template uses unknown variable '{name}'{hint}", path))


def _successors(defn: JourneyDefinition, ids: dict[int, Position]) -> dict[Position, Position | None]:
    """Where each step goes next: its `next`, else the following step; None ends or completes."""
    result: dict[Position, Position | None] = {}
    for fi, flow in enumerate(defn.flows):
        for si, step in enumerate(flow.steps):
            target: Position | None
            if isinstance(step, EndStep):
                target = None
            elif step.next is not None:
                target = ids.get(step.next)
            elif si + 1 < len(flow.steps):
                target = (fi, si + 1)
            else:
                target = None  # falling off the end of a flow completes the instance
            result[(fi, si)] = target
    return result


def _check_reachable(
    defn: JourneyDefinition, successors: dict[Position, Position | None], problems: list[Problem]
) -> None:
    reached: set[Position] = set()
    for fi in range(len(defn.flows)):
        pos: Position | None = (fi, 0)
        while pos is not None and pos not in reached:
            reached.add(pos)
            pos = successors[pos]
    for pos in successors:
        if pos not in reached:
            step = defn.flows[pos[0]].steps[pos[1]]
            problems.append(Problem(f"step {step.id} is unreachable", _step_path(pos)))


def _check_loops(
    defn: JourneyDefinition, successors: dict[Position, Position | None], problems: list[Problem]
) -> None:
    """Find loops made only of steps that do not wait (each step has at most one successor)."""

    def waits(pos: Position) -> bool:
        return defn.flows[pos[0]].steps[pos[1]].type in ("wait", "wait_until")

    state: dict[Position, int] = {}  # 1: on the current walk, 2: done
    for start in successors:
        walk: list[Position] = []
        pos: Position | None = start
        while pos is not None and not waits(pos) and pos not in state:
            state[pos] = 1
            walk.append(pos)
            pos = successors[pos]
        if pos is not None and state.get(pos) == 1:
            loop = walk[walk.index(pos) :]
            first = loop.index(min(loop))
            loop = loop[first:] + loop[:first]
            ids = [str(defn.flows[p[0]].steps[p[1]].id) for p in loop + [loop[0]]]
            problems.append(
                Problem(
                    f"steps {' -> '.join(ids)} form a loop with no wait or wait_until step, "
                    "so it would repeat without pause",
                    _step_path(loop[0]),
                )
            )
        for p in walk:
            state[p] = 2
