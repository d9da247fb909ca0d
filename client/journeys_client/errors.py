"""The errors a call raises: the server's status and its error array (MedChat style: a JSON array
of human-readable messages), by kind."""

from __future__ import annotations


class JourneysError(Exception):
    """An error answer: `status` (0 when no answer came) and the server's `messages`."""

    def __init__(self, status: int, messages: list[str], retry_after: float | None = None) -> None:
        self.status = status
        self.messages = messages
        self.retry_after = retry_after
        super().__init__(f"{status}: " + "; ".join(messages) if status else "; ".join(messages))


class BadRequest(JourneysError):
    """400: the request is wrong; `messages` names every problem (nothing was written)."""


class Unauthorized(JourneysError):
    """401: no valid token."""


class Forbidden(JourneysError):
    """403: the token lacks a scope."""


class NotFound(JourneysError):
    """404: no such org, journey or instance (or another org's)."""


class Conflict(JourneysError):
    """409: the state does not allow it (an active instance with these identifiers, a completed
    instance cancelled)."""


class TooLarge(JourneysError):
    """413: the body is larger than the server's limit."""


class RateLimited(JourneysError):
    """429 after every retry: `retry_after` says when to try again."""


class ServerError(JourneysError):
    """5xx after every retry (503: the server's database is unavailable)."""


class NotAvailable(JourneysError):
    """A journeys extension called on a client made for a MedChat base URL (`extensions=False`)."""


class BulkInterrupted(JourneysError):
    """A chunk of `trigger` failed after earlier chunks were accepted: `triggered` instances
    (the first ones, in order) were started; `cause` is the chunk's error."""

    def __init__(self, triggered: int, cause: JourneysError) -> None:
        super().__init__(cause.status, [f"after {triggered} instances: " + m for m in cause.messages])
        self.triggered = triggered
        self.cause = cause


_BY_STATUS: dict[int, type[JourneysError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    429: RateLimited,
}


def error_for(status: int, messages: list[str], retry_after: float | None = None) -> JourneysError:
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else JourneysError)
    return kind(status, messages, retry_after)
