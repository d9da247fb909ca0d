"""Cross-reference checks on a definition that matches the model, or on the parts of one that do.

`validate_graph` reports problems by path only (``flows[0].steps[2].to``); the loader adds line
numbers. It checks names and ids are unique, that every reference (step ids such as ``next``,
``target``, ``on_failure``, ``on_timeout``, ``replies[].next``, ``cases[].next`` and ``else``;
parameter names in ``to``, ``parameter``, ``save``, ``values`` and conditions; template
variables; ``reply:`` outcomes) points at something of the right kind, that every step can be
reached, and that no loop can run without ever waiting.

A definition that fails the model is checked as `partial.partial_definition` sees it: parts that
failed stand in as `UnparsedStep` / `UnparsedParameter`; references to them are not reported,
and the whole-graph checks wait until every step parses.
"""

from __future__ import annotations

import re
from typing import Any

from journeys.definitions.model import (
    DEFAULT_REPLY_KEYWORDS,
    BranchStep,
    Condition,
    EndStep,
    GotoStep,
    HttpRequestStep,
    JourneyDefinition,
    Parameter,
    SendEmailStep,
    SendSmsStep,
    SetParametersStep,
    WaitForReplyStep,
    WaitUntilStep,
)
from journeys.definitions.partial import UnparsedStep, is_complete
from journeys.definitions.problems import Problem
from journeys.definitions.step_graph import Position, check_loops, check_reachable, step_path, successors
from journeys.definitions.template_checks import check_json_templates, check_template
from journeys.definitions.template_checks import suggestion as _suggestion
from journeys.definitions.templates import (
    EMAIL_BODY,
    EMAIL_HTML,
    EMAIL_SUBJECT,
    HTTP_BODY,
    HTTP_HEADER,
    HTTP_URL,
    PARAMETER_VALUE,
    SMS_BODY,
)

RESERVED_OUTCOMES = {
    "other": "any reply that matches no route is 'other'; route it with on_other",
    "no_reply": "no reply in time is 'no_reply'; route it with on_timeout",
}
_BARE_VARIABLE = re.compile(r"^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*$")
_DATETIME_FORMAT = "%Y-%m-%d %H:%M"
# In the outcomes a reply condition may name: a step that did not parse may record any outcome.
ANY_OUTCOME = "*"  # never a valid outcome name


def validate_graph(defn: JourneyDefinition) -> list[Problem]:
    """Return every cross-reference problem in `defn` (an empty list when it is sound)."""
    problems: list[Problem] = []
    _check_parameters(defn, problems)
    _check_flows(defn, problems)
    ids, unique = _check_step_ids(defn, problems)
    outcomes = _reply_outcomes(defn)
    for fi, flow in enumerate(defn.flows):
        for si, step in enumerate(flow.steps):
            path = step_path((fi, si))
            _check_next(step, ids, path, problems)
            if isinstance(step, SendSmsStep):
                _check_parameter_ref(defn, step.to, "phone", f"{path}.to", problems)
                check_template(defn, step.body, f"{path}.body", problems, SMS_BODY)
                if step.send_before is not None:
                    _check_parameter_ref(defn, step.send_before, "datetime", f"{path}.send_before", problems)
            elif isinstance(step, SendEmailStep):
                _check_parameter_ref(defn, step.to, "email", f"{path}.to", problems)
                if step.send_before is not None:
                    _check_parameter_ref(defn, step.send_before, "datetime", f"{path}.send_before", problems)
                check_template(defn, step.subject, f"{path}.subject", problems, EMAIL_SUBJECT)
                check_template(defn, step.body, f"{path}.body", problems, EMAIL_BODY)
                if step.html is not None:
                    check_template(defn, step.html, f"{path}.html", problems, EMAIL_HTML, html=True)
            elif isinstance(step, HttpRequestStep):
                _check_http_request(defn, step, ids, path, problems)
            elif isinstance(step, WaitUntilStep):
                _check_parameter_ref(defn, step.parameter, "datetime", f"{path}.parameter", problems)
                if step.before is not None and step.after is not None:
                    problems.append(Problem("set either 'before' or 'after', not both", f"{path}.after"))
            elif isinstance(step, WaitForReplyStep):
                _check_wait_for_reply(defn, step, ids, path, problems)
            elif isinstance(step, BranchStep):
                for i, case in enumerate(step.cases):
                    _check_condition(defn, case.when, f"{path}.cases[{i}].when", outcomes, problems)
                    _check_step_ref(case.next, ids, f"{path}.cases[{i}].next", problems)
                if step.else_ is not None:
                    _check_step_ref(step.else_, ids, f"{path}.else", problems)
            elif isinstance(step, SetParametersStep):
                _check_set_parameters(defn, step, path, problems)
            elif isinstance(step, GotoStep):
                _check_step_ref(step.target, ids, f"{path}.target", problems)
    if unique and is_complete(defn):  # with duplicate or unknown steps the graph is not known yet
        following = successors(defn, ids)
        check_reachable(defn, following, problems)
        check_loops(defn, following, problems)
    return problems


