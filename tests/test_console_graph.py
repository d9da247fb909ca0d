"""The journey graph's layout (journeys.console.graph): pure, from a definition to boxes and
labelled arrows; every example journey drawn without overlaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from journeys.console.graph import BOX_H, BOX_W, GAP, ROW_H, TOP, describe, edges, layout
from journeys.definitions import load_definition_file, load_definition_text
from journeys.definitions.model import Condition

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

pytestmark = pytest.mark.same_on_every_database


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_step_is_a_box_and_no_two_overlap(path: Path) -> None:
    defn = load_definition_file(path)
    graph = layout(defn)
    ids = [step.id for flow in defn.flows for step in flow.steps]
    assert sorted(b.step_id for b in graph.boxes) == sorted(ids)
    boxes = list(graph.boxes)
    for i, a in enumerate(boxes):
        assert a.x + a.w <= graph.width and a.y + a.h <= graph.height
        for b in boxes[i + 1 :]:
            apart = a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y
            assert apart, (a.step_id, b.step_id)
    for arrow in graph.arrows:  # every arrow ends on its target's box
        target = next(b for b in boxes if b.step_id == arrow.target)
        x, y = arrow.points[-1]
        assert target.x <= x <= target.x + target.w and target.y <= y <= target.y + target.h


def test_subflows_stand_beside_the_main_flow_and_gotos_cross_to_it() -> None:
    defn = load_definition_file(ROOT / "examples" / "appointment-full.yaml")
    graph = layout(defn)
    main, *subflows = graph.columns
    assert (
        main.main
        and main.flow_id == "main"
        and [c.flow_id for c in subflows] == ["rescheduled", "checked-in"]
    )
    assert main.x < subflows[0].x < subflows[1].x
    assert subflows[0].x >= main.x + BOX_W + GAP
    goto = next(a for a in graph.arrows if a.source == 210)
    assert (goto.target, goto.label) == (20, "goto")
    assert goto.points[0][0] == subflows[0].x  # leaves the subflow's box on the left, towards main


def test_arrows_are_labelled_with_their_routes() -> None:
    defn = load_definition_text(
        """
name: Labels
parameters:
  - {name: phone, type: phone}
  - {name: kind}
flows:
  - id: main
    name: Main
    steps:
      - id: 1
        type: branch
        cases:
          - {when: {parameter: kind, equals: new}, next: 3}
          - {when: {any: [{parameter: kind, empty: true}, {parameter: kind, in: [a, b]}]}, next: 4}
      - {id: 2, type: wait, duration: 2h}
      - id: 3
        type: wait_for_reply
        to: phone
        timeout: 1d
        replies: [{outcome: confirmed, next: 4}]
        on_timeout: 2
      - {id: 4, type: end}
"""
    )
    found = {(e.source, e.target): e.label for e in edges(defn)}
    assert found == {
        (1, 3): "if kind = new",
        (1, 4): "if kind empty or kind in a, b",
        (1, 2): "else",
        (2, 3): "after 2h",
        (3, 4): "confirmed / other reply",  # two routes to one step: one arrow, both labels
        (3, 2): "no reply in 1d",
    }
    graph = layout(defn)
    up = next(a for a in graph.arrows if (a.source, a.target) == (3, 2))
    assert len(up.points) == 4 and up.points[1][0] > BOX_W  # a jump runs in a lane beside the column
    assert (
        next(a for a in graph.arrows if (a.source, a.target) == (2, 3)).points[0][1] == TOP + ROW_H + BOX_H
    )  # straight down


def test_conditions_are_described_in_a_few_words() -> None:
    c = Condition.model_validate({"not": {"parameter": "when", "before": "now+2d"}})
    assert describe(c) == "not (when before now+2d)"
    assert describe(Condition.model_validate({"reply": "confirmed"})) == "reply confirmed"
    assert describe(Condition.model_validate({"parameter": "x", "not_equals": "y"})) == "x ≠ y"
