"""FHIR R4 Appointments as appointment updates: the resource validated (fhir.resources), its
patient found (contained, or in the same Bundle), its values read by the feed's FHIR paths, and
its status mapped to an action (journeys.feeds.effects applies it).

`receive` applies every Appointment of a request (one resource, or a subscription notification's
Bundle) for every FHIR feed of the org, in the caller's transaction: all of them or, when one
cannot be applied, none (it raises Unprocessable naming each problem)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from pydantic import ValidationError
from sqlalchemy.engine import Connection

import journeys.catalog.service as catalog
from journeys.accounts.audit import Actor
from journeys.definitions.values import get_zone
from journeys.errors import Invalid, Unprocessable
from journeys.feeds.ack import Ack
from journeys.feeds.bind import Feed
from journeys.feeds.effects import Applier, Incoming
from journeys.feeds.fhirpath import FhirPath
from journeys.feeds.mapping import STATUSES, EventAction, Source
from journeys.keys.phi import OrgPhi

_USE_ORDER = {"official": 0, "usual": 1}  # HumanName.use: preferred first
_PHONE_ORDER = {"mobile": 0, "home": 1, "work": 2}  # ContactPoint.use


@dataclass(frozen=True)
class Received:
    """One Appointment of a request, with its patient (None when not found)."""

    appointment: dict[str, Any]
    patient: dict[str, Any] | None
    where: str  # for messages: "Appointment", "entry[2]"


@dataclass(frozen=True)
class Applied:
    """What one feed did with one Appointment."""

    feed: str
    where: str
    appointment_id: str | None
    ack: Ack


def _validation_messages(exc: ValidationError, where: str) -> list[str]:
    out = []
    for err in exc.errors()[:20]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "resource_type")
        msg = str(err.get("msg", "invalid")).split("\n")[0].removeprefix("Value error, ")
        out.append(f"{where}.{loc}: {msg}" if loc else f"{where}: {msg}")
    return out


def _appointment(resource: Any, where: str) -> dict[str, Any]:
    from fhir.resources.R4B.appointment import Appointment

    if not isinstance(resource, dict) or resource.get("resourceType") != "Appointment":
        raise Invalid([f"{where}: expected an Appointment resource (resourceType: Appointment)"])
    try:
        Appointment.model_validate(resource)
    except ValidationError as exc:
        raise Invalid(_validation_messages(exc, where)) from None
    if resource.get("status") not in STATUSES:
        raise Invalid([f"{where}.status: must be one of {', '.join(STATUSES)}"])
    return resource


def _reference_keys(entry: dict[str, Any]) -> list[str]:
    resource = entry.get("resource") or {}
    keys = [str(entry["fullUrl"])] if entry.get("fullUrl") else []
    if resource.get("id"):
        keys.append(f"{resource.get('resourceType')}/{resource['id']}")
    return keys


def _patient(appointment: dict[str, Any], bundled: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The Appointment's patient participant: contained (#id), or in the Bundle."""
    contained = {f"#{c.get('id')}": c for c in appointment.get("contained") or [] if isinstance(c, dict)}
    for participant in appointment.get("participant") or []:
        ref = str(((participant or {}).get("actor") or {}).get("reference") or "")
        found = contained.get(ref) or bundled.get(ref)
        if found is None and "/Patient/" in ref:  # an absolute URL of the Bundle's server
            found = bundled.get("Patient/" + ref.rsplit("/Patient/", 1)[1])
        if isinstance(found, dict) and found.get("resourceType") == "Patient":
            return found
    return None


def received(payload: Any) -> list[Received]:
    """The Appointments of a request body: one Appointment, or every Appointment of a Bundle (a
    subscription notification, a transaction, a collection) in order. Raises Invalid."""
    from fhir.resources.R4B.bundle import Bundle

    if not isinstance(payload, dict) or "resourceType" not in payload:
        raise Invalid(["the body must be a FHIR resource (a JSON object with resourceType)"])
    if payload["resourceType"] == "Appointment":
        appt = _appointment(payload, "Appointment")
        return [Received(appt, _patient(appt, {}), "Appointment")]
    if payload["resourceType"] != "Bundle":
        raise Invalid([f"resourceType {payload['resourceType']!r}: expected Appointment or Bundle"])
    try:
        Bundle.model_validate(payload)
    except ValidationError as exc:
        raise Invalid(_validation_messages(exc, "Bundle")) from None
    entries = [e for e in payload.get("entry") or [] if isinstance(e, dict)]
    bundled = {
        key: e["resource"]
        for e in entries
        if isinstance(e.get("resource"), dict)
        for key in _reference_keys(e)
    }
    out = []
    for i, entry in enumerate(entries):
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") == "Appointment":
            appt = _appointment(resource, f"entry[{i}].resource")
            out.append(Received(appt, _patient(appt, bundled), f"entry[{i}]"))
    return out


