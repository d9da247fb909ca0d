"""One error model: every failure a caller is told about is a `JourneysError` carrying its kind
and human-readable messages (no PHI, no secrets). Services raise them; the API translates them to
HTTP in one place (journeys.api.errors), the CLI prints their messages (journeys.cli.common).

The specific errors of each module (SearchError, ReplyError, ...) subclass it, so that a caller
may still catch one of them by name."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum


class Kind(StrEnum):
    INVALID = "invalid"  # the request is wrong: the messages say what
    UNPROCESSABLE = "unprocessable"  # well-formed, but it cannot be applied (e.g. a FHIR resource)
    UNAUTHORIZED = "unauthorized"  # no (valid) credentials
    FORBIDDEN = "forbidden"  # credentials that may not do this
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # the state does not allow it (now)
    TOO_LARGE = "too_large"  # the request is larger than a limit
    TOO_MANY = "too_many"  # a rate limit: retry after `retry_after` seconds
    FAILED = "failed"  # an internal failure (e.g. the database failed midway)
    UNAVAILABLE = "unavailable"  # a dependency is missing or down: retry later


class JourneysError(Exception):
    """`kind` says which sort of failure; `messages` what went wrong, one sentence each.

    `retry_after` (seconds) when retrying later may succeed."""

    kind: Kind = Kind.INVALID

    def __init__(
        self,
        messages: str | Sequence[str],
        *,
        kind: Kind | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        if kind is not None:
            self.kind = kind
        self.retry_after = retry_after
        super().__init__("; ".join(self.messages))

    @property
    def errors(self) -> list[str]:
        """The messages (the name the services' callers have used)."""
        return self.messages


class Invalid(JourneysError, ValueError):
    kind = Kind.INVALID


class Unprocessable(Invalid):
    """Well formed, but it cannot be applied as it is (FHIR answers 422 for these)."""

    kind = Kind.UNPROCESSABLE


class Unauthorized(JourneysError):
    """No valid bearer token for `realm`; `error` is RFC 6750's code when one was given
    (invalid_token), None when none was."""

    kind = Kind.UNAUTHORIZED

    def __init__(self, messages: str | Sequence[str], *, realm: str, error: str | None = None) -> None:
        super().__init__(messages)
        self.realm = realm
        self.error = error


class Forbidden(JourneysError):
    kind = Kind.FORBIDDEN


class NotFound(JourneysError, LookupError):
    kind = Kind.NOT_FOUND


class Conflict(JourneysError, ValueError):
    kind = Kind.CONFLICT


class TooLarge(JourneysError):
    kind = Kind.TOO_LARGE


class TooMany(JourneysError):
    kind = Kind.TOO_MANY


class Failed(JourneysError, RuntimeError):
    kind = Kind.FAILED


class Unavailable(JourneysError, RuntimeError):
    kind = Kind.UNAVAILABLE
