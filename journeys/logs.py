"""Logging for `journeys serve` and `journeys worker`: plain text (the default) or one JSON object
per line (`JOURNEYS_LOG_FORMAT=json`), with the id of the HTTP request a line was logged in.

The request id lives in a context variable set by the HTTP middleware for the request's
lifetime (FastAPI runs route code in threads that inherit it). It is either a valid incoming
`X-Request-Id` or a random one, so it carries no patient data of ours.

PHI: messages are PHI-free by the project's rules. An exception's message may not be (it can
quote a value), so a JSON line names the exception's class and the frames it passed through,
never its message.
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
        if record.exc_info and record.exc_info[0] is not None:
            kind, _, tb = record.exc_info
            out["exception"] = kind.__name__
            out["stack"] = _frames(tb)
        return json.dumps(out, ensure_ascii=False, default=str)


def _frames(tb: TracebackType | None) -> list[str]:
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(tb)]


def configure(level: str, fmt: LogFormat = "text") -> None:
    """Route every logger (uvicorn's and third parties' included) to one stderr handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.captureWarnings(True)
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
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),  # type: ignore[arg-type]
    )