# --- names and ids ---------------------------------------------------------------------------


def _check_parameters(defn: JourneyDefinition, problems: list[Problem]) -> None:
    seen: dict[str, int] = {}
    for i, param in enumerate(defn.parameters):
        key = param.name.lower()
        if not key:  # an unparsed parameter whose name is not text
            continue
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
        elif flow.id:  # "": an unparsed flow whose id is not text
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
            if step.id is None:  # an unparsed step whose id cannot be read
                continue
            if step.id in ids:
                unique = False
                problems.append(
                    Problem(
                        f"duplicate step id {step.id} ({step_path(ids[step.id])} has the same id; "
                        "step ids must be unique across the whole journey)",
                        f"{step_path((fi, si))}.id",
                    )
                )
            else:
                ids[step.id] = (fi, si)
    return ids, unique


def _check_step_ref(target: int, ids: dict[int, Position], path: str, problems: list[Problem]) -> None:
    if target not in ids:
        problems.append(Problem(f"no step with id {target}", path))


def _uses_default_next(step: Any) -> bool:
    """Whether the step can go on to its `next` (or, without it, the following step)."""
    if isinstance(step, EndStep | GotoStep):
        return False
    if isinstance(step, BranchStep):
        return step.else_ is None
    if isinstance(step, WaitForReplyStep):
        return (
            step.on_other is None
            or step.on_timeout is None
            or any(route.next is None for route in step.replies)
        )
    return True


def _check_next(step: Any, ids: dict[int, Position], path: str, problems: list[Problem]) -> None:
    if step.next is None:
        return
    if isinstance(step, EndStep):
        message = "an end step finishes the instance, so 'next' has no effect (remove it)"
    elif isinstance(step, GotoStep):
        message = "a goto step always continues at its 'target', so 'next' has no effect (remove it)"
    elif isinstance(step, BranchStep) and not _uses_default_next(step):
        message = "this branch has 'else', so 'next' has no effect (remove one of them)"
    elif isinstance(step, WaitForReplyStep) and not _uses_default_next(step):
        message = (
            "every reply route, on_other and on_timeout name their step, so 'next' has no effect (remove it)"
        )
    else:
        _check_step_ref(step.next, ids, f"{path}.next", problems)
        return
    problems.append(Problem(message, f"{path}.next"))


def _parameter_names(defn: JourneyDefinition) -> list[str]:
    """The declared parameter names, in order (leaving out unparsed ones whose name is not text)."""
    return [p.name for p in defn.parameters if p.name]



