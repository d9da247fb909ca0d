"""The OpenAPI document: response shapes, the responses each route can really give, the bearer
security scheme. For the document only — routes shape their JSON themselves (schemas.py and the
services), and tests/test_openapi.py holds the two together against the running server."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, RootModel
from starlette.routing import BaseRoute

from journeys.api.schemas import component_schemas

BEARER_SCHEME = "bearerAuth"

Status = Literal["InProgress", "Completed", "Cancelled", "Failed"]


# ---- response bodies (camelCase, as on the wire; times are ISO 8601 UTC with Z)
class Wire(BaseModel):
    model_config = ConfigDict(field_title_generator=lambda name, _: name, populate_by_name=True)


class ErrorMessages(RootModel[list[str]]):
    """Every error: a JSON array of human-readable messages (the MedChat style)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [["instances[0].parameters.patientName: required parameter is missing"]]
        }
    )


class LastStep(Wire):
    eventDateTime: datetime  # noqa: N815
    flowName: str  # noqa: N815
    stepId: int  # noqa: N815


class Instance(Wire):
    """A journey instance, as search returns it (`parameters` only with includeParameters)."""

    id: str
    journeyBotName: str  # noqa: N815
    createdDateTime: datetime  # noqa: N815
    startDateTime: datetime  # noqa: N815
    journeyBatchId: str  # noqa: N815
    status: Status
    lastStepExecuted: LastStep | None = Field(description="null until a step has run")  # noqa: N815
    parameters: dict[str, str] = Field(
        default_factory=dict, description="Present only when the search asked for includeParameters"
    )


class Event(Wire):
    eventDateTime: datetime  # noqa: N815
    flowId: str | None  # noqa: N815
    flowName: str | None  # noqa: N815
    stepId: int | None  # noqa: N815
    type: str = Field(description="started, wait, sms_queued, … (docs/api.md lists them)")
    detail: dict[str, Any] = Field(description="Never holds parameter values or message text")


class InstanceDetail(Wire):
    """One instance with its parameters and its timeline (`events`, a journeys extension)."""

    id: str
    journeyBotName: str  # noqa: N815
    createdDateTime: datetime  # noqa: N815
    startDateTime: datetime  # noqa: N815
    journeyBatchId: str  # noqa: N815
    status: Status
    lastStepExecuted: LastStep | None  # noqa: N815
    parameters: dict[str, str]
    events: list[Event]


class FlowSummary(Wire):
    id: str
    name: str
    main: bool


class ParameterSummary(Wire):
    name: str
    type: Literal["string", "datetime", "phone", "email", "number"]
    required: bool
    identifier: bool


class Journey(Wire):
    """A journey's latest version: its id is the API's chatBotId."""

    id: str
    name: str
    version: int
    flows: list[FlowSummary]
    parameters: list[ParameterSummary]


class ReplyResult(Wire):
    id: str
    matched: bool
    instanceId: str | None  # noqa: N815


class Reply(Wire):
    id: str
    from_: str = Field(alias="from")
    body: str
    receivedDateTime: datetime  # noqa: N815
    instanceId: str | None  # noqa: N815
    matched: bool
    source: str = Field(description="api (injected) or provider (an SMS provider's webhook)")
    kind: Literal["reply", "optOut", "optIn", "help"] = Field(
        description="A reply, or a consent keyword (STOP/START/HELP…) the server handled itself"
    )


class Webhook(Wire):
    id: str
    url: str
    eventTypes: list[str]  # noqa: N815
    verified: bool
    verifiedDateTime: datetime | None  # noqa: N815
    createdDateTime: datetime  # noqa: N815


class Delivery(Wire):
    id: str
    type: str
    instanceId: str | None  # noqa: N815
    status: Literal["pending", "sending", "delivered", "failed"]
    attempts: int
    lastStatusCode: int | None  # noqa: N815
    lastError: str | None  # noqa: N815
    nextAttemptDateTime: datetime | None  # noqa: N815
    createdDateTime: datetime  # noqa: N815
    deliveredDateTime: datetime | None  # noqa: N815


class CancelResult(Wire):
    cancelled: int | None = Field(default=None, description="How many instances this request cancelled")
    wouldCancel: int | None = Field(  # noqa: N815
        default=None, description="With dryRun: how many would be cancelled"
    )


class OptOut(Wire):
    phone: str
    optedOut: bool  # noqa: N815
    source: str | None = Field(description="sms (a keyword), api or cli")
    keyword: str | None
    reason: str | None
    updatedDateTime: datetime  # noqa: N815


class OptOuts(RootModel[list[OptOut]]):
    pass


class Journeys(RootModel[list[Journey]]):
    pass


class Instances(RootModel[list[Instance]]):
    pass


class Replies(RootModel[list[Reply]]):
    pass


class Webhooks(RootModel[list[Webhook]]):
    pass


class Deliveries(RootModel[list[Delivery]]):
    pass


# ---- responses
_STRING = {"schema": {"type": "string"}}
_ERRORS: dict[int, dict[str, Any]] = {
    400: {"description": "Bad request: every problem found, as an array of messages"},
    401: {
        "description": "No bearer token, or an unknown, expired or revoked one",
        "headers": {"WWW-Authenticate": {"required": True, **_STRING}},
    },
    403: {"description": "The token lacks the route's scope"},
    404: {"description": "Not found (a token of another org also gets 404: other orgs are not revealed)"},
    409: {"description": "Conflict"},
    413: {"description": "The request body is larger than JOURNEYS_MAX_BODY_BYTES"},
    503: {
        "description": "The database is unavailable or busy (retry after Retry-After seconds)",
        "headers": {"Retry-After": _STRING},
    },
}
# What every route behind a token can answer (400: a NUL character in the path or query)
AUTHENTICATED = (400, 401, 403, 404, 503)


def responses(
    ok: int = 200,
    model: Any = None,
    *,
    errors: tuple[int, ...] = (),
    description: str = "Success",
    described: dict[int, str] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses` for a route behind the bearer token: the success (a `model` body, or
    none), the authentication answers (401, 403, 404, 503), and `errors`, each with the error
    array; `described` overrides a status's description."""
    out: dict[int | str, dict[str, Any]] = {ok: {"description": description}}
    if model is not None:
        out[ok]["model"] = model
    for status in sorted({*AUTHENTICATED, *errors}):
        out[status] = {**_ERRORS[status], "model": ErrorMessages}
        if described and status in described:
            out[status]["description"] = described[status]
    return out


def build(title: str, version: str, description: str, routes: list[BaseRoute]) -> dict[str, Any]:
    """The document, with what FastAPI adds by default and this app never does taken out:
    a 422 (request validation errors are answered 400 with the error array, errors.py)."""
    schema = get_openapi(title=title, version=version, description=description, routes=routes)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.setdefault("components", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(unused, None)
    components.setdefault("schemas", {}).update(component_schemas())
    return schema
