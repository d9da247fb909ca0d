"""Wire shapes (camelCase, ISO 8601 UTC with Z), as in the MedChat seed."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

import journeys.accounts.service as accounts
from journeys.catalog.service import JourneyVersion
from journeys.clock import iso_z
from journeys.instances.replies import InboundReply
from journeys.instances.search import MAX_SKIP
from journeys.messaging.consent import OptOut
from journeys.webhooks.service import Delivery, Subscription

# The stored kind of an inbound message, as the API names it: a consent keyword was handled.
REPLY_KIND_JSON = {"reply": "reply", "opt_out": "optOut", "opt_in": "optIn", "help": "help"}


def instance_json(row: dict[str, Any], journey_name: str, include_parameters: bool) -> dict[str, Any]:
    last = None
    if row.get("last_event_at") is not None:
        last = {
            "eventDateTime": iso_z(row["last_event_at"]),
            "flowName": row["last_flow_name"],
            "stepId": row["last_step_id"],
        }
    out: dict[str, Any] = {
        "id": row["instance_id"],
        "journeyBotName": journey_name,
        "createdDateTime": iso_z(row["created_at"]),
        "startDateTime": iso_z(row["start_at"]),
        "journeyBatchId": row["batch_id"],
        "status": row["status"],
        "lastStepExecuted": last,
    }
    if include_parameters:
        out["parameters"] = row["parameters"]
    return out


def event_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventDateTime": iso_z(row["at"]),
        "flowId": row["flow_id"],
        "flowName": row["flow_name"],
        "stepId": row["step_id"],
        "type": row["kind"],
        "detail": json.loads(row["detail"]) if row["detail"] else {},
    }


def reply_json(r: InboundReply) -> dict[str, Any]:
    return {
        "id": r.message_id,
        "from": r.from_address,
        "body": r.body,
        "receivedDateTime": iso_z(r.received_at),
        "instanceId": r.instance_id,
        "matched": r.instance_id is not None,
        "source": r.source,
        "kind": REPLY_KIND_JSON.get(r.kind, r.kind),
    }


# ---- request models, for the OpenAPI document only (bodies are parsed by the services so
# that every problem is reported at once, in the seed's error-array style)
class InstanceIn(BaseModel):
    parameters: dict[str, str]


class BulkRequest(BaseModel):
    flowId: str | None = Field(default=None, description="null for the main flow, or a subflow id")  # noqa: N815
    timeZone: str | None = Field(default=None, description="IANA zone of local datetime values")  # noqa: N815
    instances: list[InstanceIn]


class AndSpecification(BaseModel):
    type: Literal["AndSpecification"]
    specifications: list[Specification] = Field(description="All must match")


class OrSpecification(BaseModel):
    type: Literal["OrSpecification"]
    specifications: list[Specification] = Field(description="Any must match")


class NotSpecification(BaseModel):
    type: Literal["NotSpecification"]
    specification: Specification


class JourneyParameterSpecification(BaseModel):
    type: Literal["JourneyParameterSpecification"]
    parameterName: str = Field(description="One of the journey's parameters (case-insensitive)")  # noqa: N815
    operator: Literal["equals", "notEquals", "contains", "startsWith", "in"]
    rightOperand: str | list[str] = Field(  # noqa: N815
        description="A string; for operator 'in', an array of up to 1,000 strings"
    )


class JourneyDateSpecification(BaseModel):
    """A journeys extension: instances by when they were created, started, or last ran a step."""

    type: Literal["JourneyDateSpecification"]
    field: Literal["createdDateTime", "startDateTime", "lastEventDateTime"]
    operator: Literal["after", "before", "between"]
    rightOperand: str | list[str] = Field(  # noqa: N815
        description="An ISO 8601 time with Z or an offset; for 'between', [from, to)"
    )


class JourneyStatusSpecification(BaseModel):
    type: Literal["JourneyStatusSpecification"]
    status: Literal["InProgress", "Completed", "Cancelled", "Failed"]


Specification = Annotated[
    AndSpecification
    | OrSpecification
    | NotSpecification
    | JourneyParameterSpecification
    | JourneyStatusSpecification
    | JourneyDateSpecification,
    Field(discriminator="type", description="Nest freely, up to 16 levels and 200 specifications"),
]


class SearchRequest(BaseModel):
    filterSpecification: Specification | None = None  # noqa: N815
    includeParameters: bool = False  # noqa: N815
    skip: int = Field(default=0, ge=0, le=MAX_SKIP)
    take: int = Field(default=100, ge=1, description="At most 1,000 (JOURNEYS_SEARCH_MAX_TAKE)")


class CancelRequest(BaseModel):
    """A bulk cancel (a journeys extension): a search filter, or `all: true`; never neither."""

    filterSpecification: Specification | None = None  # noqa: N815
    all: bool = Field(default=False, description="Cancel every InProgress instance (without a filter)")
    dryRun: bool = Field(default=False, description="Only count what would be cancelled")  # noqa: N815


DOCUMENTED_BODIES: tuple[type[BaseModel], ...] = (BulkRequest, SearchRequest, CancelRequest)


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route whose body is parsed by hand: points at the model's schema."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def component_schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in DOCUMENTED_BODIES:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def subscription_json(s: Subscription) -> dict[str, Any]:
    return {
        "id": s.id,
        "url": s.url,
        "eventTypes": list(s.event_types),
        "verified": s.verified_at is not None,
        "verifiedDateTime": iso_z(s.verified_at),
        "createdDateTime": iso_z(s.created_at),
    }


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "type": d.event_type,
        "instanceId": d.instance_id,
        "status": d.status,
        "attempts": d.attempts,
        "lastStatusCode": d.last_status_code,
        "lastError": d.last_error,
        "nextAttemptDateTime": iso_z(d.next_attempt_at),
        "createdDateTime": iso_z(d.created_at),
        "deliveredDateTime": iso_z(d.delivered_at),
    }


def opt_out_json(o: OptOut) -> dict[str, Any]:
    return {
        "phone": o.phone,
        "optedOut": o.opted_out,
        "source": o.source,
        "keyword": o.keyword,
        "reason": o.reason,
        "updatedDateTime": iso_z(o.updated_at),
    }


def journey_json(jv: JourneyVersion) -> dict[str, object]:
    """A journey's latest version as GET …/journeys lists it."""
    d = jv.definition
    main = d.main_flow
    return {
        "id": jv.journey_id,
        "name": jv.name,
        "version": jv.version,
        "flows": [{"id": f.id, "name": f.name, "main": f is main} for f in d.flows],
        "parameters": [
            {"name": p.name, "type": p.type, "required": p.required, "identifier": p.identifier}
            for p in d.parameters
        ],
    }


def org_json(org: accounts.Org) -> dict[str, object]:
    return {"id": org.id, "name": org.name}


def created_token_json(t: accounts.CreatedToken) -> dict[str, object]:
    return {"id": t.id, "orgId": t.org_id, "name": t.name, "token": t.token, "scopes": list(t.scopes),
            "expiresDateTime": iso_z(t.expires_at)}  # fmt: skip


def token_json(t: accounts.TokenInfo) -> dict[str, object]:
    return {
        "id": t.id,
        "orgId": t.org_id,
        "name": t.name,
        "scopes": list(t.scopes),
        "createdAt": iso_z(t.created_at),
        "expiresAt": iso_z(t.expires_at),
        "revokedAt": iso_z(t.revoked_at),
        "lastUsedAt": iso_z(t.last_used_at),
        "state": t.state,
    }
