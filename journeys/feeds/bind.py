"""A mapping bound to its org and journey, and checked against the journey's definition."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

import journeys.catalog.service as catalog
from journeys.catalog.service import JourneyVersion
from journeys.definitions.model import JourneyDefinition
from journeys.errors import Invalid
from journeys.feeds.mapping import FeedMapping
from journeys.store import accounts as accounts_repo
from journeys.store import apis as apis_repo


@dataclass(frozen=True)
class Feed:
    """A feed ready to apply messages: its mapping, org and journey."""

    mapping: FeedMapping
    org_id: str
    journey_id: str

    @property
    def name(self) -> str:
        return self.mapping.feed


def problems_with(mapping: FeedMapping, defn: JourneyDefinition) -> list[str]:
    """What does not fit the journey: unknown parameters, identifiers or required parameters
    not mapped, subflows the journey does not have."""
    out: list[str] = []
    known = {p.name: p for p in defn.parameters}
    for name, _src in mapping.parameters:
        if name not in known:
            out.append(
                f"parameters.{name}: not a parameter of journey {defn.name!r} "
                f"(its parameters: {', '.join(known)})"
            )
    mapped = {name for name, _ in mapping.parameters}
    for p in defn.parameters:
        if p.identifier and p.name not in mapped:
            out.append(
                f"parameters: {p.name} identifies the appointment (identifier: true) and must be mapped"
            )
        elif p.required and p.name not in mapped:
            out.append(f"parameters: {p.name} is required by the journey and must be mapped")
    if not defn.identifier_parameters:
        out.append(f"journey {defn.name!r} has no identifier parameter: a feed could not find its instances")
    for event, action in mapping.events:
        if action.subflow is not None and defn.subflow(action.subflow) is None:
            subflows = ", ".join(f.id for f in defn.flows if f is not defn.main_flow) or "none"
            out.append(f"events.{event}.subflow: {action.subflow!r} is not a subflow (subflows: {subflows})")
    return out


def _journey(conn: Connection, org_id: str, wanted: str) -> JourneyVersion | None:
    jv = catalog.get_latest(conn, org_id, wanted) if "\x00" not in wanted else None
    if jv is not None:
        return jv
    named = [j for j in catalog.list_latest(conn, org_id) if j.name == wanted]
    return named[0] if len(named) == 1 else None


def bind(conn: Connection, mapping: FeedMapping) -> Feed:
    """Find the mapping's org and journey (each by id, else by name) and check the mapping
    against the journey; raises Invalid listing every problem."""
    org = accounts_repo.get_org(conn, mapping.org) if "\x00" not in mapping.org else None
    if org is None:
        org = accounts_repo.find_org_by_name(conn, mapping.org)
    if org is None:
        raise Invalid([f"org: no org has the id or name {mapping.org!r}"])
    jv = _journey(conn, str(org["org_id"]), mapping.journey)
    if jv is None:
        raise Invalid([f"journey: the org has no journey with the id or name {mapping.journey!r}"])
    problems = problems_with(mapping, jv.definition)
    if mapping.patient_api and apis_repo.get_api(conn, str(org["org_id"]), mapping.patient_api) is None:
        problems.append(
            f"patient_api: the org has no registered API {mapping.patient_api!r} (journeys api set)"
        )
    if problems:
        raise Invalid(problems)
    return Feed(mapping, jv.org_id, jv.journey_id)
