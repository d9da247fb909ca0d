"""A Jinja2 sandbox that bounds what a template can build, and rendering that stops at a cap.

Jinja2's own sandbox keeps templates out of Python's internals but lets them build values of
any size: ``{{ 'x' * 300000000 }}`` allocates 300 MB (at compile time even: constant
expressions are folded), ``'x'.ljust(10**9)`` a gigabyte. Here every operation that can make a
value larger than its inputs is checked *before* it runs — the ``*``, ``**``, ``+`` and ``%``
operators, ``~``, string methods with a width or count, the filters that pad, repeat or join —
and every value a template builds is counted:

- no single value may exceed MAX_BUILT_CHARS characters (`ValueTooLarge`);
- one render may build at most MAX_WORK characters in all, loop iterations counting one each
  (`TooMuchWork`), which bounds its memory and its time;
- the output is produced piece by piece (`Template.generate`) and rendering stops as soon as
  it passes the caller's cap (`OutputTooLarge`), so output is never assembled beyond it.

Mutating methods of lists and dicts are refused (Jinja2's immutable sandbox), and `lipsum` is
not available. Error messages name the limit, never a value.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Generator, Iterator
from contextvars import ContextVar
from typing import Any, cast

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment
from jinja2.utils import pass_context

MAX_BUILT_CHARS = 1_000_000  # the largest value (string, list, …) a template may build
MAX_WORK = 10_000_000  # characters built plus loop iterations, per render
MAX_INT_BITS = 65_536  # integers a template computes

_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|[0-9]+)?(?:\.(\*|[0-9]+))?")


class TemplateLimitError(Exception):
    """A template went past a limit. The message names the limit, never a value."""


class ValueTooLarge(TemplateLimitError):
    def __init__(self) -> None:
        super().__init__(f"builds a value larger than {MAX_BUILT_CHARS:,} characters (the limit)")


class TooMuchWork(TemplateLimitError):
    def __init__(self) -> None:
        super().__init__(f"does more than {MAX_WORK:,} characters or loop steps of work (the limit)")


class OutputTooLarge(TemplateLimitError):
    def __init__(self, max_chars: int) -> None:
        super().__init__(f"renders more than {max_chars:,} characters (the limit)")
        self.max_chars = max_chars


class _Budget:
    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_WORK


_BUDGET: ContextVar[_Budget | None] = ContextVar("journeys_template_budget", default=None)


def charge(size: int) -> None:
    """Count `size` characters (or steps) against the current render; outside a render (Jinja2
    folding constants at compile time) only the single-value limit applies."""
    if size > MAX_BUILT_CHARS:
        raise ValueTooLarge()
    budget = _BUDGET.get()
    if budget is not None:
        budget.left -= size
        if budget.left < 0:
            raise TooMuchWork()


def expect(size: int) -> None:
    """Refuse, before it is built, a value of `size` characters that would go past a limit."""
    if size > MAX_BUILT_CHARS:
        raise ValueTooLarge()
    budget = _BUDGET.get()
    if budget is not None and size > budget.left:
        raise TooMuchWork()


def size_of(value: Any, depth: int = 0) -> int:
    """About how many characters `value` holds (containers: their items, a few levels deep)."""
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return 1
    if isinstance(value, int):
        return value.bit_length() // 8 + 1
    if isinstance(value, range):
        return len(value)
    if isinstance(value, list | tuple | set | frozenset | dict):
        n = len(value)
        if depth >= 3 or n > MAX_BUILT_CHARS:
            return n
        items: Any = value.items() if isinstance(value, dict) else value
        return n + sum(size_of(item, depth + 1) for item in items)
    return 1


def _account(value: Any) -> Any:
    charge(size_of(value))
    return value


def _int_arg(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ---------------------------------------------------------------- operators
def _check_printf(fmt: str) -> None:
    for width, precision in _PRINTF_SPEC.findall(fmt):
        for number in (width, precision):
            if number == "*":
                raise SecurityError("a '*' width or precision is not allowed in templates")
            if number and (len(number) > 9 or int(number) > MAX_BUILT_CHARS):
                raise ValueTooLarge()


def _check_format_string(fmt: str) -> None:
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if spec and "{" in spec:
            raise SecurityError("nested replacement fields are not allowed in templates")
        for number in re.findall(r"[0-9]+", spec or ""):
            if len(number) > 9 or int(number) > MAX_BUILT_CHARS:
                raise ValueTooLarge()


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be too large, before it runs."""
    sequence = (str, bytes, list, tuple)
    if operator == "*":
        count, seq = (_int_arg(right), left) if _int_arg(right) is not None else (_int_arg(left), right)
        if count is not None and isinstance(seq, sequence):
            expect(size_of(seq) * max(count, 0))
        elif _int_arg(left) is not None and _int_arg(right) is not None:
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise ValueTooLarge()
    elif operator == "**":
        base, exponent = _int_arg(left), _int_arg(right)
        if base is not None and exponent is not None and abs(base) > 1 and exponent > 0:
            if exponent * abs(base).bit_length() > MAX_INT_BITS:
                raise ValueTooLarge()
    elif operator == "+" and isinstance(left, sequence) and isinstance(right, sequence):
        expect(size_of(left) + size_of(right))
    elif operator == "%" and isinstance(left, str):
        _check_printf(left)


