"""Pure graph logic over a journey's steps: successors, reachability and the cutoff check."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta

from trouw.language.journey.durations import parse_duration
from trouw.language.journey.model import (
    BranchStep,
    ExitStep,
    GoalStep,
    Journey,
    SendStep,
    SplitStep,
    StepBase,
    WaitForStep,
    WaitStep,
)


def default_next(journey: Journey, step_id: str) -> str | None:
    """The step that follows step_id when nothing else is said: its `next`, else the one below."""
    ids = [step.id for step in journey.steps]
    step = journey.step(step_id)
    if step.next:
        return step.next
    index = ids.index(step_id)
    return ids[index + 1] if index + 1 < len(ids) else None


# Steps that did not parse: by id, the steps they name besides the next one (None: any step).
# A step that names a step that does not exist simply does not lead there.
Loose = Mapping[str, Sequence[str] | None]


def edges(
    journey: Journey, step: StepBase, loose: Loose | None = None
) -> Iterator[tuple[str | None, timedelta]]:
    """Each way out of a step with the least time it takes (None: the run ends).

    A loose step leads to where it may lead at once, so what is still unreachable or late is
    so whatever that step turns out to be."""
    follow = default_next(journey, step.id)
    if loose is not None and step.id in loose:
        named = loose[step.id]
        for other in [s.id for s in journey.steps] if named is None else named:
            yield other, timedelta()
        yield follow, timedelta()
        return
    if isinstance(step, GoalStep | ExitStep):
        return
    if isinstance(step, BranchStep):
        for case in step.branch:
            yield case.goto, timedelta()
        yield step.else_ or follow, timedelta()
    elif isinstance(step, SplitStep):
        for arm in step.split:
            if not arm.holdout:
                yield arm.goto or follow, timedelta()
    elif isinstance(step, WaitForStep):
        yield follow, timedelta()
        yield step.on_timeout or follow, parse_duration(step.timeout)
    elif isinstance(step, WaitStep):
        yield follow, parse_duration(step.wait)
    else:
        yield follow, timedelta()


def targets(step: StepBase) -> Iterator[tuple[list[object], str]]:
    """Every step id a step names, with where in the step it is written."""
    if step.next:
        yield ["next"], step.next
    if isinstance(step, BranchStep):
        for number, case in enumerate(step.branch):
            yield ["branch", number, "goto"], case.goto
        if step.else_:
            yield ["else"], step.else_
    elif isinstance(step, SplitStep):
        for number, arm in enumerate(step.split):
            if arm.goto:
                yield ["split", number, "goto"], arm.goto
    elif isinstance(step, WaitForStep) and step.on_timeout:
        yield ["on_timeout"], step.on_timeout


def earliest(journey: Journey, loose: Loose | None = None) -> dict[str, timedelta]:
    """The least time after the trigger at which each reachable step can run."""
    start = journey.steps[0].id
    best: dict[str, timedelta] = {start: timedelta()}
    queue: list[tuple[timedelta, str]] = [(timedelta(), start)]
    known = {step.id for step in journey.steps}
    while queue:
        elapsed, step_id = heapq.heappop(queue)
        if elapsed > best.get(step_id, elapsed):
            continue
        for target, cost in edges(journey, journey.step(step_id), loose):
            if target is None or target not in known:
                continue
            total = elapsed + cost
            if target not in best or total < best[target]:
                best[target] = total
                heapq.heappush(queue, (total, target))
    return best


def structure_problems(
    journey: Journey, *, loose: Loose | None = None
) -> list[tuple[list[object], str]]:
    """Problems with the shape of the step graph, as (path in the file, message).

    `loose`: steps that did not parse and where they may lead (see `edges`)."""
    loose = dict(loose or {})
    problems: list[tuple[list[object], str]] = []
    seen: dict[str, int] = {}
    for index, step in enumerate(journey.steps):
        if step.id in seen:
            problems.append(
                (
                    ["steps", index, "id"],
                    f"step id '{step.id}' is used twice (see step #{seen[step.id] + 1})",
                )
            )
        seen.setdefault(step.id, index)
    if problems:
        return problems  # with two steps of one id, no step can be told from the other
    for index, step in enumerate(journey.steps):
        for where, target in targets(step):
            if target not in seen:
                key = str(where[-1])
                problems.append(
                    (
                        ["steps", index, *where],
                        f"step {step.id}: {key} names unknown step '{target}'",
                    )
                )
    reachable = earliest(journey, loose)
    for index, step in enumerate(journey.steps):
        if step.id not in reachable:
            problems.append((["steps", index, "id"], f"step {step.id}: unreachable"))
    cutoff = journey.cutoff
    for index, step in enumerate(journey.steps):
        if not isinstance(step, SendStep) or step.id not in reachable:
            continue
        category = step.category or journey.settings.category
        if category == "service" and reachable[step.id] > cutoff:
            problems.append(
                (
                    ["steps", index, "send"],
                    f"step {step.id}: a service message that can only happen after the "
                    f"service cutoff ({journey.settings.service_cutoff}) would never be sent",
                )
            )
    return problems
