"""The error model (journeys/errors.py) and its one translation to HTTP (journeys/api/errors.py)."""

from __future__ import annotations

import orjson

from journeys.api.errors import STATUS, journeys_error_response
from journeys.errors import Failed, Invalid, JourneysError, Kind, NotFound, Unauthorized
from journeys.instances.replies import ReplyError
from journeys.instances.search import SearchError
from journeys.webhooks.service import WebhookError


def test_every_kind_has_an_http_status() -> None:
    assert set(STATUS) == set(Kind)


def test_an_error_answers_its_kinds_status_with_its_messages() -> None:
    response = journeys_error_response(SearchError(["take: must be a whole number", "skip: too"]))
    assert response.status_code == 400
    assert orjson.loads(response.body) == ["take: must be a whole number", "skip: too"]
    assert "retry-after" not in response.headers
    found = journeys_error_response(WebhookError("webhook w1 not found", kind=Kind.NOT_FOUND))
    assert (found.status_code, orjson.loads(found.body)) == (404, ["webhook w1 not found"])


def test_retry_after_and_the_bearer_challenge_are_headers() -> None:
    later = journeys_error_response(JourneysError("retry later", kind=Kind.UNAVAILABLE, retry_after=5))
    assert (later.status_code, later.headers["retry-after"]) == (503, "5")
    missing = journeys_error_response(Unauthorized("no token", realm="journeys"))
    assert missing.headers["www-authenticate"] == 'Bearer realm="journeys"'
    bad = journeys_error_response(Unauthorized("bad token", realm="journeys", error="invalid_token"))
    assert bad.headers["www-authenticate"] == 'Bearer realm="journeys", error="invalid_token"'
    assert journeys_error_response(Failed("the database failed")).status_code == 500


def test_specific_errors_are_still_caught_by_their_old_bases() -> None:
    assert isinstance(ReplyError(["from: must be a phone number"]), ValueError)
    assert isinstance(NotFound("x"), LookupError)
    error = Invalid(["a", "b"])
    assert (error.messages, error.errors, str(error)) == (["a", "b"], ["a", "b"], "a; b")
