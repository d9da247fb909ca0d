"""The simulator's scripted answers as given on the command line (`journeys simulate --reply
STEP_ID=TEXT[@DELAY] --http STEP_ID=STATUS[:JSON]`), parsed and checked against the definition.
Problems are raised as `Invalid`, one message naming the option."""

from __future__ import annotations

import json
from typing import Any

from journeys.definitions.model import JourneyDefinition, parse_duration
from journeys.engine.simulate import Reply
from journeys.errors import Invalid


def _is_ascii_int(text: str) -> bool:
    """A whole number in ASCII digits (str.isdigit also takes e.g. '²', which int() refuses)."""
    return text.isascii() and text.isdigit() and len(text) <= 9


def parse_replies(items: list[str]) -> dict[int, list[Reply]]:
    """Each STEP_ID=TEXT[@DELAY]: what the patient texts back to that wait_for_reply step."""
    replies: dict[int, list[Reply]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        delay = None
        if "@" in text:
            text, _, delay_text = text.rpartition("@")
            try:
                delay = parse_duration(delay_text)
            except ValueError as exc:
                raise Invalid(f"--reply {item!r}: {exc}") from None
        if not sep or not _is_ascii_int(key.strip()):
            raise Invalid(f"--reply {item!r}: use STEP_ID=TEXT[@DELAY], e.g. 30=C or 30=R@2h")
        replies.setdefault(int(key), []).append(Reply(text) if delay is None else Reply(text, delay))
    return replies


def parse_http_answers(items: list[str]) -> dict[int, dict[str, Any]]:
    """Each STEP_ID=STATUS[:JSON]: the answer of that http_request step's call."""
    answers: dict[int, dict[str, Any]] = {}
    for item in items:
        key, sep, rest = item.partition("=")
        status_text, _, body_text = rest.partition(":")
        if not sep or not _is_ascii_int(key.strip()) or not _is_ascii_int(status_text):
            raise Invalid(f"--http {item!r}: use STEP_ID=STATUS[:JSON], e.g. 40=200:'{{\"ok\": true}}'")
        try:
            body = json.loads(body_text) if body_text else {}
            answers[int(key)] = {"status": int(status_text), "json": body}
        except ValueError:
            raise Invalid(f"--http {item!r}: the body is not valid JSON") from None
    return answers


def check_steps(
    definition: JourneyDefinition, replies: dict[int, list[Reply]], answers: dict[int, dict[str, Any]]
) -> None:
    """Each scripted answer is for a step of the right type."""
    kinds = {step.id: step.type for flow in definition.flows for step in flow.steps}
    for option, given_steps, kind in (
        ("--reply", replies, "wait_for_reply"),
        ("--http", answers, "http_request"),
    ):
        for step_id in given_steps:
            if kinds.get(step_id) != kind:
                have = ", ".join(str(i) for i, k in kinds.items() if k == kind) or "none"
                raise Invalid(f"{option}: step {step_id} is not a {kind} step ({kind} steps: {have})")
