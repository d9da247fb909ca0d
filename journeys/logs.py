"""Logging set-up: patient data and secrets stay out of every log line, third-party ones included.

- `JOURNEYS_LOG_LEVEL` sets the level of journeys' own loggers (`journeys.*`), which log ids,
  counts and error *kinds* only.
- Every other library logs warnings and errors only, whatever that level: httpx and httpcore
  would log every outbound URL (an `http_request` step's URL carries patient data in its query,
  a webhook URL may carry `user:pass@`), the Twilio library logs request bodies, SQLAlchemy
  statements' parameters. uvicorn's server messages (start, stop) stay at INFO; its access log
  is off.
- A filter on the handlers rewrites what does get through: every URL is cut to its scheme, host
  and port (no user:password, path, query or fragment), and an exception's traceback keeps its
  frames and type names but withholds its messages (they may quote values).
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from types import TracebackType

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
            record.exc_text = exception_text(record.exc_info)  # type: ignore[arg-type]
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


def configure_logging(level_name: str) -> None:
    """The `journeys serve` / `journeys worker` set-up: one stderr handler on the root, guarded;
    journeys' loggers at `level_name`, uvicorn's at INFO at least, everything else at WARNING at
    least."""
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {level_name!r}")
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(max(level, logging.WARNING))
    logging.getLogger("journeys").setLevel(level)
    for name in SERVER:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    guard_third_party()
