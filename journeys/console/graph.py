"""A journey version's flows as a graph to draw: a box per step, a labelled arrow per way on
(the following step, a branch's cases, a reply's routes, a timeout, a goto), each flow in a
column of its own (the main flow first, its subflows beside it). Pure: a definition in, boxes,
arrows and a canvas size out; the template turns them into inline SVG.

The layout is layered: a step's layer is its place in its flow, so a flow reads top to bottom as
written. An arrow to the next layer goes straight down; one that jumps (up, or down past other
steps) leaves the box on the right and runs down a lane of its own beside the column (shorter
jumps in the inner lanes); one to another flow crosses the gap between the columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from journeys.definitions.model import (
    BranchStep,
    Condition,
    EndStep,
    GotoStep,
    HttpRequestStep,
    JourneyDefinition,
    WaitForReplyStep,
    WaitStep,
    WaitUntilStep,
)

BOX_W, BOX_H = 220, 64
ROW_H = 104  # a layer: the box and the room for a labelled arrow below it
LANE_W = 12
GAP = 64  # between columns: cross-flow arrows run here
PAD, TOP = 16, 56  # the canvas margin; the top leaves room for the flow's title (two lines)
LABEL_MAX = 30
BOX_TITLE_MAX = 27  # characters of "id · title" that fit a box (13 px bold)
LABEL_CHAR_W, TITLE_CHAR_W = 6.5, 8.5  # wide enough estimates of a character at 11 px and 14 px bold


@dataclass(frozen=True)
class Edge:
    source: int  # step ids (unique within a journey)
    target: int
    label: str


@dataclass(frozen=True)
class Box:
    step_id: int
    flow_id: str
    title: str  # the step's name, or its type
    kind: str  # the step type
    x: int
    y: int
    w: int = BOX_W
    h: int = BOX_H

    @property
    def short_title(self) -> str:
        """The title as the box shows it after its step id (the whole title is in the text view)."""
        return shorten(self.title, BOX_TITLE_MAX - len(f"{self.step_id} · "))


@dataclass(frozen=True)
class Arrow:
    source: int
    target: int
    label: str
    points: tuple[tuple[int, int], ...]
    label_x: int
    label_y: int
    label_anchor: str  # start | middle | end

    @property
    def path(self) -> str:
        return " ".join(f"{x},{y}" for x, y in self.points)

    @property
    def short_label(self) -> str:
        return shorten(self.label, LABEL_MAX)


@dataclass(frozen=True)
class Column:
    flow_id: str
    name: str
    main: bool
    x: int


@dataclass(frozen=True)
class Graph:
    columns: tuple[Column, ...]
    boxes: tuple[Box, ...]
    arrows: tuple[Arrow, ...]
    width: int
    height: int


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ---------------------------------------------------------------------------- edges
def describe(c: Condition) -> str:
    """A condition in a few words (the definition's own terms; no patient data)."""
    p = c.parameter or ""
    simple = [
        (c.equals, f"{p} = {c.equals}"),
        (c.not_equals, f"{p} ≠ {c.not_equals}"),
        (c.in_, f"{p} in {', '.join(c.in_ or [])}"),
        (c.before, f"{p} before {c.before}"),
        (c.after, f"{p} after {c.after}"),
        (c.reply, f"reply {c.reply}"),
    ]
    for value, text in simple:
        if value is not None:
            return text
    if c.empty is not None:
        return f"{p} empty" if c.empty else f"{p} not empty"
    if c.all is not None:
        return " and ".join(describe(x) for x in c.all)
    if c.any is not None:
        return " or ".join(describe(x) for x in c.any)
    assert c.not_ is not None
    return f"not ({describe(c.not_)})"


def _routes(step: Any, default_next: int | None) -> list[tuple[int | None, str]]:
    """Where a step goes on, each with its label (None: the flow ends there)."""
    if isinstance(step, EndStep):
        return []
    if isinstance(step, GotoStep):
        return [(step.target, "goto")]
    if isinstance(step, BranchStep):
        cases: list[tuple[int | None, str]] = [(c.next, f"if {describe(c.when)}") for c in step.cases]
        return cases + [(step.else_ if step.else_ is not None else default_next, "else")]
    if isinstance(step, WaitForReplyStep):
        routes: list[tuple[int | None, str]] = [
            (r.next if r.next is not None else default_next, r.outcome) for r in step.replies
        ]
        other = step.on_other if step.on_other is not None else default_next
        timeout = step.on_timeout if step.on_timeout is not None else default_next
        return routes + [(other, "other reply"), (timeout, f"no reply in {step.timeout}")]
    if isinstance(step, HttpRequestStep):
        failure = [(step.on_failure, "on failure")] if step.on_failure is not None else []
        return [(default_next, "ok" if failure else ""), *failure]
    if isinstance(step, WaitStep):
        return [(default_next, f"after {step.duration}")]
    if isinstance(step, WaitUntilStep):
        return [(default_next, f"at {step.parameter}")]
    return [(default_next, "")]


def edges(defn: JourneyDefinition) -> list[Edge]:
    """Every way on from every step (to a step of the journey), labelled; two ways to one step
    are one edge with both labels."""
    known = {step.id for flow in defn.flows for step in flow.steps}
    found: list[Edge] = []
    for flow in defn.flows:
        for i, step in enumerate(flow.steps):
            following = flow.steps[i + 1].id if i + 1 < len(flow.steps) else None
            default_next = step.next if step.next is not None else following
            labels: dict[int, list[str]] = {}
            for target, label in _routes(step, default_next):
                if target is not None and target in known:
                    labels.setdefault(target, [])
                    if label and label not in labels[target]:
                        labels[target].append(label)
            found.extend(Edge(step.id, target, " / ".join(texts)) for target, texts in labels.items())
    return found


# ---------------------------------------------------------------------------- layout
def _flows_in_order(defn: JourneyDefinition) -> list[Any]:
    main = defn.main_flow
    return [main, *(flow for flow in defn.flows if flow is not main)]


def _lanes(places: dict[int, tuple[int, int]], found: list[Edge]) -> dict[Edge, int]:
    """A lane beside the column for each jump within a flow: shorter jumps inside."""
    jumps = [
        e
        for e in found
        if places[e.source][0] == places[e.target][0] and places[e.target][1] != places[e.source][1] + 1
    ]
    jumps.sort(key=lambda e: (abs(places[e.target][1] - places[e.source][1]), places[e.source][1]))
    lanes: dict[Edge, int] = {}
    per_column: dict[int, int] = {}
    for e in jumps:
        column = places[e.source][0]
        lanes[e] = per_column.get(column, 0)
        per_column[column] = lanes[e] + 1
    return lanes


def _column_width(title: str, lanes: int, side_labels: list[str]) -> int:
    """Room for the boxes, their lanes and the labels of their side arrows (which must not reach
    the next column), and for the flow's title."""
    beside = max([24 + lanes * LANE_W, *(int(len(t) * LABEL_CHAR_W) + 12 for t in side_labels)])
    return max(BOX_W + beside, int(len(title) * TITLE_CHAR_W))


def layout(defn: JourneyDefinition) -> Graph:
    flows = _flows_in_order(defn)
    places: dict[int, tuple[int, int]] = {}  # step id -> (column, layer)
    for ci, flow in enumerate(flows):
        for li, step in enumerate(flow.steps):
            places[step.id] = (ci, li)
    found = edges(defn)
    lanes = _lanes(places, found)
    side_labels: list[list[str]] = [[] for _ in flows]  # labels of the arrows leaving on the side
    for e in found:
        (sc, sl), (tc, tl) = places[e.source], places[e.target]
        if e.label and not (sc == tc and tl == sl + 1):
            side_labels[sc].append(shorten(e.label, LABEL_MAX))
    lane_count = [0] * len(flows)
    for e, lane in lanes.items():
        column = places[e.source][0]
        lane_count[column] = max(lane_count[column], lane + 1)
    xs: list[int] = []
    x = PAD
    for ci in range(len(flows)):
        xs.append(x)
        x += _column_width(flows[ci].name, lane_count[ci], side_labels[ci]) + GAP
    columns = tuple(Column(f.id, f.name, f is defn.main_flow, xs[ci]) for ci, f in enumerate(flows))
    boxes = {
        step.id: Box(
            step.id, flow.id, step.name or step.type.replace("_", " "), step.type, xs[ci], TOP + li * ROW_H
        )
        for ci, flow in enumerate(flows)
        for li, step in enumerate(flow.steps)
    }
    exits: dict[int, int] = {}  # arrows leaving each box on its side so far
    arrows = []
    for e in found:
        k = exits.get(e.source, 0)
        exits[e.source] = k + 1
        arrows.append(_arrow(e, boxes, places, lanes.get(e), k))
    width = x - GAP + PAD
    height = TOP + max(len(f.steps) for f in flows) * ROW_H + PAD
    return Graph(columns, tuple(boxes.values()), tuple(arrows), width, height)


def _arrow(
    e: Edge, boxes: dict[int, Box], places: dict[int, tuple[int, int]], lane: int | None, k: int
) -> Arrow:
    src, dst = boxes[e.source], boxes[e.target]
    (sc, sl), (tc, tl) = places[e.source], places[e.target]
    if sc == tc and tl == sl + 1:  # straight down to the next layer
        cx = src.x + src.w // 2
        top, bottom = src.y + src.h, dst.y
        return Arrow(
            e.source, e.target, e.label, ((cx, top), (cx, bottom)), cx + 6, (top + bottom) // 2 + 4, "start"
        )
    sy = src.y + 12 + min(k, 3) * 13  # several arrows leave one box at different heights
    ty = dst.y + dst.h // 2 + (6 if tl <= sl else -6)
    if sc == tc:  # a jump within the flow, down its own lane
        assert lane is not None
        lx = src.x + src.w + 18 + lane * LANE_W
        points = ((src.x + src.w, sy), (lx, sy), (lx, ty), (dst.x + dst.w, ty))
        return Arrow(e.source, e.target, e.label, points, src.x + src.w + 4, sy - 3, "start")
    if tc > sc:  # to a flow on the right: through the gap before the target's column
        gx = dst.x - GAP // 2 + (k % 3) * 6
        points = ((src.x + src.w, sy), (gx, sy), (gx, ty), (dst.x, ty))
        return Arrow(e.source, e.target, e.label, points, src.x + src.w + 4, sy - 3, "start")
    gx = src.x - GAP // 2 - (k % 3) * 6  # to a flow on the left: through the gap before this column
    points = ((src.x, sy), (gx, sy), (gx, ty), (dst.x + dst.w, ty))
    return Arrow(e.source, e.target, e.label, points, src.x - 4, sy - 3, "end")