# ---------------------------------------------------------------- calls and filters
def _check_str_method(owner: str | bytes, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if name == "replace" and len(args) >= 2 and isinstance(args[0], type(owner)):
        old, new = args[0], args[1]
        hits = owner.count(old) if old else len(owner) + 1  # type: ignore[arg-type]  # same type as owner
        expect(len(owner) + hits * max(0, len(new) - len(old)))
    elif name == "expandtabs":
        tab = _int_arg(args[0] if args else kwargs.get("tabsize", 8)) or 0
        tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
        expect(len(owner) + tabs * max(tab, 0))


def _check_join(separator: Any, items: list[Any]) -> None:
    expect(sum(size_of(item) for item in items) + size_of(separator) * max(len(items) - 1, 0))


def _prepare_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Check a call before it runs; returns the arguments to call with (an iterable given to
    `join` is read into a list first, to measure it)."""
    name = getattr(obj, "__name__", "")
    wrapped = getattr(obj, "__wrapped__", None)  # Jinja2's sandboxed str.format / format_map
    template = getattr(wrapped, "__self__", None)
    if name in ("format", "format_map") and isinstance(template, str):
        _check_format_string(template)
        return args
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str | bytes | int | float):
        return args
    for value in (*args, *kwargs.values()):  # widths, lengths, counts: ljust, zfill, to_bytes, …
        number = _int_arg(value)
        if number is not None and abs(number) > MAX_BUILT_CHARS:
            raise ValueTooLarge()
    if isinstance(owner, str | bytes):
        if name == "join" and args:
            items = list(args[0])
            _check_join(owner, items)
            return (items, *args[1:])
        _check_str_method(owner, name, args, kwargs)
    return args


def _check_filter_args(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Checks for the built-in filters that can make a value larger than their input."""
    value = args[0] if args else None
    text = value if isinstance(value, str) else None

    def arg(i: int, key: str, default: Any) -> Any:
        return args[i] if len(args) > i else kwargs.get(key, default)

    if name in ("center", "batch", "slice", "truncate", "wordwrap", "indent"):
        most = MAX_RANGE if name in ("batch", "slice") else MAX_BUILT_CHARS  # counts of lists
        for extra in (*args[1:], *kwargs.values()):
            number = _int_arg(extra)
            if number is not None and abs(number) > most:
                raise ValueTooLarge()
    if name == "indent" and text is not None:
        width = arg(1, "width", 4)
        pad = len(width) if isinstance(width, str) else (_int_arg(width) or 0)
        expect(len(text) + (text.count("\n") + 1) * max(pad, 0))
    elif name == "wordwrap" and text is not None:
        wrap = arg(3, "wrapstring", None)
        width = max(_int_arg(arg(1, "width", 79)) or 1, 1)
        expect(len(text) * 2 + (len(text) // width + 1) * (len(wrap) if isinstance(wrap, str) else 1))
    elif name == "replace" and text is not None and len(args) >= 3:
        _check_str_method(text, "replace", (args[1], args[2]), {})
    elif name == "format" and text is not None:
        _check_printf(text)
    elif name == "join" and value is not None and not isinstance(value, str):
        items = list(value)
        _check_join(arg(1, "d", ""), items)
        return (items, *args[1:])
    return args


def checked_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` as a filter whose arguments are checked (built-in filters by `name`) and whose
    result is counted."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0  # context/env first

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        head, rest = args[:skip], _check_filter_args(name, args[skip:], kwargs)
        return _account(func(*head, *rest, **kwargs))

    return checked


@pass_context
def _counted(context: Context, iterable: Any) -> Iterator[Any]:
    """What a for loop iterates over: each step counts as work."""
    for item in iterable:
        charge(1)
        yield item


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise OverflowError(f"a range of more than {MAX_RANGE:,} numbers is not allowed")
    charge(len(numbers))
    return numbers


def _checked_concat(items: Any) -> str:
    """Joins a buffer of output pieces (block `set`, macros, `filter` and `call` blocks)."""
    pieces = items if isinstance(items, list) else list(items)
    expect(sum(len(piece) for piece in pieces))
    return str(_account("".join(pieces)))


class _LimitedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802 (Jinja2's name)
        self.write("environment.concat_values(context.eval_ctx, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:  # noqa: N802
        # Before the filters a template uses are collected: every loop counts its steps.
        for loop in node.find_all(nodes.For):
            if not loop.recursive:
                counted = nodes.Filter(loop.iter, "_counted", [], [], None, None, lineno=loop.iter.lineno)
                loop.iter = counted.set_environment(self.environment)
        super().visit_Template(node, frame)


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with every growing operation checked (see the module)."""

    code_generator_class = _LimitedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(_checked_concat)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.pop("lipsum", None)
        self.globals["range"] = _range
        self.filters = {name: checked_filter(name, f) for name, f in self.filters.items()}
        self.filters["_counted"] = _counted

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return _account(super().call_binop(context, operator, left, right))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if not self.is_safe_callable(obj):
            raise SecurityError(f"{type(obj).__name__} object is not safely callable")
        args = _prepare_call(obj, args, kwargs)
        return _account(context.call(obj, *args, **kwargs))

    def concat_values(self, eval_ctx: Any, values: tuple[Any, ...]) -> str:
        """The `~` operator."""
        expect(sum(size_of(v) for v in values))
        joined: str = _account(markup_join(values) if eval_ctx.autoescape else str_join(values))
        return joined


def render_stream(template: jinja2.Template, context: dict[str, Any], max_chars: int, *, cut: bool) -> str:
    """Render `template` piece by piece under a fresh budget. Past `max_chars` characters it
    stops: it returns the first `max_chars` with `cut`, else raises OutputTooLarge."""
    token = _BUDGET.set(_Budget())
    pieces: list[str] = []
    size = 0
    stream = cast(Generator[str, None, None], template.generate(context))
    try:
        for piece in stream:
            size += len(piece)
            if size > max_chars:
                if not cut:
                    raise OutputTooLarge(max_chars)
                pieces.append(piece[: len(piece) - (size - max_chars)])
                break
            pieces.append(piece)
    finally:
        stream.close()
        _BUDGET.reset(token)
    return "".join(pieces)