def _check_parameter_ref(
    defn: JourneyDefinition, name: str, wanted: str, path: str, problems: list[Problem]
) -> Parameter | None:
    param: Parameter | None = defn.parameter(name)
    if param is None:
        of_type = [p.name for p in defn.parameters if p.type == wanted]
        hint = _suggestion(name, of_type) or (
            f" ({wanted} parameters: {', '.join(of_type)})" if of_type else f" (declare a {wanted} parameter)"
        )
        problems.append(Problem(f"no parameter named '{name}'{hint}", path))
    elif param.type is not None and param.type != wanted:  # None: an unparsed one's unknown type
        problems.append(Problem(f"parameter '{param.name}' is of type {param.type}, not {wanted}", path))
    return param


def _find_parameter(
    defn: JourneyDefinition, name: str, path: str, problems: list[Problem]
) -> Parameter | None:
    """A parameter of any type, by case-insensitive name; a problem (with a hint) if there is none."""
    param = defn.parameter(name)
    if param is None:
        names = _parameter_names(defn)
        hint = _suggestion(name, names) or (
            f" (parameters: {', '.join(names)})" if names else " (the journey declares no parameters)"
        )
        problems.append(Problem(f"no parameter named '{name}'{hint}", path))
    return param


def _check_settable(
    defn: JourneyDefinition, name: str, path: str, problems: list[Problem]
) -> Parameter | None:
    """A parameter a step may change: declared, and not an identifier parameter."""
    param = _find_parameter(defn, name, path, problems)
    if param is not None and param.identifier:
        problems.append(
            Problem(
                f"cannot set identifier parameter '{param.name}' (instances are found by their "
                "identifier values, so they must not change)",
                path,
            )
        )
        return None
    return param


def _check_settable_keys(
    defn: JourneyDefinition, names: list[str], path: str, problems: list[Problem]
) -> dict[str, Parameter]:
    """Check the keys of `save` / `values`; return the settable ones by key."""
    found: dict[str, Parameter] = {}
    first_key: dict[str, str] = {}
    for name in names:
        param = _check_settable(defn, name, f"{path}.{name}", problems)
        if param is None:
            continue
        if param.name in first_key:
            problems.append(
                Problem(
                    f"parameter '{param.name}' is set twice (also as '{first_key[param.name]}'; "
                    "parameter names are case-insensitive)",
                    f"{path}.{name}",
                )
            )
            continue
        first_key[param.name] = name
        found[name] = param
    return found


# --- step kinds ------------------------------------------------------------------------------


def _check_http_request(
    defn: JourneyDefinition,
    step: HttpRequestStep,
    ids: dict[int, Position],
    path: str,
    problems: list[Problem],
) -> None:
    _check_http_target(defn, step, path, problems)
    for name, value in step.headers.items():
        check_template(defn, value, f"{path}.headers.{name}", problems, HTTP_HEADER)
    if step.body is not None and step.method == "GET":
        problems.append(
            Problem(
                "a GET request is sent without a body, so 'body' has no effect (remove it or use POST)",
                f"{path}.body",
            )
        )
    check_json_templates(defn, step.body, f"{path}.body", problems, HTTP_BODY)
    _check_settable_keys(defn, list(step.save), f"{path}.save", problems)
    for name, dotted in step.save.items():
        if not dotted.strip() or any(part.strip() == "" for part in dotted.split(".")):
            problems.append(
                Problem(
                    f"{dotted!r} is not a dotted path into the JSON response (e.g. 'data.status', "
                    "'items.0.id')",
                    f"{path}.save.{name}",
                )
            )
    if step.on_failure is not None:
        _check_step_ref(step.on_failure, ids, f"{path}.on_failure", problems)


