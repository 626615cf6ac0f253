"""Trigger planning, pure: which runs an event starts, their re-entry keys and workflow ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trouw.language.contracts import CustomerEvent
from trouw.language.journey import expressions
from trouw.language.journey.model import Journey
from trouw.language.journey.plain import hydrate, jsonable


def run_workflow_id(customer_id: str, journey: str, key: str) -> str:
    """A run's workflow id: one run per customer, journey and re-entry key."""
    return f"journey:{customer_id}:{journey}:{key}"


def _reentry_key(journey: Journey, event: CustomerEvent, scope: dict[str, Any]) -> str | None:
    rule = journey.trigger.reentry
    if journey.trigger.date is not None:
        return "date"
    if rule == "order":
        return event.order_id
    if rule == "customer":
        return "once"
    if rule == "event":
        return event.id
    value = _evaluate(rule, scope)
    return None if value in (None, "") else str(value)


class TriggerExpressionError(expressions.ExpressionError):
    """A trigger expression that failed, with its source (to find it in the journey file)."""

    def __init__(self, message: str, source: str) -> None:
        super().__init__(message)
        self.source = source


def _evaluate(source: str, scope: dict[str, Any]) -> Any:
    try:
        return expressions.evaluate(source, scope)
    except expressions.ExpressionError as exc:
        raise TriggerExpressionError(str(exc), source) from None


@dataclass(frozen=True)
class TriggerFailure:
    """A journey whose trigger could not be judged for this event: that journey alone fails."""

    journey: Journey
    reason: str
    expression: str | None = None


@dataclass(frozen=True)
class Refusal:
    """Why an event that a journey's trigger listens for starts no run of it."""

    journey: Journey
    reason: str
    expression: str | None = None


@dataclass(frozen=True)
class PlannedRun:
    """A run an event starts: its journey, re-entry key, the context it starts with, its skus."""

    journey: Journey
    key: str
    context: dict[str, Any]
    skus: list[str]


def plan_runs(
    journeys: list[Journey],
    event: CustomerEvent,
    context: dict[str, Any],
    now: datetime,
    refusals: list[Refusal] | None = None,
) -> tuple[list[PlannedRun], list[TriggerFailure]]:
    """Which runs an event starts, and the journeys whose trigger failed (a condition over data
    it did not expect).

    `refusals`, if given, receives each journey listening for this event whose condition or
    date said no."""
    plans: list[PlannedRun] = []
    failures: list[TriggerFailure] = []
    refused = refusals if refusals is not None else []
    base = {**hydrate(jsonable(context)), "event": {"type": event.type, **event.data}, "now": now}
    for journey in journeys:
        try:
            plans.extend(_plan_journey(journey, event, context, base, len(plans), refused))
        except expressions.ExpressionError as exc:
            source = exc.source if isinstance(exc, TriggerExpressionError) else None
            failures.append(TriggerFailure(journey, f"trigger: {exc}", source))
    return plans, failures


def listens_for_start(journey: Journey, event_type: str) -> bool:
    """Whether this event type can start a run of the journey (before any data is read)."""
    trigger = journey.trigger
    if trigger.event is not None and trigger.event not in (event_type, "any"):
        return False
    # A date journey starts when the customer is first known.
    return trigger.date is None or event_type in ("register", "purchase")


def _plan_journey(
    journey: Journey,
    event: CustomerEvent,
    context: dict[str, Any],
    base: dict[str, Any],
    planned: int,
    refused: list[Refusal],
) -> list[PlannedRun]:
    plans: list[PlannedRun] = []
    trigger = journey.trigger
    if not listens_for_start(journey, event.type):
        return plans
    if trigger.date is not None and _evaluate(trigger.date, base) in (None, ""):
        refused.append(Refusal(journey, "the trigger date is empty", trigger.date))
        return plans
    if trigger.when and not _evaluate(trigger.when, base):
        refused.append(Refusal(journey, "the trigger condition is false", trigger.when))
        return plans
    items: list[Any] = [None]
    if trigger.for_each:
        items = list(_evaluate(trigger.for_each, base) or [])
    for item in items:
        scope = dict(base)
        skus = list(event.skus)
        if trigger.for_each:
            scope[trigger.as_] = item
            sku = item.get("sku") if isinstance(item, dict) else None
            skus = [sku] if sku else skus
        key = _reentry_key(journey, event, scope)
        if key is None:
            continue
        if trigger.for_each and trigger.reentry in ("order", "event"):
            key = f"{key}:{skus[0] if skus else planned + len(plans)}"
        run_context = dict(context)
        run_context["trigger"] = {
            "type": event.type,
            "at": event.at,
            "order_id": event.order_id,
            **event.data,
        }
        if trigger.for_each:
            run_context[trigger.as_] = item
            if isinstance(item, dict) and item.get("product"):
                run_context["product"] = item["product"]
        plans.append(PlannedRun(journey, key, run_context, skus))
    return plans
