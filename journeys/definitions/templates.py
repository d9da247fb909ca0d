"""Message templates: a sandboxed Jinja2 environment, compiling and rendering.

Templates are written by journey designers; the values they are rendered with are patient data
(PHI). So rendering happens in a sandbox that also bounds what a template can build
(journeys.definitions.sandbox), its output is capped per kind of text (`OutputLimit`: an SMS
body at 1,600 characters, …) while it is produced, an undefined name is an error rather than an
empty string, and a failed render raises `TemplateRenderError` whose message names the kind of
failure, the limit or the template line but never a parameter value.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from zoneinfo import ZoneInfo

import jinja2
from jinja2 import meta

from journeys.definitions.sandbox import (
    LimitedSandbox,
    OutputTooLarge,
    TemplateLimitError,
    checked_filter,
    render_stream,
)
from journeys.definitions.values import MAX_VALUE_CHARS, parse_datetime

DEFAULT_DATE_FORMAT = "%A, %B %-d at %-I:%M %p"


@dataclass(frozen=True)
class OutputLimit:
    """How long a rendered text may be. Past `max_chars`, rendering stops: with `cut` the text is
    cut there, otherwise it is an error naming `label` and the limit."""

    label: str
    max_chars: int
    cut: bool = False


SMS_BODY = OutputLimit("SMS body", 1_600)  # Twilio's maximum (ten segments)
EMAIL_SUBJECT = OutputLimit("email subject", 1_000)
EMAIL_BODY = OutputLimit("email body", 100_000)
EMAIL_HTML = OutputLimit("email html", 200_000)
HTTP_URL = OutputLimit("http_request url", 8_192)
HTTP_HEADER = OutputLimit("http_request header value", 8_192)
HTTP_BODY = OutputLimit("http_request body", 100_000)  # all its strings together
PARAMETER_VALUE = OutputLimit("set_parameters value", MAX_VALUE_CHARS, cut=True)  # as values are cut
TEXT = OutputLimit("text", 100_000)  # when the caller names no limit

# English names, so output does not depend on the process locale.
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DIRECTIVE = re.compile(r"%(-?)(.)", re.DOTALL)
_UNDEFINED_NAME = re.compile(r"^'([A-Za-z_][A-Za-z0-9_]*)' is undefined$")
_TEMPLATE_FILENAME = "<template>"


def _hour12(value: datetime) -> int:
    return value.hour % 12 or 12


def format_datetime(value: datetime, fmt: str = DEFAULT_DATE_FORMAT) -> str:
    """`strftime` with locale-independent English names and portable ``%-d``-style directives.

    ``%-d``, ``%-m``, ``%-H``, ``%-I``, ``%-M``, ``%-S``, ``%-j`` and ``%-y`` drop the leading
    zero on every platform; ``%A``, ``%a``, ``%B``, ``%b`` and ``%p`` are always English.
    """

    def directive(match: re.Match[str]) -> str:
        dash, code = match.groups()
        if code == "%":
            return "%%"
        if code == "A":
            return _DAYS[value.weekday()]
        if code == "a":
            return _DAYS[value.weekday()][:3]
        if code == "B":
            return _MONTHS[value.month - 1]
        if code == "b":
            return _MONTHS[value.month - 1][:3]
        if code == "p":
            return "AM" if value.hour < 12 else "PM"
        if dash:
            unpadded = {
                "d": value.day,
                "m": value.month,
                "H": value.hour,
                "I": _hour12(value),
                "M": value.minute,
                "S": value.second,
                "j": value.timetuple().tm_yday,
                "y": value.year % 100,
            }.get(code)
            return str(unpadded) if unpadded is not None else f"%{code}"
        return match.group(0)

    return value.strftime(_DIRECTIVE.sub(directive, fmt))


class LocalDateTime(datetime):
    """An aware datetime in the instance's time zone that prints in a friendly way.

    ``str()`` (and so ``{{ appointmentDateTime }}`` in a template) gives e.g.
    ``"Friday, December 1, 2023 at 8:00 AM"``.
    """

    @classmethod
    def from_datetime(cls, value: datetime, zone: ZoneInfo) -> LocalDateTime:
        local = value.astimezone(zone)
        return cls(
            local.year,
            local.month,
            local.day,
            local.hour,
            local.minute,
            local.second,
            local.microsecond,
            tzinfo=zone,
            fold=local.fold,
        )

    def __str__(self) -> str:
        return format_datetime(self, "%A, %B %-d, %Y at %-I:%M %p")


def _date_filter(value: object, fmt: str = DEFAULT_DATE_FORMAT) -> str:
    """The ``date`` filter: ``{{ appointmentDateTime | date("%b %-d") }}``.

    A value that is not a datetime (a missing optional parameter renders as ``""``, an
    unparsable one as the text it was sent with) is returned unchanged.
    """
    if isinstance(value, datetime):
        return format_datetime(value, fmt)
    return "" if value is None else str(value)


@functools.lru_cache(maxsize=1)
def get_environment() -> LimitedSandbox:
    """The shared sandboxed environment, built on first use."""
    env = LimitedSandbox(
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )
    env.filters["date"] = checked_filter("date", _date_filter)
    return env


@functools.lru_cache(maxsize=512)
def compile_template(source: str) -> jinja2.Template:
    """Compile a template; raises `jinja2.TemplateSyntaxError` (also for unknown filters)."""
    return get_environment().from_string(source)


_SIMPLE_VAR = re.compile(r"\{\{ *([A-Za-z_][A-Za-z0-9_]*) *\}\}")


@functools.lru_cache(maxsize=512)
def simple_parts(source: str) -> tuple[str, ...] | None:
    """A template made only of literal text and `{{ name }}` as [text, name, text, …, text];
    None for anything else (filters, tags, comments, whitespace control, CR line ends, a trailing
    newline), which Jinja2 renders."""
    if "\r" in source or source.endswith("\n"):
        return None
    parts = tuple(_SIMPLE_VAR.split(source))
    if any(marker in text for text in parts[0::2] for marker in ("{{", "{%", "{#")):
        return None
    return parts


def template_variables(source: str) -> set[str]:
    """Names a template reads from its context, excluding the environment's globals."""
    env = get_environment()
    names = meta.find_undeclared_variables(env.parse(source))
    return {name for name in names if name not in env.globals}


