"""What a database error means to its caller, whichever database raised it: an `ErrorKind`.

The HTTP layer maps the kinds to responses (503 for UNAVAILABLE, …) and the services retry a
DEADLOCK, without looking at a driver's classes or messages: each backend classifies its
driver's errors (`Backend.driver_error_kind`).
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from journeys.store.backends import all_backends
from journeys.store.backends.base import ErrorKind

__all__ = ["ErrorKind", "error_kind"]


def error_kind(exc: BaseException) -> ErrorKind:
    """What a database error means to the caller (any other exception: OTHER).

    A lost connection (or an operational error with no driver error behind it) is UNAVAILABLE;
    a constraint violation is a CONFLICT; for the rest of the operational errors the driver's
    own error tells, as the backend of its driver classifies it (PostgreSQL: server shutting
    down or unreachable, a deadlock victim; SQLite: busy, locked, the file cannot be opened)."""
    if not isinstance(exc, DBAPIError):
        return ErrorKind.OTHER
    if exc.connection_invalidated:
        return ErrorKind.UNAVAILABLE
    orig = exc.orig
    driver_kind = None
    if orig is not None:
        for backend in all_backends():
            driver_kind = backend.driver_error_kind(orig)
            if driver_kind is not None:
                break
    if driver_kind is ErrorKind.DEADLOCK:
        return driver_kind
    if isinstance(exc, IntegrityError):
        return ErrorKind.CONFLICT
    if not isinstance(exc, OperationalError):
        return ErrorKind.OTHER
    if orig is None:
        return ErrorKind.UNAVAILABLE
    return driver_kind or ErrorKind.OTHER
