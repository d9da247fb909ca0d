"""Logging for `journeys serve` and `journeys worker`: patient data and secrets stay out of every
line, third-party ones included; plain text (the default) or one JSON object per line
(`JOURNEYS_LOG_FORMAT=json`), with the id of the HTTP request a line was logged in.

- `JOURNEYS_LOG_LEVEL` sets the level of journeys' own loggers (`journeys.*`), which log ids,
  counts and error *kinds* only.
- Every other library logs warnings and errors only, whatever that level: httpx and httpcore
  would log every outbound URL (an `http_request` step's URL carries patient data in its query,
  a webhook URL may carry `user:pass@`), the Twilio library logs request bodies, SQLAlchemy
  statements' parameters. uvicorn's server messages (start, stop) stay at INFO; its access log
  is off (journeys.access writes one line per request with the route template instead).
- A filter on the handlers rewrites what does get through: every URL is cut to its scheme, host
  and port (no user:password, path, query or fragment), and an exception's traceback keeps its
  frames and type names but withholds its messages (they may quote values). A JSON line names
  the exception's class and frames, never its message.
- The request id lives in a context variable set by the HTTP middleware for the request's
  lifetime (FastAPI runs route code in threads that inherit it). It is either a valid incoming
  `X-Request-Id` or a random one, so it carries no patient data of ours.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import traceback
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Libraries that log at most warnings, whatever JOURNEYS_LOG_LEVEL says.
QUIET = (
    "httpx",
    "httpcore",
    "hpack",
    "h11",
    "twilio",
    "urllib3",
    "requests",
    "aiosmtplib",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "multipart",
    "python_multipart",
    "asyncio",
    "uvicorn.access",
)
SERVER = ("uvicorn", "uvicorn.error")  # start/stop messages at INFO, never below

_URL = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)"
    r"(?P<userinfo>[^\s/?#@'\"<>]*@)?"
    r"(?P<host>\[[0-9a-fA-F:.%]+\]|[^\s/?#:'\"<>@]*)"
    r"(?P<port>:\d+)?"
    r"(?P<rest>[/?#][^\s'\"<>]*)?"
)


def _scrub_match(m: re.Match[str]) -> str:
    kept = m["scheme"] + ("***@" if m["userinfo"] else "") + m["host"] + (m["port"] or "")
    return kept + ("/***" if m["rest"] and m["rest"] != "/" else "")


def scrub(text: str) -> str:
    """`text` with every URL reduced to scheme://host:port (credentials, path and query gone)."""
    return _URL.sub(_scrub_match, text) if "://" in text else text


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def exception_text(exc_info: ExcInfo) -> str:
    """A traceback with its frames and the exceptions' types, without their messages."""
    chain: list[BaseException] = []
    exc: BaseException | None = exc_info[1]
    while exc is not None and all(exc is not seen for seen in chain):
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    lines: list[str] = []
    for i, e in enumerate(reversed(chain)):
        if i:
            lines.append("\nwhich led to:\n\n")
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_tb(e.__traceback__))
        kind = type(e)
        name = kind.__qualname__
        if kind.__module__ != "builtins":
            name = f"{kind.__module__}.{name}"
        lines.append(f"{name} (message withheld: it may hold patient data)\n")
    return "".join(lines).rstrip("\n")


class ScrubFilter(logging.Filter):
    """Rewrites a record before any handler formats it: URLs scrubbed, exception messages withheld."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what can be kept safely
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = exception_text(record.exc_info)
            # what a JSON line shows of it: the class and the frames, never the message
            record.__dict__["exc_class"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            record.exc_frames = _frames(record.exc_info[2])
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def _guard_handler(handler: logging.Handler) -> None:
    if not any(isinstance(f, ScrubFilter) for f in handler.filters):
        handler.addFilter(ScrubFilter())


def guard_third_party() -> None:
    """Quiet the libraries (see QUIET: warnings and errors only; uvicorn's server messages not
    below INFO) and put the scrubbing filter on every handler there is (the root's and any a
    library or server set up itself). Idempotent; the app factory calls it too, so an app run by
    another server (`uvicorn --factory`) gets the same guard."""
    for name in QUIET:
        lib = logging.getLogger(name)
        if lib.level < logging.WARNING:  # NOTSET too: it would inherit a DEBUG root
            lib.setLevel(logging.WARNING)
    for name in SERVER:
        server = logging.getLogger(name)
        if logging.NOTSET < server.level < logging.INFO:
            server.setLevel(logging.INFO)
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in (*QUIET, *SERVER))]
    for logger in loggers:
        for handler in logger.handlers:
            _guard_handler(handler)


LogFormat = Literal["text", "json"]

request_id: ContextVar[str | None] = ContextVar("journeys_request_id", default=None)

# What an incoming X-Request-Id may be: what proxies and tracing systems send (UUIDs, hex, dotted
# or dashed ids), nothing that could break a log line.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

# Attributes an access line adds (`extra=`), emitted as JSON fields under these names.
ACCESS_FIELDS = {
    "http_method": "method",
    "http_route": "route",
    "http_status": "status",
    "duration_ms": "durationMs",
}


def accept_request_id(incoming: str | None) -> str:
    """The incoming id when it is a valid one, else a new random id (32 hex digits)."""
    if incoming and _VALID_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class _RequestIdFilter(logging.Filter):
    """Stamps every record with the current request id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [requestId={rid}]" if rid else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601 with Z), level, logger, message, requestId
    (inside a request), the access line's fields, and for an exception its class and frames."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, Any] = {
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            out["requestId"] = rid
        for attr, field in ACCESS_FIELDS.items():
            if hasattr(record, attr):
                out[field] = getattr(record, attr)
        if record.exc_info and record.exc_info[0] is not None:  # not through ScrubFilter
            kind, _, tb = record.exc_info
            out["exception"] = kind.__name__
            out["stack"] = _frames(tb)
        elif getattr(record, "exc_class", None):
            out["exception"] = record.__dict__["exc_class"]
            out["stack"] = getattr(record, "exc_frames", [])
        return json.dumps(out, ensure_ascii=False, default=str)


def _frames(tb: TracebackType | None) -> list[str]:
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(tb)]


def configure(level_name: str, fmt: LogFormat = "text") -> None:
    """The `journeys serve` / `journeys worker` set-up: one stderr handler on the root (text or
    JSON, request ids, guarded), journeys' loggers at `level_name`, uvicorn's at INFO at least,
    everything else at WARNING at least; uvicorn logs through it."""
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {level_name!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(level, logging.WARNING))
    logging.getLogger("journeys").setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in SERVER:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    logging.captureWarnings(True)
    guard_third_party()
    if fmt == "json":
        threading.excepthook = _log_thread_exception


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """An exception nobody caught in a thread: one JSON line (class and frames), not a
    traceback that would break the one-object-per-line format and could quote patient data."""
    if args.exc_type is SystemExit:
        return
    logging.getLogger("journeys").error(
        "uncaught exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )
