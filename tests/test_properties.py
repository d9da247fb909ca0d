"""Property tests of the scheduler (hypothesis).

Random linear journeys (waits, wait_untils relative to a datetime parameter, SMS and email
sends, with or without a send window and the frequency cap) in random time zones around DST
changes, driven by random clock moves:

- through the real worker on a real database behind a real server (a module-scoped server with
  its own database and clock, a fresh org per example): no step runs before its due time (the
  due times are recomputed here from the definition), no step runs twice, nothing runs a
  second early even at the edge, and the instance completes once the clock passes the last
  due time;
- through the interpreter alone: calling `advance` at any times at or after the due time gives
  the same steps, each once, as calling it exactly on time ("no step lost, none twice");
- the past-time policy: a send is skipped for being late exactly when a `wait_until` with
  `if_past: skip` found its time past and the instance has not really waited since (a `wait`,
  or a `wait_until` still in the future, starts a new moment).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.databases import own_database
from support.server import Server

from journeys.definitions import load_definition_text
from journeys.definitions.model import JourneyDefinition, WaitStep, WaitUntilStep
from journeys.definitions.values import get_zone, parse_datetime
from journeys.engine.interpreter import Effects, Instance, advance
from journeys.engine.rules import wait_until_target
from journeys.records import QueuedMessage
from journeys.store.db import read_only
from journeys.store.tables import journey_instances

ZONES = ("America/Chicago", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "UTC")
# DST changes in 2026 (UTC): Chicago 03-08 and 11-01, London 03-29 and 10-25, Lord Howe
# (a 30-minute shift) 04-05 and 10-04; and an ordinary Monday.
ANCHORS = (
    datetime(2026, 3, 8, 8, 0, tzinfo=UTC),
    datetime(2026, 11, 1, 7, 0, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
    datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
    datetime(2026, 4, 4, 15, 0, tzinfo=UTC),
    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
    datetime(2026, 11, 2, 16, 0, tzinfo=UTC),
)
DURATIONS = {
    "30s": timedelta(seconds=30),
    "10m": timedelta(minutes=10),
    "45m": timedelta(minutes=45),
    "2h": timedelta(hours=2),
    "5h 30m": timedelta(hours=5, minutes=30),
    "1d": timedelta(days=1),
    "1d 12h": timedelta(days=1, hours=12),
    "3d": timedelta(days=3),
}
OFFSETS = ("30m", "3h", "24h", "1d", "2d", "1d 3h", "7d")
ATS = (None, "00:30", "02:30", "09:00", "17:45")
WINDOWS = (None, ("08:00", "21:00"), ("09:30", "17:00"))
ADVANCES = (
    timedelta(seconds=1),
    timedelta(minutes=20),
    timedelta(hours=1),
    timedelta(hours=7),
    timedelta(days=1),
    timedelta(days=2, hours=5),
)
LATENESS = (timedelta(0), timedelta(seconds=1), timedelta(minutes=5), timedelta(hours=3), timedelta(days=2))
HOLDS = ("send_held", "sms_deferred")  # the instance waits at the send step; it runs again later
SEND_KINDS = {"sms_queued", "sms_skipped", "sms_capped", "email_queued", "email_skipped"}
PAST_REASON = "its time had passed (wait_until policy skip)"


# ---------------------------------------------------------------- generated journeys
@dataclass(frozen=True)
class Case:
    tz: str
    start: datetime  # UTC, whole seconds: when the instances are triggered
    appointments: tuple[str, ...]  # local wall times in `tz`, one instance each
    steps: tuple[tuple[Any, ...], ...]
    window: tuple[str, str] | None
    cap: bool

    def document(self) -> dict[str, Any]:
        steps: list[dict[str, Any]] = []
        for i, spec in enumerate(self.steps):
            step: dict[str, Any] = {"id": 10 * (i + 1)}
            if spec[0] == "wait":
                step.update(type="wait", duration=spec[1])
            elif spec[0] == "wait_until":
                _, direction, offset, at, if_past = spec
                step.update(type="wait_until", parameter="appt", if_past=if_past)
                if direction is not None:
                    step[direction] = offset
                if at is not None:
                    step["at"] = at
            elif spec[0] == "sms":
                step.update(type="send_sms", to="phone", body=f"step {i} for {{{{ key }}}}")
            else:
                step.update(type="send_email", to="email", subject=f"step {i}", body="for {{ key }}")
            steps.append(step)
        return {
            "name": "Property",
            "send_window": None if self.window is None else {"start": self.window[0], "end": self.window[1]},
            "frequency_cap": {} if self.cap else None,
            "parameters": [
                {"name": "key", "identifier": True},
                {"name": "phone", "type": "phone"},
                {"name": "email", "type": "email"},
                {"name": "appt", "type": "datetime"},
            ],
            "flows": [{"id": "main", "name": "Main", "main": True, "steps": steps}],
        }

    def yaml(self) -> str:
        return yaml.safe_dump(self.document(), sort_keys=False)

    def definition(self) -> JourneyDefinition:
        return load_definition_text(self.yaml())

    def parameters(self, n: int) -> dict[str, str]:
        return {
            "key": f"K{n}",
            "phone": f"+1312555{n:04d}",
            "email": f"p{n}@example.org",
            "appt": self.appointments[n],
        }


wait_specs = st.tuples(st.just("wait"), st.sampled_from(sorted(DURATIONS)))


def wait_until_specs(if_past: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(
        st.just("wait_until"),
        st.sampled_from((None, "before", "after")),
        st.sampled_from(OFFSETS),
        st.sampled_from(ATS),
        if_past,
    )


@st.composite
def cases(draw: st.DrawFn, if_past: tuple[str, ...] = ("skip", "run_now"), max_instances: int = 2) -> Case:
    tz = draw(st.sampled_from(ZONES))
    zone = get_zone(tz)
    start = draw(st.sampled_from(ANCHORS)) + timedelta(minutes=draw(st.integers(-3 * 1440, 3 * 1440)))
    local_start = start.astimezone(zone).replace(tzinfo=None)
    # Appointments as local wall times (some land in a DST gap or fold), from two days ago to
    # ten days ahead.
    appointments = tuple(
        (local_start + timedelta(minutes=m)).strftime("%Y-%m-%d %H:%M:%S")
        for m in draw(st.lists(st.integers(-2 * 1440, 10 * 1440), min_size=1, max_size=max_instances))
    )
    step = st.one_of(
        wait_specs,
        wait_until_specs(st.sampled_from(if_past)),
        st.just(("sms",)),
        st.just(("email",)),
    )
    steps = tuple(draw(st.lists(step, min_size=1, max_size=8)))
    return Case(
        tz=tz,
        start=start,
        appointments=appointments,
        steps=steps,
        window=draw(st.sampled_from(WINDOWS)),
        cap=draw(st.booleans()),
    )


# ---------------------------------------------------------------- the oracle
@dataclass
class Event:
    at: datetime
    step_id: int | None
    kind: str
    detail: dict[str, Any]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_opening(at: datetime, window: tuple[str, str] | None, zone: Any) -> datetime | None:
    """None when `at` is inside the local window [start, end); else the next opening."""
    if window is None:
        return None
    (sh, sm), (eh, em) = ((int(x) for x in w.split(":")) for w in window)
    local = at.astimezone(zone)
    minute = local.hour * 60 + local.minute
    if sh * 60 + sm <= minute < eh * 60 + em:
        return None
    day = local.date() if minute < sh * 60 + sm else local.date() + timedelta(days=1)
    return datetime.combine(day, time(sh, sm), tzinfo=zone).astimezone(UTC)


def check_schedule(
    case: Case, defn: JourneyDefinition, params: dict[str, str], started: datetime, events: list[Event]
) -> None:
    """(a) No event before its step's due time, with the due times recomputed from the
    definition; (b) no step twice, and the steps in the order the definition gives them."""
    zone = get_zone(case.tz)
    steps = {s.id: s for s in defn.main_flow.steps}
    appointment = parse_datetime(params["appt"], zone)
    assert appointment is not None
    due = started
    ran: list[int] = []
    for e in events:
        where = f"{e.kind} of step {e.step_id} at {iso(e.at)} (due {iso(due)})"
        assert e.at >= due, f"ran early: {where}"
        if e.step_id is None:
            assert e.kind in ("started", "completed"), where
            continue
        step = steps[e.step_id]
        if e.kind not in HOLDS:
            ran.append(e.step_id)
        if e.kind == "wait":
            if isinstance(step, WaitStep):
                due = e.at + DURATIONS[step.duration]
            else:
                assert isinstance(step, WaitUntilStep), where
                due = wait_until_target(appointment, step, zone)
                assert due > e.at, f"waited for a time already past: {where}"
            assert e.detail["until"] == iso(due), where
        elif e.kind == "wait_skipped":
            assert isinstance(step, WaitUntilStep), where
            target = wait_until_target(appointment, step, zone)
            assert target <= e.at, f"skipped a wait still in the future: {where}"
            assert e.detail == {"until": iso(target), "policy": step.if_past}, where
        elif e.kind == "send_held":
            opening = window_opening(e.at, case.window, zone)
            assert opening is not None, f"held inside the send window: {where}"
            assert e.detail["until"] == iso(opening), where
            due = opening
        elif e.kind == "sms_deferred":
            # capped: tried again the next local day, at the window's opening
            day = e.at.astimezone(zone).date() + timedelta(days=1)
            midnight = datetime.combine(day, time(0, 0), tzinfo=zone).astimezone(UTC)
            retry = window_opening(midnight, case.window, zone) or midnight
            assert case.cap and e.detail["until"] == iso(retry), where
            due = retry
        elif e.kind == "sms_queued":
            assert window_opening(e.at, case.window, zone) is None, f"sent outside the window: {where}"
        else:
            assert e.kind in SEND_KINDS, where
    counts = Counter(ran)
    assert all(n == 1 for n in counts.values()), f"a step ran twice: {counts}"
    order = [s.id for s in defn.main_flow.steps]
    assert ran == order[: len(ran)], f"steps out of order: {ran} (definition: {order})"


# ---------------------------------------------------------------- through the worker
@pytest.fixture(scope="module")
def prop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own: its database sees only these examples' instances, and
    the examples move its clock across the year without disturbing other tests."""
    with own_database(tmp_path_factory.mktemp("props"), "props.db") as url:
        srv = Server(url)
        try:
            yield srv
        finally:
            srv.stop()


def api_events(server: Server, tenant: Any, instance_id: str) -> tuple[str, list[Event]]:
    r = server.http.get(tenant.url(f"/{instance_id}"), headers=tenant.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    return body["status"], [
        Event(
            datetime.fromisoformat(e["eventDateTime"].replace("Z", "+00:00")),
            e["stepId"],
            e["type"],
            e["detail"],
        )
        for e in body["events"]
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), moves=st.lists(st.sampled_from(ADVANCES), max_size=6))
def test_worker_never_runs_a_step_early_or_twice_and_finishes(
    prop_server: Server, case: Case, moves: list[timedelta]
) -> None:
    server = prop_server
    defn = case.definition()
    server.clock.set(case.start)
    tenant = server.tenant(case.yaml())
    params = {case.parameters(n)["key"]: case.parameters(n) for n in range(len(case.appointments))}
    r = server.http.post(
        tenant.url("/bulk"),
        json={"flowId": None, "timeZone": case.tz, "instances": [{"parameters": p} for p in params.values()]},
        headers=tenant.headers,
    )
    assert r.status_code == 204, r.text

    def instances() -> list[dict[str, Any]]:
        ji = journey_instances
        with read_only(server.engine) as conn:
            q = sa.select(ji.c.instance_id, ji.c.status, ji.c.due_at, ji.c.parameters).where(
                ji.c.org_id == tenant.org_id
            )
            return [dict(row) for row in conn.execute(q).mappings()]

    ids = {row["instance_id"]: json.loads(row["parameters"])["key"] for row in instances()}
    assert len(ids) == len(params)

    def check_all() -> dict[str, tuple[str, list[Event]]]:
        seen = {iid: api_events(server, tenant, iid) for iid in ids}
        for iid, (_, events) in seen.items():
            assert events[0].kind == "started" and events[0].at == case.start
            check_schedule(case, defn, params[ids[iid]], case.start, events)
        return seen

    server.run_worker()
    check_all()
    for move in moves:
        server.clock.advance(move)
        server.run_worker()
        check_all()

    # Then follow the due times: a second before one, nothing runs; at it, the step runs.
    for _ in range(2 * len(case.steps) + 2):
        active = [row for row in instances() if row["status"] == "InProgress"]
        if not active:
            break
        assert all(row["due_at"] is not None for row in active)
        nxt = min(row["due_at"] for row in active)
        now = server.clock.now()
        if nxt > now:
            before = check_all()
            server.clock.set(max(now, nxt - timedelta(seconds=1)))
            server.run_worker()
            assert check_all() == before, f"a step ran before its due time {iso(nxt)}"
            server.clock.set(nxt)
        server.run_worker()
        check_all()
    final = check_all()
    for status, events in final.values():
        assert status == "Completed", (status, [(e.kind, e.step_id) for e in events])
        assert events[-1].kind == "completed"
        ran = [e.step_id for e in events if e.step_id is not None and e.kind not in HOLDS]
        assert ran == [s.id for s in defn.main_flow.steps], ran
    # One outbox message per queued send, none twice.
    with read_only(server.engine) as conn:
        rows = conn.execute(
            sa.text(
                "SELECT instance_id, step_id, count(*) AS n FROM outbox WHERE org_id = :o "
                "GROUP BY instance_id, step_id"
            ),
            {"o": tenant.org_id},
        ).mappings()
        outbox = {(row["instance_id"], row["step_id"]): row["n"] for row in rows}
    queued = {
        (iid, e.step_id): 1
        for iid, (_, events) in final.items()
        for e in events
        if e.kind in ("sms_queued", "email_queued")
    }
    assert outbox == queued