def _check_http_target(
    defn: JourneyDefinition, step: HttpRequestStep, path: str, problems: list[Problem]
) -> None:
    """Either a url, or a registered API (`api`) and a path below its base URL."""
    if (step.url is None) == (step.api is None):
        problems.append(Problem("give either 'url' or 'api' (a registered API) with 'path'", path))
    if step.path is not None and step.api is None:
        problems.append(Problem("'path' goes with 'api' (a registered API's base URL)", f"{path}.path"))
    if step.url is not None and check_template(defn, step.url, f"{path}.url", problems, HTTP_URL):
        fixed = step.url.split("{", 1)[0]  # the text before any template syntax
        schemes = ("http://", "https://")
        if not any(fixed.startswith(s) or s.startswith(fixed) for s in schemes):
            problems.append(
                Problem("the url must start with http:// or https:// (lower case)", f"{path}.url")
            )
    below = step.path if step.api is not None else None
    if below and check_template(defn, below, f"{path}.path", problems, HTTP_URL):
        fixed = below.split("{", 1)[0]
        if fixed and not fixed.startswith(("/", "?")):
            problem = "the path must start with / (it follows the API's base URL)"
            problems.append(Problem(problem, f"{path}.path"))


def _check_wait_for_reply(
    defn: JourneyDefinition,
    step: WaitForReplyStep,
    ids: dict[int, Position],
    path: str,
    problems: list[Problem],
) -> None:
    _check_parameter_ref(defn, step.to, "phone", f"{path}.to", problems)
    if step.save_reply_to is not None:
        _check_settable(defn, step.save_reply_to, f"{path}.save_reply_to", problems)
    first_outcome: dict[str, int] = {}
    keyword_owner: dict[str, int] = {}
    for i, route in enumerate(step.replies):
        route_path = f"{path}.replies[{i}]"
        _check_outcome(route.outcome, i, path, first_outcome, problems)
        _check_match(step, i, path, keyword_owner, problems)
        if route.next is not None:
            _check_step_ref(route.next, ids, f"{route_path}.next", problems)
    if step.on_other is not None:
        _check_step_ref(step.on_other, ids, f"{path}.on_other", problems)
    if step.on_timeout is not None:
        _check_step_ref(step.on_timeout, ids, f"{path}.on_timeout", problems)


def _check_outcome(
    outcome: str, i: int, path: str, first_outcome: dict[str, int], problems: list[Problem]
) -> None:
    """The outcome of replies[i]: not reserved, and not one an earlier route has."""
    where = f"{path}.replies[{i}].outcome"
    if outcome in RESERVED_OUTCOMES:
        problems.append(Problem(f"'{outcome}' is a reserved outcome ({RESERVED_OUTCOMES[outcome]})", where))
    elif outcome in first_outcome:
        problems.append(
            Problem(
                f"duplicate outcome '{outcome}' ({path}.replies[{first_outcome[outcome]}] "
                "has the same outcome)",
                where,
            )
        )
    else:
        first_outcome[outcome] = i


def _check_match(
    step: WaitForReplyStep, i: int, path: str, keyword_owner: dict[str, int], problems: list[Problem]
) -> None:
    """The keywords of replies[i]: given unless defaulted, not empty, and none an earlier route
    (tried first) already matches."""
    route = step.replies[i]
    route_path = f"{path}.replies[{i}]"
    if route.match is None and route.outcome not in DEFAULT_REPLY_KEYWORDS:
        defaults = " and ".join(f"'{o}'" for o in DEFAULT_REPLY_KEYWORDS)
        problems.append(
            Problem(
                f"reply outcome '{route.outcome}' needs 'match' (a list of keywords; only {defaults} "
                "have default keywords)",
                route_path,
            )
        )
    elif route.match is not None and not route.match:
        problems.append(Problem("'match' is empty, so this reply can never be chosen", f"{route_path}.match"))
    for j, keyword in enumerate(route.keywords()):
        where = f"{route_path}.match[{j}]" if route.match is not None else route_path
        if keyword == "":
            problems.append(
                Problem("this keyword is only spaces and punctuation, which are ignored in replies", where)
            )
        elif keyword_owner.get(keyword, i) != i:
            owner = keyword_owner[keyword]
            problems.append(
                Problem(
                    f"keyword '{keyword}' is already matched by {path}.replies[{owner}] "
                    f"('{step.replies[owner].outcome}'), which is tried first",
                    where,
                )
            )
        else:
            keyword_owner.setdefault(keyword, i)


