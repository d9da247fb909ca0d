"""A feed's mapping file: which org and journey a feed drives, which fields become which
parameters, what each event does, and which appointments it leaves out. Read like a journey
definition: every problem at once, each with its line (`journeys hl7 check FILE`,
`journeys fhir set FILE`).

Two kinds, one shape: an HL7 feed (`kind: hl7`, the default) reads field references (`SCH-2.1`)
and maps SIU events (`events:`); a FHIR feed (`kind: fhir`) reads FHIR paths (`Appointment.start`)
and maps an Appointment's status (`statuses:`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from journeys.accounts.audit import is_id
from journeys.definitions.loader import parse_located
from journeys.definitions.problems import DefinitionError, Problem
from journeys.definitions.values import get_zone
from journeys.feeds.fhirpath import FhirPath, parse_path
from journeys.feeds.siu import FieldRef, parse_ref

EVENTS = tuple(f"S{n}" for n in range(12, 27) if n != 25)  # SIU's trigger events
ACTIONS = ("start", "cancel", "ignore")
TRANSFORMS = ("text", "name", "phone", "email", "datetime", "date")
CASES = ("as-is", "title", "upper", "lower")
MISSING = ("start", "ignore", "error")
DEFAULT_EVENTS = {"S12": "start", "S15": "cancel", "S17": "cancel"}
# A filter's field unless it names one: the appointment type, the location, the provider.
FILTER_FIELDS = {"appointment_types": "SCH-8.1", "locations": "AIL-3.1", "providers": "AIP-3.1"}
NAME_PARTS = ("family", "given", "middle", "suffix", "prefix")
TOP_KEYS = ("feed", "org", "journey", "time_zone", "phone_region", "parameters", "filters")
STATUSES = (  # FHIR R4's Appointment.status
    "proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
    "entered-in-error", "checked-in", "waitlist",
)  # fmt: skip
DEFAULT_STATUSES = {"booked": "start", "cancelled": "cancel", "entered-in-error": "cancel"}
FHIR_FILTER_PATHS = {
    "appointment_types": "Appointment.appointmentType.coding.code",
    "service_types": "Appointment.serviceType.coding.code",
    "locations": "Appointment.participant.actor.reference",  # Location/123
    "providers": "Appointment.participant.actor.reference",  # Practitioner/9
}
Ref = FieldRef | FhirPath


@dataclass(frozen=True)
class Dialect:
    """What differs between the kinds of feed."""

    kind: str
    ref_key: str  # field | path
    parse: Callable[[str], Ref | None]
    example: str
    events_key: str  # events | statuses
    events: tuple[str, ...]
    defaults: dict[str, str]
    filter_refs: dict[str, str]
    updates: tuple[str, ...]  # events whose subflow starts the journey when missing, on a change only


HL7 = Dialect(
    "hl7", "field", parse_ref, "PID-5, SCH-11.4, AIL-3.1", "events", EVENTS, DEFAULT_EVENTS,
    FILTER_FIELDS, ("S13", "S14"),
)  # fmt: skip
FHIR = Dialect(
    "fhir", "path", parse_path, "Appointment.start, Patient.name", "statuses", STATUSES,
    DEFAULT_STATUSES, FHIR_FILTER_PATHS, ("booked",),
)  # fmt: skip
DIALECTS = {"hl7": HL7, "fhir": FHIR}


@dataclass(frozen=True)
class Source:
    """Where a parameter's value comes from: the first of `fields` with a value, transformed."""

    fields: tuple[Ref, ...]
    transform: str = "text"
    format: str = "{given} {family}"  # for names
    case: str = "as-is"
    value: str | None = None  # a constant instead of fields

    def describe(self) -> str:
        """Where the value is read, for messages: `AIS-4 or SCH-11.4`, or `the mapping`."""
        return "the mapping" if self.value is not None else " or ".join(str(f) for f in self.fields)


@dataclass(frozen=True)
class EventAction:
    action: str  # start | subflow | cancel | ignore
    subflow: str | None = None
    when_missing: str = "ignore"  # with no active instance for the appointment: start | ignore | error
    changes_only: bool = False  # start the subflow only when a mapped parameter changed


@dataclass(frozen=True)
class FieldFilter:
    name: str
    field: Ref
    include: frozenset[str] = frozenset()  # upper-cased
    exclude: frozenset[str] = frozenset()

    def admits(self, values: list[str]) -> bool:
        found = {v.upper() for v in values}
        if self.include and not found & self.include:
            return False
        return not found & self.exclude


