"""Triggering a journey's main flow or a subflow in bulk (the `…/instances/bulk` endpoint).

All or nothing: the request is validated completely first (every problem is collected, each
naming the instance index and parameter), then written in the caller's transaction with
set-based statements. Nothing here commits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.engine import Connection, Engine

from journeys.catalog.service import JourneyVersion, load_version
from journeys.definitions.model import JourneyDefinition, Parameter
from journeys.definitions.values import (
    MAX_VALUE_BYTES,
    MAX_VALUE_CHARS,
    NUL_PROBLEM,
    check_value,
    get_zone,
    has_nul,
    parse_datetime,
)
from journeys.engine.state import EMPTY as EMPTY_INSTANCE_STATE
from journeys.errors import Conflict, Invalid
from journeys.ids import new_id, new_ids
from journeys.keys.phi import OrgPhi, plain
from journeys.keys.searchable import parameter_rows, prefix_names
from journeys.records import ParameterRow, SubflowMove, TimelineEvent
from journeys.store import instances as repo
from journeys.store import stats
from journeys.store.tables import ACTIVE, journey_instances
from journeys.store.work import notify_due
from journeys.timeline import event_row
from journeys.webhooks.events import record_events

MAX_ERRORS = 1000
EMPTY_STATE = EMPTY_INSTANCE_STATE.to_json()  # "{}"


class TriggerError(Invalid):
    def __str__(self) -> str:
        return f"{len(self.messages)} problem(s)"


@dataclass
class TriggerResult:
    batch_id: str | None
    instance_ids: list[str] = field(default_factory=list)
    # The load has grown the instance tables enough that their planner statistics are stale:
    # after the commit, call `refresh_statistics`.
    statistics_stale: bool = False


@dataclass
class _Entry:
    index: int
    params: dict[str, str]  # canonical name -> value
    key: str | None


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def identifier_key(defn: JourneyDefinition, params: dict[str, str], phi: OrgPhi) -> str | None:
    """A fixed-size key for the identifier values (of their JSON array: a blind index, keyed by
    the org's key, with encryption on; else SHA-256), or None when the journey has no
    identifier parameters."""
    ids = defn.identifier_parameters
    if not ids:
        return None
    text = orjson.dumps([params.get(p.name, "") for p in ids]).decode("utf-8")
    if phi.encrypted:
        return phi.blind("~identifier", text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _describe_identifier(defn: JourneyDefinition, params: dict[str, str]) -> str:
    return ", ".join(f"{p.name} {_q(params.get(p.name, ''))}" for p in defn.identifier_parameters)


class _Validator:
    def __init__(
        self, defn: JourneyDefinition, zone: ZoneInfo | None, subflow: bool, phi: OrgPhi | None = None
    ) -> None:
        self.defn = defn
        self.phi = phi or plain()
        self.zone = zone
        self.subflow = subflow
        self.errors: list[str] = []
        self.by_lower: dict[str, Parameter] = {p.name.lower(): p for p in defn.parameters}
        self.names = ", ".join(p.name for p in defn.parameters)

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)
        elif len(self.errors) == MAX_ERRORS:
            self.errors.append(f"more than {MAX_ERRORS} problems; the rest are not listed")

    def entry(self, index: int, raw: Any) -> _Entry | None:
        where = f"instances[{index}]"
        if not isinstance(raw, dict):
            self.error(f"{where}: must be an object with a 'parameters' object")
            return None
        given = raw.get("parameters")
        if not isinstance(given, dict):
            self.error(f"{where}.parameters: must be an object of parameter names to string values")
            return None
        params: dict[str, str] = {}
        seen: set[str] = set()  # canonical names given (valid or not)
        invalid: set[str] = set()
        ok = True
        for name, value in given.items():
            path = f"{where}.parameters.{name}"
            p = self.by_lower.get(str(name).lower())
            if p is None:
                self.error(f"{path}: unknown parameter (this journey's parameters: {self.names})")
                ok = False
                continue
            if p.name in seen:
                self.error(f"{path}: parameter {p.name} given more than once (names are case-insensitive)")
                ok = False
                continue
            seen.add(p.name)
            if value is None:
                continue  # treated as absent
            if not isinstance(value, str):
                self.error(f"{path}: must be a string")
                invalid.add(p.name)
                continue
            if has_nul(value):
                self.error(f"{path}: {NUL_PROBLEM}")
                invalid.add(p.name)
                continue
            if len(value) > MAX_VALUE_CHARS or len(value.encode("utf-8")) > MAX_VALUE_BYTES:
                self.error(f"{path}: is too long (at most {MAX_VALUE_CHARS} characters)")
                invalid.add(p.name)
                continue
            problem = check_value(p.type, value, self.zone)
            if problem is not None:
                self.error(f"{path}: {_q(value)} {problem}")
                invalid.add(p.name)
                continue
            params[p.name] = value
        if invalid:
            ok = False
        for p in self.defn.parameters:
            needed = p.identifier if self.subflow else p.required
            if needed and p.name not in invalid and not params.get(p.name, "").strip():
                state = "is empty" if p.name in params else "is missing"
                self.error(f"{where}.parameters.{p.name}: required parameter {state}")
                ok = False
        if not ok:
            return None
        return _Entry(index, params, identifier_key(self.defn, params, self.phi))


def validate_parameters(
    defn: JourneyDefinition, parameters: Any, zone: ZoneInfo | None
) -> tuple[dict[str, str], list[str]]:
    """Check one instance's parameters as the bulk endpoint would (main flow). Returns the
    parameters under their canonical names, and the problems (empty when fine)."""
    v = _Validator(defn, zone, subflow=False)
    entry = v.entry(0, {"parameters": parameters})
    messages = [
        m.replace("instances[0].parameters.", "", 1).replace("instances[0].", "", 1) for m in v.errors
    ]
    return (entry.params if entry else {}), messages


def _check_top_level(
    body: Any, jv: JourneyVersion, max_instances: int
) -> tuple[str | None, str, list[Any], list[str]]:
    """Check flowId, timeZone and the instances array. Returns (flowId, zone name or "", instances,
    errors so far); raises TriggerError when the instances cannot be validated at all."""
    if not isinstance(body, dict):
        raise TriggerError(["request body: must be a JSON object with flowId, timeZone and instances"])
    errors: list[str] = []
    flow_id = body.get("flowId")
    defn = jv.definition
    if flow_id is not None:
        if not isinstance(flow_id, str):
            errors.append("flowId: must be null (main flow) or a subflow id string")
        elif defn.subflow(flow_id) is None:
            subflows = ", ".join(f.id for f in defn.flows if f is not defn.main_flow) or "none"
            if defn.flow(flow_id) is not None:
                errors.append(f"flowId: {_q(flow_id)} is the main flow; use null to start the main flow")
            else:
                errors.append(
                    f"flowId: {_q(flow_id)} is not a subflow of journey {_q(jv.name)} (subflows: {subflows})"
                )
    tz = body.get("timeZone")
    if tz is None or tz == "":
        if defn.has_datetime_parameters():
            errors.append(
                "timeZone: required because this journey has datetime parameters "
                "(an IANA zone, e.g. 'America/Chicago' or 'UTC')"
            )
        tz = "UTC"
    elif not isinstance(tz, str) or get_zone(tz) is None:
        errors.append(f"timeZone: {_q(str(tz))} is not an IANA time zone (e.g. 'America/Chicago' or 'UTC')")
        tz = None
    instances = body.get("instances")
    if not isinstance(instances, list):
        errors.append('instances: must be an array of {"parameters": {...}} objects')
        instances = []
    elif not instances:
        errors.append("instances: must contain at least one instance")
    elif len(instances) > max_instances:
        raise TriggerError(
            errors + [f"instances: {len(instances)} instances given; at most {max_instances} per request"]
        )
    if errors and not instances:
        raise TriggerError(errors)
    # Otherwise keep validating the instances so that every problem is reported at once.
    return flow_id if isinstance(flow_id, str) else None, tz or "", instances, errors


def trigger(
    conn: Connection,
    jv: JourneyVersion,
    body: Any,
    now: datetime,
    *,
    phi: OrgPhi,
    max_instances: int,
    optimistic: bool = False,
) -> TriggerResult:
    """Validate and write a bulk trigger. Raises TriggerError (nothing written) on any problem.

    With `optimistic`, starting the main flow does not look for active instances with the same
    identifiers first: the partial unique index is the guard, and a conflict raises the
    database's IntegrityError — the caller rolls back and calls again without `optimistic`,
    which names every conflicting instance."""
    flow_id, tz_name, raw_instances, top_errors = _check_top_level(body, jv, max_instances)
    defn = jv.definition
    zone = get_zone(tz_name) if tz_name else None
    subflow = defn.subflow(flow_id) if flow_id else None
    v = _Validator(defn, zone, subflow=flow_id is not None, phi=phi)
    v.errors.extend(top_errors)
    entries: list[_Entry] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_instances):
        entry = v.entry(i, raw)
        if entry is None:
            continue
        if entry.key is not None:
            first = seen.get(entry.key)
            if first is not None:
                v.error(
                    f"instances[{i}]: duplicate instance identifier "
                    f"({_describe_identifier(defn, entry.params)}) "
                    f"also given at instances[{first}]"
                )
                continue
            seen[entry.key] = i
        entries.append(entry)
    if flow_id is not None and subflow is None:
        raise TriggerError(v.errors)
    if flow_id is None:
        return _start_main(conn, jv, entries, v, tz_name, now, check_active=not optimistic)
    assert subflow is not None
    return _start_subflow(conn, jv, flow_id, entries, v, zone, now)


def _refuse_active(
    conn: Connection, jv: JourneyVersion, entries: list[_Entry], v: _Validator, check: bool
) -> None:
    """Raise TriggerError with every problem, an active instance with the same identifiers included."""
    keys = [e.key for e in entries if e.key is not None]
    active = {}
    if keys and (check or v.errors):  # a failing request lists every problem at once
        active = repo.find_active_by_identifier(conn, jv.org_id, jv.journey_id, keys)
    for e in entries:
        if e.key is not None and e.key in active:
            v.error(
                f"instances[{e.index}]: an active instance already exists for "
                f"{_describe_identifier(jv.definition, e.params)} (id {active[e.key]['instance_id']})"
            )
    if v.errors:
        raise TriggerError(v.errors)


def _start_main(
    conn: Connection,
    jv: JourneyVersion,
    entries: list[_Entry],
    v: _Validator,
    tz: str,
    now: datetime,
    *,
    check_active: bool = True,
) -> TriggerResult:
    _refuse_active(conn, jv, entries, v, check_active)
    batch_id = new_id()
    ids = new_ids(len(entries))
    main = jv.definition.main_flow
    first_step = main.steps[0].id
    prefix = prefix_names(jv.definition)
    started = {"batchId": batch_id, "version": jv.version}
    inst_rows: list[dict[str, Any]] = []
    param_rows: list[ParameterRow] = []
    events: list[TimelineEvent] = []
    for e, iid in zip(entries, ids, strict=True):
        inst_rows.append(
            {
                "org_id": jv.org_id,
                "instance_id": iid,
                "journey_id": jv.journey_id,
                "version": jv.version,
                "batch_id": batch_id,
                "status": ACTIVE,
                "time_zone": tz,
                "parameters": v.phi.seal_json(e.params),
                "identifier_key": e.key,
                "flow_id": main.id,
                "step_id": first_step,
                "due_at": now,
                "state": EMPTY_STATE,
                "rev": 0,
                "attempts": 0,
                "created_at": now,
                "start_at": now,
            }
        )
        param_rows += parameter_rows(v.phi, (jv.org_id, iid), jv.journey_id, e.params, e.params, prefix)
        events.append(event_row(jv.org_id, iid, now, main.id, main.name, None, "started", started))
    repo.insert_rows(conn, journey_instances, inst_rows)
    repo.insert_parameters(conn, param_rows)
    record_events(conn, events)
    notify_due(conn)
    return TriggerResult(batch_id, ids, statistics_stale=stats.need_analyze(conn, len(inst_rows)))


def refresh_statistics(engine: Engine) -> bool:
    """After a committed load that made the statistics stale: gather fresh ones (PostgreSQL)."""
    return stats.analyze_instances(engine)


def _in_zone(value: str, given_zone: ZoneInfo | None, instance_zone_name: str) -> str:
    """Re-express a local datetime given in the request's zone in the instance's own zone."""
    inst_zone = get_zone(instance_zone_name)
    if given_zone is None or inst_zone is None or given_zone.key == inst_zone.key:
        return value
    moment = parse_datetime(value, given_zone)
    if moment is None:
        return value
    return moment.astimezone(inst_zone).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class _Moves:
    """What starting a subflow writes."""

    moves: list[SubflowMove] = field(default_factory=list)
    param_rows: list[ParameterRow] = field(default_factory=list)
    events: list[TimelineEvent] = field(default_factory=list)


def _merge_parameters(
    e: _Entry, inst_defn: JourneyDefinition, match: dict[str, Any], zone: ZoneInfo | None, v: _Validator
) -> tuple[dict[str, str], dict[str, str]]:
    """The instance's parameters with the request's merged in, and those that changed."""
    merged: dict[str, str] = v.phi.open_json(match["parameters"])
    changed: dict[str, str] = {}
    for name, value in e.params.items():
        p = inst_defn.parameter(name)
        if p is None:
            v.error(
                f"instances[{e.index}].parameters.{name}: not a parameter of version {match['version']} "
                "that this instance runs"
            )
            continue
        if p.type == "datetime":
            value = _in_zone(value, zone, match["time_zone"])
        if merged.get(p.name) != value:
            changed[p.name] = value
        merged[p.name] = value
    return merged, changed


def _plan_move(
    conn: Connection,
    jv: JourneyVersion,
    flow_id: str,
    e: _Entry,
    match: dict[str, Any],
    zone: ZoneInfo | None,
    now: datetime,
    v: _Validator,
    out: _Moves,
) -> None:
    """Add one matched instance's move onto the subflow (or the problem to `v`)."""
    inst_defn = load_version(conn, jv.org_id, jv.journey_id, int(match["version"]))
    flow = inst_defn.subflow(flow_id)
    if flow is None:
        v.error(
            f"instances[{e.index}]: instance {match['instance_id']} runs version {match['version']} "
            f"of the journey, which has no subflow {_q(flow_id)}"
        )
        return
    merged, changed = _merge_parameters(e, inst_defn, match, zone, v)
    iid = match["instance_id"]
    parameters = v.phi.seal_json(merged)
    out.moves.append(SubflowMove(iid, int(match["rev"]), flow.id, flow.steps[0].id, now, parameters))
    prefix = prefix_names(inst_defn)
    out.param_rows += parameter_rows(v.phi, (jv.org_id, iid), jv.journey_id, merged, changed, prefix)
    detail = {"changedParameters": sorted(changed)}
    out.events.append(event_row(jv.org_id, iid, now, flow.id, flow.name, None, "subflow_started", detail))


def _start_subflow(
    conn: Connection,
    jv: JourneyVersion,
    flow_id: str,
    entries: list[_Entry],
    v: _Validator,
    zone: ZoneInfo | None,
    now: datetime,
) -> TriggerResult:
    keys = [e.key for e in entries if e.key is not None]
    matches = repo.find_active_by_identifier(conn, jv.org_id, jv.journey_id, keys, lock=True) if keys else {}
    out = _Moves()
    for e in entries:
        match = matches.get(e.key or "")
        if match is None:
            v.error(
                f"instances[{e.index}]: no active instance found for "
                f"{_describe_identifier(jv.definition, e.params)}"
            )
            continue
        _plan_move(conn, jv, flow_id, e, match, zone, now, v, out)
    if v.errors:
        raise TriggerError(v.errors)
    if repo.apply_subflow_updates(conn, jv.org_id, out.moves) != len(out.moves):
        raise ConcurrentChange("an instance changed while the subflow was being started; retry the request")
    repo.replace_parameters(conn, out.param_rows)
    ids = [m.instance_id for m in out.moves]
    # Anything queued but unsent was rendered from the old parameters (e.g. the old time): it is
    # dropped, and each instance's timeline says so.
    reason = "superseded by a subflow"
    for m in repo.drop_queued_messages(conn, jv.org_id, ids, reason):
        kind, detail = f"{m['channel']}_dropped", {"messageId": m["message_id"], "reason": reason}
        out.events.append(
            event_row(jv.org_id, m["instance_id"], now, m["flow_id"], None, m["step_id"], kind, detail)
        )
    record_events(conn, out.events)
    notify_due(conn)
    return TriggerResult(None, ids)


class ConcurrentChange(Conflict, RuntimeError):
    """A guarded write lost a race; the caller rolls back and may retry the whole request."""
