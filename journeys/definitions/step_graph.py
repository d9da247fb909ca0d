"""The step graph of a complete definition: where each step can go next, which steps can be
reached, and loops that never wait."""

from __future__ import annotations

from collections import deque
from typing import Any

from journeys.definitions.model import (
    WAITING_STEP_TYPES,
    BranchStep,
    EndStep,
    GotoStep,
    HttpRequestStep,
    JourneyDefinition,
    WaitForReplyStep,
)
from journeys.definitions.problems import Problem

Position = tuple[int, int]  # (flow index, step index)


def step_path(pos: Position) -> str:
    return f"flows[{pos[0]}].steps[{pos[1]}]"


def _targets(step: Any, default_next: int | None) -> list[int | None]:
    """Every step id `step` can go on to; None completes the instance (falling off the end)."""
    if isinstance(step, EndStep):
        return []
    if isinstance(step, GotoStep):
        return [step.target]
    if isinstance(step, BranchStep):
        return [case.next for case in step.cases] + [step.else_ if step.else_ is not None else default_next]
    if isinstance(step, WaitForReplyStep):
        routes = [route.next if route.next is not None else default_next for route in step.replies]
        others = [step.on_other, step.on_timeout]
        return routes + [target if target is not None else default_next for target in others]
    if isinstance(step, HttpRequestStep):
        return [default_next] + ([step.on_failure] if step.on_failure is not None else [])
    return [default_next]


def successors(defn: JourneyDefinition, ids: dict[int, Position]) -> dict[Position, list[Position]]:
    """Where each step can go next (a step ending the instance, or failing it, has no successor)."""
    result: dict[Position, list[Position]] = {}
    for fi, flow in enumerate(defn.flows):
        for si, step in enumerate(flow.steps):
            following = flow.steps[si + 1].id if si + 1 < len(flow.steps) else None
            default_next = step.next if step.next is not None else following
            targets: list[Position] = []
            for target in _targets(step, default_next):
                pos = ids.get(target) if target is not None else None  # None: falling off the end
                if pos is not None and pos not in targets:
                    targets.append(pos)
            result[(fi, si)] = targets
    return result


def check_reachable(
    defn: JourneyDefinition, successors: dict[Position, list[Position]], problems: list[Problem]
) -> None:
    reached: set[Position] = set()
    queue: deque[Position] = deque((fi, 0) for fi in range(len(defn.flows)))
    while queue:
        pos = queue.popleft()
        if pos in reached:
            continue
        reached.add(pos)
        queue.extend(p for p in successors[pos] if p not in reached)
    for pos in successors:
        if pos not in reached:
            step = defn.flows[pos[0]].steps[pos[1]]
            problems.append(Problem(f"step {step.id} is unreachable", step_path(pos)))


def check_loops(
    defn: JourneyDefinition, successors: dict[Position, list[Position]], problems: list[Problem]
) -> None:
    """Find loops made only of steps that do not wait: each is reported once, at its first step,
    with the shortest cycle through that step as the example."""

    def waits(pos: Position) -> bool:
        return defn.flows[pos[0]].steps[pos[1]].type in WAITING_STEP_TYPES

    graph = {
        pos: [p for p in targets if not waits(p)] for pos, targets in successors.items() if not waits(pos)
    }
    for component in _strongly_connected(graph):
        start = min(component)
        if len(component) == 1 and start not in graph[start]:
            continue
        cycle = _shortest_cycle(graph, start, component)
        ids = " -> ".join(str(defn.flows[p[0]].steps[p[1]].id) for p in cycle + [start])
        problems.append(
            Problem(
                f"steps {ids} form a loop with no wait, wait_until or wait_for_reply step, "
                "so it would repeat without pause",
                step_path(start),
            )
        )


def _strongly_connected(graph: dict[Position, list[Position]]) -> list[set[Position]]:
    """Tarjan's algorithm, iteratively; components in order of their smallest position."""
    index: dict[Position, int] = {}
    low: dict[Position, int] = {}
    on_stack: set[Position] = set()
    stack: list[Position] = []
    components: list[set[Position]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[Position, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            edges = graph[node]
            if i < len(edges):
                work.append((node, i + 1))
                child = edges[i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: set[Position] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return sorted(components, key=min)


def _shortest_cycle(
    graph: dict[Position, list[Position]], start: Position, within: set[Position]
) -> list[Position]:
    """The shortest path start -> ... -> start inside `within` (without repeating start)."""
    parent: dict[Position, Position] = {}
    queue: deque[Position] = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for child in graph[node]:
            if child not in within:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return path[::-1]
            if child not in seen:
                seen.add(child)
                parent[child] = node
                queue.append(child)
    return [start]  # pragma: no cover - a component with a cycle always has one through start