# ---------------------------------------------------------------- values
def _root(path: FhirPath, r: Received) -> dict[str, Any] | None:
    return r.appointment if path.root == "Appointment" else r.patient


def _name(values: list[Any], fmt: str) -> str:
    names = sorted(
        (v for v in values if isinstance(v, dict)), key=lambda n: _USE_ORDER.get(n.get("use", ""), 2)
    )
    for n in names:
        given = [str(g) for g in n.get("given") or []]
        parts = {
            "family": str(n.get("family") or ""),
            "given": given[0] if given else "",
            "middle": " ".join(given[1:]),
            "prefix": " ".join(str(p) for p in n.get("prefix") or []),
            "suffix": " ".join(str(p) for p in n.get("suffix") or []),
        }
        text = " ".join(fmt.format(**parts).split())
        if text:
            return text
        if n.get("text"):
            return str(n["text"]).strip()
    return ""


def _phone(values: list[Any], region: str) -> str:
    points = [
        v for v in values if isinstance(v, dict) and v.get("system") in ("phone", "sms") and v.get("value")
    ]
    points = [p for p in points if p.get("use") != "old"]
    points.sort(key=lambda p: (0 if p.get("system") == "sms" else 1, _PHONE_ORDER.get(p.get("use", ""), 3)))
    for p in points:
        try:
            parsed = phonenumbers.parse(str(p["value"]), region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return ""


def _moment(text: str, zone: ZoneInfo, src: Source, where: str) -> str:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{where} is not a FHIR dateTime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%d" if src.transform == "date" else "%Y-%m-%dT%H:%M:%S")


def read_value(r: Received, src: Source, zone: ZoneInfo, region: str) -> tuple[str, str | None]:
    """The parameter's value ("" when none) and the path it came from. Raises ValueError."""
    if src.value is not None:
        return src.value, None
    for path in src.fields:
        if not isinstance(path, FhirPath):
            continue
        values = path.evaluate(_root(path, r))
        if src.transform == "name":
            value = _name(values, src.format)
        elif src.transform == "phone":
            value = _phone(values, region)
        elif src.transform == "email":
            mails = [v for v in values if isinstance(v, dict) and v.get("system") == "email"]
            value = str(mails[0].get("value") or "") if mails else ""
        else:
            texts = [str(v).strip() for v in values if isinstance(v, str | int | float) and str(v).strip()]
            value = texts[0] if texts else ""
            if value and src.transform in ("datetime", "date"):
                value = _moment(value, zone, src, str(path))
        if value:
            return value, str(path)
    return "", None


def read_incoming(feed: Feed, r: Received) -> Incoming:
    m = feed.mapping
    zone = get_zone(m.time_zone) or ZoneInfo("UTC")
    status = str(r.appointment.get("status"))
    action = m.action(status) or EventAction("ignore")
    params, sources, origin = {}, {}, {}
    for name, src in m.parameters:
        sources[name] = src.describe()
        value, where = read_value(r, src, zone, m.phone_region)
        if value:
            params[name] = value
            origin[name] = where or "the mapping"
    left_out = None
    for f in m.filters:
        path = f.field
        found = path.evaluate(_root(path, r)) if isinstance(path, FhirPath) else []
        if not f.admits([str(v) for v in found if isinstance(v, str | int)]):
            left_out = f.name
            break
    return Incoming(status, action, params, sources, origin, left_out)


# ---------------------------------------------------------------- applying
def receive(
    conn: Connection, feeds: list[Feed], items: list[Received], actor: Actor, now: datetime, phi: OrgPhi
) -> list[Applied]:
    """Apply each Appointment for each feed. Raises Unprocessable (the caller rolls back) when
    one cannot be applied, naming every problem."""
    results: list[Applied] = []
    problems: list[str] = []
    for feed in feeds:
        jv = catalog.get_latest(conn, feed.org_id, feed.journey_id)
        if jv is None:
            problems.append(f"feed {feed.name}: its journey no longer exists")
            continue
        applier = Applier(conn, jv, feed.mapping.time_zone, actor, f"feed:{feed.name}", now, phi)
        for r in items:
            try:
                ack = applier.apply(read_incoming(feed, r))
            except ValueError as exc:
                problems.append(f"{r.where}: {exc}")
                continue
            appt_id = r.appointment.get("id")
            if not ack.accepted:
                problems.append(f"{r.where} (feed {feed.name}): {ack.text}")
            results.append(Applied(feed.name, r.where, str(appt_id) if appt_id else None, ack))
    if problems:
        raise Unprocessable(problems)
    return results
