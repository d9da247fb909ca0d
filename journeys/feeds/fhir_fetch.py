"""Fetching the Patients an Appointment references but the request does not carry, from the
EHR's FHIR server: a feed's `patient_api` names the registered API (journeys.registered_apis),
which adds the base URL and the credentials. Made before the request's transaction."""

from __future__ import annotations

from dataclasses import replace

from journeys import outbound
from journeys.engine.effects import HttpCall
from journeys.engine.http import ApiResolver, perform_step_call
from journeys.errors import Unprocessable
from journeys.feeds.bind import Feed
from journeys.feeds.fhir import Received

TIMEOUT = 10.0  # seconds


def _reference(r: Received) -> str | None:
    """The Appointment's `Patient/<id>` participant, if any."""
    for participant in r.appointment.get("participant") or []:
        ref = str(((participant or {}).get("actor") or {}).get("reference") or "")
        if "Patient/" in ref and not ref.startswith("#"):
            return "Patient/" + ref.rsplit("Patient/", 1)[1]
    return None


def with_patients(
    items: list[Received],
    feeds: list[Feed],
    org_id: str,
    apis: ApiResolver | None,
    policy: outbound.OutboundPolicy,
) -> list[Received]:
    """`items` with the missing Patients fetched, when a feed names a `patient_api`. Raises
    Unprocessable naming the reference and the status (never a value) when one cannot be."""
    api = next((f.mapping.patient_api for f in feeds if f.mapping.patient_api), None)
    if api is None:
        return items
    out, problems = [], []
    for r in items:
        ref = _reference(r) if r.patient is None else None
        if ref is None:
            out.append(r)
            continue
        call = HttpCall(0, "GET", "/" + ref, {"Accept": "application/fhir+json"}, None, TIMEOUT, "", api=api)
        result = perform_step_call(org_id, call, policy, apis)
        data = result.data
        if not result.ok or not isinstance(data, dict) or data.get("resourceType") != "Patient":
            why = result.error or (f"status {result.status}" if result.status else "not a Patient")
            problems.append(f"{r.where}: its {ref} could not be fetched from registered API {api}: {why}")
            continue
        out.append(replace(r, patient=data))
    if problems:
        raise Unprocessable(problems)
    return out