# ---------------------------------------------------------------- the interpreter alone
def drive(
    defn: JourneyDefinition, case: Case, params: dict[str, str], lateness: list[timedelta]
) -> tuple[list[tuple[datetime, Effects]], list[Event], list[QueuedMessage]]:
    """Call `advance` at each due time plus the next lateness (0 once they run out) until the
    instance ends. Returns the calls, every event and every message."""
    inst = Instance("org", "inst", "journey", 1, "main", defn.main_flow.steps[0].id, case.tz, dict(params))
    now = case.start
    calls: list[tuple[datetime, Effects]] = []
    events: list[Event] = []
    messages: list[QueuedMessage] = []
    for i in range(4 * len(case.steps) + 4):
        fx = advance(defn, inst, now)
        calls.append((now, fx))
        events.extend(Event(e.at, e.step_id, e.kind, dict(e.detail)) for e in fx.events)
        messages.extend(fx.messages)
        if fx.status != "InProgress":
            return calls, events, messages
        assert fx.due_at is not None and fx.http_call is None
        inst.flow_id, inst.step_id, inst.state = fx.flow_id or inst.flow_id, fx.step_id, fx.state
        now = max(now, fx.due_at) + (lateness[i] if i < len(lateness) else timedelta(0))
    raise AssertionError("the instance did not end")