def _check_set_parameters(
    defn: JourneyDefinition, step: SetParametersStep, path: str, problems: list[Problem]
) -> None:
    params = _check_settable_keys(defn, list(step.values), f"{path}.values", problems)
    for name, source in step.values.items():
        value_path = f"{path}.values.{name}"
        if not check_template(defn, source, value_path, problems, PARAMETER_VALUE):
            continue
        target = params.get(name)
        bare = _BARE_VARIABLE.match(source)
        source_param = defn.parameter(bare.group(1)) if bare else None
        if target is not None and target.type == "datetime" and source_param is not None:
            if source_param.type == "datetime":
                problems.append(
                    Problem(
                        f"'{source.strip()}' renders as friendly text (e.g. 'Friday, December 1, 2023 at "
                        "8:00 AM'), which is not a datetime value; write "
                        f"\"{{{{ {source_param.name} | date('{_DATETIME_FORMAT}') }}}}\"",
                        value_path,
                    )
                )


# --- conditions ------------------------------------------------------------------------------


def _reply_outcomes(defn: JourneyDefinition) -> set[str] | None:
    """Every outcome a wait_for_reply step can record (with ANY_OUTCOME when an unparsed step may
    be one); None when the journey has none."""
    outcomes: set[str] | None = None
    for flow in defn.flows:
        for step in flow.steps:
            if isinstance(step, WaitForReplyStep):
                outcomes = (outcomes or set()) | set(RESERVED_OUTCOMES)
                outcomes |= {route.outcome for route in step.replies}
            elif isinstance(step, UnparsedStep) and step.may_wait_for_reply():
                outcomes = (outcomes or set()) | {ANY_OUTCOME}
    return outcomes


def _check_condition(
    defn: JourneyDefinition, cond: Condition, path: str, outcomes: set[str] | None, problems: list[Problem]
) -> None:
    for key, children in (("all", cond.all), ("any", cond.any)):
        if children is None:
            continue
        if not children:
            problems.append(Problem(f"'{key}' needs at least one condition", f"{path}.{key}"))
        for i, child in enumerate(children):
            _check_condition(defn, child, f"{path}.{key}[{i}]", outcomes, problems)
    if cond.not_ is not None:
        _check_condition(defn, cond.not_, f"{path}.not", outcomes, problems)
    if cond.reply is not None:
        _check_reply_condition(cond.reply, f"{path}.reply", outcomes, problems)
    if cond.parameter is None:
        return
    if cond.before is not None or cond.after is not None:
        _check_parameter_ref(defn, cond.parameter, "datetime", f"{path}.parameter", problems)
        key, bound = ("before", cond.before) if cond.before is not None else ("after", cond.after)
        assert bound is not None
        if not bound.startswith("now"):
            _check_parameter_ref(defn, bound, "datetime", f"{path}.{key}", problems)
    else:
        _find_parameter(defn, cond.parameter, f"{path}.parameter", problems)
    if cond.in_ is not None and not cond.in_:
        problems.append(Problem("'in' needs at least one value", f"{path}.in"))


def _check_reply_condition(reply: str, path: str, outcomes: set[str] | None, problems: list[Problem]) -> None:
    if outcomes is None:
        problems.append(
            Problem("the journey has no wait_for_reply step, so a 'reply' condition never holds", path)
        )
    elif ANY_OUTCOME in outcomes:
        return  # a step that did not parse may record it: checked once it does
    elif reply not in outcomes:
        known = sorted(outcomes)
        hint = _suggestion(reply, known) or f" (outcomes: {', '.join(known)})"
        problems.append(Problem(f"no wait_for_reply step has the outcome '{reply}'{hint}", path))
