"""When a wait ends: pure date arithmetic shared by the journey run and the trigger planner."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from trouw.language.journey import expressions
from trouw.language.journey.durations import parse_duration
from trouw.language.journey.model import (
    Journey,
    WaitStep,
    WaitUntilSpec,
    WaitUntilStep,
    parse_clock,
)

DEFAULT_TIMEZONE = "Europe/Brussels"


def timezone_of(scope: dict[str, Any]) -> str:
    """The customer's time zone from a run's scope (Brussels when it has none)."""
    customer = scope.get("customer") or {}
    return str(customer.get("timezone") or DEFAULT_TIMEZONE)


def wait_until_moment(
    spec: WaitUntilSpec, value: Any, *, now: datetime, tz: str
) -> datetime | None:
    """The end of a `wait_until` whose date expression gave `value`; None when that date is
    empty (the run goes on at once)."""
    at = parse_clock(spec.time) if spec.time else None
    if spec.date:
        if value is None:
            return None
        moment = expressions.resolve_moment(value, tz=tz, at=at, default_time=parse_clock("09:00"))
    else:
        assert at is not None  # the model requires a date or a time
        moment = expressions.next_local_time(now, at, tz)
    return moment + spec.offset_delta()


def first_wait_end(journey: Journey, scope: dict[str, Any], now: datetime) -> datetime | None:
    """When a new run's first step, a wait, ends: until then the run has nothing to do.

    None when the run has something to do at once: its first step is not a wait, its wait's
    date is empty or cannot be evaluated here (the run then meets the problem itself, as before),
    or the journey waits for a date trigger (birthday) first. `scope` is the run's own context.
    """
    if journey.trigger.date is not None:
        return None
    step = journey.steps[0]
    if isinstance(step, WaitStep):
        return now + parse_duration(step.wait)
    if isinstance(step, WaitUntilStep):
        spec = step.wait_until
        value = None
        if spec.date:
            try:
                value = expressions.evaluate(spec.date, {**scope, "now": now})
            except expressions.ExpressionError:
                return None
        try:
            return wait_until_moment(spec, value, now=now, tz=timezone_of(scope))
        except (expressions.ExpressionError, ValueError, KeyError):
            return None
    return None
