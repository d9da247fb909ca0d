"""Request bodies of the MedChat-compatible API, and the calls most tests make with them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from support.server import Tenant

SEED_BULK_BODY = {
    "flowId": None,
    "timeZone": "America/Chicago",
    "instances": [
        {
            "parameters": {
                "patientId": "100000",
                "patientName": "John Smith",
                "appointmentId": "40-XYZ-11123",
                "appointmentDateTime": "2023-12-01 08:00:00",
            }
        },
        {
            "parameters": {
                "patientId": "100001",
                "patientName": "Jane Green",
                "appointmentId": "92-XBX-11934",
                "appointmentDateTime": "2023-12-01 08:30:00",
            }
        },
    ],
}

SEED_SEARCH_BODY = {
    "filterSpecification": {
        "type": "AndSpecification",
        "specifications": [
            {
                "type": "JourneyParameterSpecification",
                "parameterName": "PatientName",
                "operator": "equals",
                "rightOperand": "John Smith",
            }
        ],
    },
    "includeParameters": True,
}


def bulk_body(
    parameters: list[dict[str, Any]], *, time_zone: str = "America/Chicago", flow_id: str | None = None
) -> dict[str, Any]:
    """A bulk trigger body starting one instance per parameter set."""
    return {
        "flowId": flow_id,
        "timeZone": time_zone,
        "instances": [{"parameters": p} for p in parameters],
    }


def bulk(http: httpx.Client, tenant: Tenant, instances: list[dict[str, Any]], **body: Any) -> None:
    """POST /bulk with `instances` (each {"parameters": ...}); the trigger must be accepted."""
    payload = {"flowId": None, "timeZone": "America/Chicago", **body, "instances": instances}
    r = http.post(tenant.url("/bulk"), json=payload, headers=tenant.headers)
    assert r.status_code == 204, r.text


def param_equals(name: str, value: str) -> dict[str, Any]:
    return {
        "type": "JourneyParameterSpecification",
        "parameterName": name,
        "operator": "equals",
        "rightOperand": value,
    }


def trigger_one(
    http: httpx.Client,
    tenant: Tenant,
    params: dict[str, Any],
    *,
    key: str = "key",
    value: str | None = None,
    time_zone: str = "America/Chicago",
) -> str:
    """Start one instance with `params` plus its identifier `key` (a fresh value unless given)
    and return its id, found by a search on that identifier (exactly one must match)."""
    value = value if value is not None else uuid.uuid4().hex[:10]
    bulk(http, tenant, [{"parameters": {key: value, **params}}], timeZone=time_zone)
    search = {"filterSpecification": param_equals(key, value), "includeParameters": False}
    r = http.post(tenant.url("/search"), json=search, headers=tenant.headers)
    assert r.status_code == 200, r.text
    found = r.json()
    assert len(found) == 1, found
    return str(found[0]["id"])
