"""Whether an event ends a run (its goals and exit rules): pure, for a running or a held run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from trouw.language.journey import expressions
from trouw.language.journey.model import Journey


@dataclass(frozen=True)
class Ending:
    """The run ends on this event: converted by a goal, or exited by an exit rule."""

    outcome: Literal["converted", "exited"]
    reason: str
    goal: str | None = None  # the goal's name, when a goal converted the run


@dataclass(frozen=True)
class RunEvent:
    """What the rules see of an arriving event, and of the run it arrives at."""

    type: str
    scope: dict[str, Any]  # `event` in expressions: type, at, order_id and the event's data
    order_id: str | None
    skus: list[str]
    run_order_id: str | None
    run_skus: list[str]


def matches(match: str, event: RunEvent) -> bool:
    """`match: order` needs the run's order, `product` one of its products, `any` nothing."""
    if match == "order":
        return event.order_id is not None and event.order_id == event.run_order_id
    if match == "product":
        return bool(set(event.skus) & set(event.run_skus))
    return True


def ending(
    journey: Journey, event: RunEvent, *, scope: dict[str, Any], now: datetime
) -> Ending | None:
    """The first goal, then the first exit rule, that this event meets; `scope` is the run's
    context. A `when` that cannot be evaluated counts as false (the run goes on)."""
    for goal in journey.settings.goals:
        if goal.event == event.type and matches(goal.match, event):
            return Ending("converted", f"goal {goal.name}: {event.type}", goal.name)
    for rule in journey.settings.exit_on:
        if rule.event != event.type or not matches(rule.match, event):
            continue
        if rule.when:
            try:
                if not expressions.truthy(rule.when, {**scope, "event": event.scope, "now": now}):
                    continue
            except expressions.ExpressionError:
                continue
        return Ending("exited", f"exit on {event.type}")
    return None
