"""Validation of a definition's templates: they compile, name only declared parameters, and stay
within their output limits (`templates.OutputLimit`) and the sandbox's (what they build), tried
with sample values — so ``{{ 'x' * 300000000 }}`` is a validation problem, not a failed send."""

from __future__ import annotations

import difflib
from typing import Any

import jinja2

from journeys.definitions.model import JourneyDefinition
from journeys.definitions.problems import Problem
from journeys.definitions.templates import OutputLimit, compile_template, limit_problem, template_variables


def suggestion(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_template(
    defn: JourneyDefinition,
    source: str,
    path: str,
    problems: list[Problem],
    limit: OutputLimit,
    *,
    html: bool = False,
) -> bool:
    """Check `source` compiles, uses only declared parameters and stays within `limit`; True
    when it is fine."""
    try:
        compile_template(source)
        names = template_variables(source)
    except jinja2.TemplateSyntaxError as exc:
        where = f" (line {exc.lineno} of the template)" if exc.lineno and "\n" in source.strip() else ""
        problems.append(Problem(f"template syntax error: {exc.message}{where}", path))
        return False
    canonical = {p.name for p in defn.parameters if p.name}  # unparsed ones may have none
    by_lower = {p.name.lower(): p.name for p in defn.parameters}
    fine = True
    for name in sorted(names):
        if name in canonical:
            continue
        fine = False
        if name.lower() in by_lower:
            hint = (
                f": did you mean '{by_lower[name.lower()]}'? "
                "(templates must spell parameter names exactly as declared)"
            )
        else:
            hint = suggestion(name, sorted(canonical))
            hint = hint or (f" (parameters: {', '.join(sorted(canonical))})" if canonical else "")
        problems.append(Problem(f"template uses unknown variable '{name}'{hint}", path))
    if fine:
        problem = limit_problem(source, {p.name: p.type for p in defn.parameters}, limit, html=html)
        if problem is not None:
            problems.append(Problem(problem, path))
            fine = False
    return fine


def check_json_templates(
    defn: JourneyDefinition, value: Any, path: str, problems: list[Problem], limit: OutputLimit
) -> None:
    """Every string inside an http_request body is a template."""
    if isinstance(value, str):
        check_template(defn, value, path, problems, limit)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_json_templates(defn, item, f"{path}[{i}]", problems, limit)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_json_templates(defn, item, f"{path}.{key}", problems, limit)