@dataclass(frozen=True)
class FeedMapping:
    feed: str
    org: str  # the org's id or name
    journey: str  # the journey's id or name
    time_zone: str
    phone_region: str
    parameters: tuple[tuple[str, Source], ...]
    events: tuple[tuple[str, EventAction], ...]
    filters: tuple[FieldFilter, ...] = field(default=())
    kind: str = "hl7"
    patient_api: str | None = None  # FHIR: the registered API a referenced Patient is fetched from

    def action(self, event: str) -> EventAction | None:
        return dict(self.events).get(event)

    def source(self, parameter: str) -> Source | None:
        return dict(self.parameters).get(parameter)


class _Reader:
    def __init__(self, dialect: Dialect) -> None:
        self.problems: list[Problem] = []
        self.d = dialect

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(message, path))

    def text(self, data: dict[str, Any], key: str, default: str | None = None) -> str:
        value = data.get(key, default)
        if value is None:
            self.problem(key, "is required")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.problem(key, "must be a non-empty string")
            return ""
        return value.strip()

    def refs(self, path: str, raw: Any) -> tuple[Ref, ...]:
        items = raw if isinstance(raw, list) else [raw]
        out = []
        what = "a field reference" if self.d.kind == "hl7" else "a FHIR path"
        for i, item in enumerate(items):
            ref = self.d.parse(item) if isinstance(item, str) else None
            if ref is None:
                where = f"{path}[{i}]" if isinstance(raw, list) else path
                self.problem(where, f"{item!r} is not {what} (e.g. {self.d.example})")
            else:
                out.append(ref)
        if isinstance(raw, list) and not raw:
            self.problem(path, f"must name at least one {self.d.ref_key}")
        return tuple(out)

    def source(self, path: str, raw: Any) -> Source | None:
        if isinstance(raw, str | list):
            return Source(self.refs(path, raw))
        key_name = self.d.ref_key
        if not isinstance(raw, dict):
            self.problem(path, f"must be a {key_name}, a list of them, or an object with {key_name}:")
            return None
        for key in raw:
            if key not in (key_name, "transform", "format", "case", "value"):
                self.problem(f"{path}.{key}", f"unknown key ({key_name}, transform, format, case, value)")
        if "value" in raw:
            if key_name in raw or not isinstance(raw["value"], str):
                self.problem(f"{path}.value", f"must be a string, and not given with {key_name}")
                return None
            return Source((), value=raw["value"])
        if key_name not in raw:
            self.problem(path, f"{key_name} is required (or value: for a constant)")
            return None
        transform = raw.get("transform", "text")
        if transform not in TRANSFORMS:
            self.problem(f"{path}.transform", f"must be one of {', '.join(TRANSFORMS)}")
        case = raw.get("case", "as-is")
        if case not in CASES:
            self.problem(f"{path}.case", f"must be one of {', '.join(CASES)}")
        fmt = raw.get("format", "{given} {family}")
        if not isinstance(fmt, str) or not _format_ok(fmt):
            self.problem(f"{path}.format", f"must be text using {{{'}, {'.join(NAME_PARTS)}}}")
        return Source(self.refs(f"{path}.{key_name}", raw[key_name]), str(transform), str(fmt), str(case))

    def event(self, path: str, event: str, raw: Any) -> EventAction | None:
        changes = event in self.d.updates
        if isinstance(raw, str):
            if raw not in ACTIONS:
                self.problem(path, f"must be one of {', '.join(ACTIONS)}, or an object with subflow:")
                return None
            return EventAction(raw)
        if not isinstance(raw, dict) or not isinstance(raw.get("subflow"), str) or not raw["subflow"]:
            self.problem(path, f"must be one of {', '.join(ACTIONS)}, or an object with subflow: FLOW_ID")
            return None
        for key in raw:
            if key not in ("subflow", "when_missing", "changes_only"):
                self.problem(f"{path}.{key}", "unknown key (subflow, when_missing, changes_only)")
        missing = raw.get("when_missing", "start" if changes else "ignore")
        if missing not in MISSING:
            self.problem(f"{path}.when_missing", f"must be one of {', '.join(MISSING)}")
        only = raw.get("changes_only", changes)
        if not isinstance(only, bool):
            self.problem(f"{path}.changes_only", "must be true or false")
        return EventAction("subflow", raw["subflow"], str(missing), bool(only))

    def filters(self, raw: Any) -> tuple[FieldFilter, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, dict):
            self.problem("filters", f"must be an object with any of {', '.join(self.d.filter_refs)}")
            return ()
        out = []
        for name, spec in raw.items():
            path = f"filters.{name}"
            key_name = self.d.ref_key
            if name not in self.d.filter_refs:
                self.problem(path, f"unknown filter (one of {', '.join(self.d.filter_refs)})")
                continue
            if not isinstance(spec, dict) or not set(spec) <= {key_name, "include", "exclude"}:
                self.problem(path, f"must be an object with include: and/or exclude: lists (and {key_name}:)")
                continue
            refs = self.refs(f"{path}.{key_name}", spec.get(key_name, self.d.filter_refs[name]))
            lists = [self.codes(f"{path}.{k}", spec.get(k)) for k in ("include", "exclude")]
            if refs:
                out.append(FieldFilter(name, refs[0], lists[0], lists[1]))
        return tuple(out)

    def codes(self, path: str, raw: Any) -> frozenset[str]:
        if raw is None:
            return frozenset()
        if not isinstance(raw, list) or not all(isinstance(c, str | int) for c in raw):
            self.problem(path, "must be a list of codes")
            return frozenset()
        return frozenset(str(c).strip().upper() for c in raw)