def normalised(events: list[Event]) -> list[tuple[int | None, str]]:
    """What ran, whatever the timing: a wait that had passed counts as the wait, a held send
    as the send."""
    kinds = {"wait_skipped": "wait"}
    return [(e.step_id, kinds.get(e.kind, e.kind)) for e in events if e.kind not in HOLDS]


@pytest.mark.same_on_every_database
@settings(max_examples=150, deadline=None)
@given(
    case=cases(if_past=("run_now",), max_instances=1),
    lateness=st.lists(st.sampled_from(LATENESS), max_size=12),
)
def test_advance_late_runs_the_same_steps_once_as_advance_on_time(
    case: Case, lateness: list[timedelta]
) -> None:
    defn = case.definition()
    params = case.parameters(0)
    calls, events, messages = drive(defn, case, params, lateness)
    _, on_time, on_time_messages = drive(defn, case, params, [])
    # No step lost, none twice: the union of the late calls' events is the on-time run's.
    assert normalised(events) == normalised(on_time)
    assert [(m.step_id, m.channel, m.body) for m in messages] == [
        (m.step_id, m.channel, m.body) for m in on_time_messages
    ]
    assert len({m.idempotency_key for m in messages}) == len(messages)
    assert events[-1].kind == "completed"
    for now, fx in calls:
        assert all(e.at == now for e in fx.events)
    check_schedule(case, defn, params, case.start, events)
    check_schedule(case, defn, params, case.start, on_time)


# ---------------------------------------------------------------- the past-time policy
@pytest.mark.same_on_every_database
@settings(max_examples=150, deadline=None)
@given(case=cases(max_instances=1), lateness=st.lists(st.sampled_from(LATENESS), max_size=12))
@example(
    # Booked 4 days ahead: "7 days before" has passed (skip), "1 day before" is ahead and waits;
    # the day-before message is meant for that moment and must go out.
    case=Case(
        tz="America/Chicago",
        start=datetime(2026, 11, 2, 16, 0, tzinfo=UTC),
        appointments=("2026-11-06 10:00:00",),
        steps=(
            ("wait_until", "before", "7d", None, "skip"),
            ("wait_until", "before", "1d", None, "skip"),
            ("sms",),
        ),
        window=None,
        cap=False,
    ),
    lateness=[],
)
@example(
    # Booked 3 hours ahead: "2 days before" has passed; the "in 2 days" message is skipped, the
    # next one (after a real wait) is not.
    case=Case(
        tz="Europe/London",
        start=datetime(2026, 11, 2, 10, 0, tzinfo=UTC),
        appointments=("2026-11-02 13:00:00",),
        steps=(("wait_until", "before", "2d", "09:00", "skip"), ("sms",), ("wait", "2h"), ("sms",)),
        window=None,
        cap=False,
    ),
    lateness=[],
)
def test_a_send_is_skipped_as_late_exactly_when_its_wait_until_had_passed(
    case: Case, lateness: list[timedelta]
) -> None:
    defn = case.definition()
    _, events, _ = drive(defn, case, case.parameters(0), lateness)
    pending = False  # a wait_until with if_past: skip had passed, and no send has consumed it
    for e in events:
        if e.kind == "wait_skipped" and e.detail["policy"] == "skip":
            pending = True
        elif e.kind == "wait":
            pending = False  # time really passed here: what follows is meant for this moment
        elif e.kind in SEND_KINDS:
            late = e.detail.get("reason") == PAST_REASON
            timeline = [(x.step_id, x.kind) for x in events]
            assert late == pending, (
                f"step {e.step_id}: skipped as late={late}, expected {pending}: {timeline}"
            )
            pending = False