class TemplateRenderError(Exception):
    """A template could not be rendered. The message never contains parameter values."""


def _template_line(tb: TracebackType | None) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _safe_message(exc: Exception, source: str) -> str:
    """Describe `exc` without any text that could have come from a parameter value."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        # Syntax errors come from the template source (the definition), not from values.
        where = f" at line {exc.lineno}" if exc.lineno else ""
        return f"template syntax error{where}: {exc.message}"
    line = _template_line(exc.__traceback__)
    where = f" at template line {line}" if line else ""
    if isinstance(exc, jinja2.UndefinedError):
        match = _UNDEFINED_NAME.match(exc.message or "")
        if match and match.group(1) in template_variables(source):
            return f"template uses an undefined variable '{match.group(1)}'{where}"
        # Attribute/item messages may quote a key taken from a value, so say no more.
        return f"template uses an undefined attribute or item{where}"
    if isinstance(exc, TemplateLimitError):
        return f"template {exc}{where}"
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"template attempted an operation the sandbox does not allow{where}"
    return f"template could not be rendered ({type(exc).__name__}{where})"


def build_context(params: dict[str, str], types: dict[str, str], zone: ZoneInfo) -> dict[str, object]:
    """The template context: every declared parameter, datetimes as `LocalDateTime`."""
    context: dict[str, object] = {name: "" for name in types}
    for name, value in params.items():
        if types.get(name) == "datetime" and isinstance(value, str):
            parsed = parse_datetime(value, zone)
            context[name] = LocalDateTime.from_datetime(parsed, zone) if parsed is not None else value
        else:
            context[name] = value
    return context


class TemplateOverLimit(TemplateRenderError):
    """A template went past a limit: its output, or what it builds (sandbox.TemplateLimitError)."""


def _too_long(limit: OutputLimit) -> TemplateOverLimit:
    message = f"the {limit.label} renders more than {limit.max_chars:,} characters (the limit)"
    return TemplateOverLimit(message)


def _finish(text: str, limit: OutputLimit) -> str:
    if len(text) > limit.max_chars:
        if not limit.cut:
            raise _too_long(limit)
        text = text[: limit.max_chars]
    return text.replace("\x00", "")  # a template can write "\0"; the database cannot store it


def _render_limited(
    template: jinja2.Template, context: dict[str, object], limit: OutputLimit, source: str
) -> str:
    try:
        text = render_stream(template, context, limit.max_chars, cut=limit.cut)
    except OutputTooLarge:
        raise _too_long(limit) from None
    except TemplateLimitError as exc:
        raise TemplateOverLimit(_safe_message(exc, source)) from None
    except Exception as exc:  # any failure inside Jinja2 or a filter
        raise TemplateRenderError(_safe_message(exc, source)) from None
    return _finish(text, limit)


def render(
    source: str, params: dict[str, str], types: dict[str, str], zone: ZoneInfo, limit: OutputLimit = TEXT
) -> str:
    """Render `source` with `params` (keyed by canonical parameter name), at most `limit`.

    `types` maps every declared parameter's canonical name to its type; declared parameters
    missing from `params` render as ``""``; ``datetime`` values are shown in `zone`. NUL
    characters are left out of the result.
    """
    try:
        context = build_context(params, types, zone)
        parts = simple_parts(source)
        if parts is not None and all(name in context for name in parts[1::2]):
            # Only literal text and `{{ name }}`: what Jinja2 would output, without its machinery.
            return _finish("".join(p if i % 2 == 0 else str(context[p]) for i, p in enumerate(parts)), limit)
        template = compile_template(source)
    except TemplateRenderError:
        raise
    except Exception as exc:  # any failure inside Jinja2 or a filter
        raise TemplateRenderError(_safe_message(exc, source)) from None
    return _render_limited(template, context, limit, source)


@functools.lru_cache(maxsize=1)
def get_html_environment() -> LimitedSandbox:
    """Like `get_environment`, with autoescaping: for HTML email bodies."""
    env = LimitedSandbox(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    env.filters["date"] = checked_filter("date", _date_filter)
    return env


@functools.lru_cache(maxsize=256)
def compile_html_template(source: str) -> jinja2.Template:
    return get_html_environment().from_string(source)


def render_html(
    source: str,
    params: dict[str, str],
    types: dict[str, str],
    zone: ZoneInfo,
    limit: OutputLimit = EMAIL_HTML,
) -> str:
    """Render an HTML template (values are escaped), at most `limit`."""
    try:
        template = compile_html_template(source)
        context = build_context(params, types, zone)
    except Exception as exc:
        raise TemplateRenderError(_safe_message(exc, source)) from None
    return _render_limited(template, context, limit, source)


_SAMPLES = {"datetime": "2026-01-15 09:30", "phone": "+15555550100", "email": "a@example.org", "number": "1"}


def limit_problem(
    source: str, types: dict[str, str], limit: OutputLimit, *, html: bool = False
) -> str | None:
    """For validation: the problem when `source`, rendered with short sample values, goes past
    a limit (with real values it would too), else None. Other render failures are left to run
    time, as they may depend on the values."""
    params = {name: _SAMPLES.get(type_, "x") for name, type_ in types.items()}
    try:
        (render_html if html else render)(source, params, types, UTC, limit)  # type: ignore[arg-type]
    except TemplateOverLimit as exc:
        return str(exc)
    except TemplateRenderError:
        pass
    return None