def _format_ok(fmt: str) -> bool:
    try:
        fmt.format(**{p: "" for p in NAME_PARTS})
    except (KeyError, IndexError, ValueError):
        return False
    return True


def _common(data: dict[str, Any], r: _Reader) -> tuple[str, str, str]:
    allowed = (*TOP_KEYS, "kind", r.d.events_key, *(("patient_api",) if r.d.kind == "fhir" else ()))
    for key in data:
        if key not in allowed:
            r.problem(str(key), f"unknown key (one of {', '.join(allowed)})")
    feed = r.text(data, "feed")
    if feed and not is_id(feed):
        r.problem("feed", "must be a name of letters, digits, . _ : @ + - (at most 64 characters)")
    zone = r.text(data, "time_zone")
    if zone and get_zone(zone) is None:
        r.problem("time_zone", f"{zone!r} is not an IANA time zone (e.g. America/Chicago)")
    region = r.text(data, "phone_region", "US").upper()
    if region and (len(region) != 2 or not region.isalpha()):
        r.problem("phone_region", "must be a two-letter country code (e.g. US)")
    return feed, zone, region


def _events(data: dict[str, Any], r: _Reader) -> dict[str, EventAction]:
    key = r.d.events_key
    actions: dict[str, EventAction] = {e: EventAction(a) for e, a in r.d.defaults.items()}
    raw_events = data.get(key, {})
    if not isinstance(raw_events, dict):
        r.problem(key, f"must map {'SIU events (S12, S13, …)' if key == 'events' else 'statuses'} to actions")
        return actions
    for event, raw in raw_events.items():
        if event not in r.d.events:
            what = "an SIU event" if key == "events" else "an Appointment status"
            r.problem(f"{key}.{event}", f"not {what} (one of {', '.join(r.d.events)})")
            continue
        action = r.event(f"{key}.{event}", event, raw)
        if action is not None:
            actions[event] = action
    return actions


def _read(data: dict[str, Any], r: _Reader) -> FeedMapping:
    feed, zone, region = _common(data, r)
    params = data.get("parameters")
    sources: list[tuple[str, Source]] = []
    if not isinstance(params, dict) or not params:
        r.problem("parameters", "must map each parameter's name to where its value comes from")
    else:
        for name, raw in params.items():
            src = r.source(f"parameters.{name}", raw)
            if src is not None:
                sources.append((str(name), src))
    actions = _events(data, r)
    filters = r.filters(data.get("filters"))
    patient_api = data.get("patient_api")
    if patient_api is not None and (not isinstance(patient_api, str) or not patient_api.strip()):
        r.problem("patient_api", "must be the name of a registered API (journeys api set)")
        patient_api = None
    return FeedMapping(
        feed=feed,
        org=r.text(data, "org"),
        journey=r.text(data, "journey"),
        time_zone=zone,
        phone_region=region,
        parameters=tuple(sources),
        events=tuple(sorted(actions.items())),
        filters=filters,
        kind=r.d.kind,
        patient_api=patient_api.strip() if patient_api else None,
    )


def load_mapping_text(text: str, filename: str = "<mapping>") -> FeedMapping:
    """Parse and check a mapping; raise DefinitionError listing every problem with its line."""
    data, problems, located = parse_located(text, filename)
    if data is None and not problems:
        problems.append(Problem("the mapping is empty", "", 1))
    if problems:
        raise DefinitionError(located(problems), filename)
    if not isinstance(data, dict):
        raise DefinitionError([Problem("expected a mapping with feed, org, journey, parameters", "", 1)])
    kind = data.get("kind", "hl7")
    if kind not in DIALECTS:
        raise DefinitionError(located([Problem("must be hl7 or fhir", "kind")]), filename)
    r = _Reader(DIALECTS[str(kind)])
    mapping = _read(data, r)
    if r.problems:
        raise DefinitionError(located(r.problems), filename)
    return mapping


def load_mapping_file(path: str | Path) -> FeedMapping:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise DefinitionError([Problem(f"cannot read the file: {reason}")], str(path)) from None
    return load_mapping_text(text, str(path))
