"""The journey expression language: Jinja2 expressions in a sandbox, evaluated deterministically."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from trouw.language.journey.durations import DurationError, parse_duration


class ExpressionError(ValueError):
    """An expression that does not parse or cannot be evaluated."""


def _days(n: float) -> timedelta:
    return timedelta(days=n)


def _hours(n: float) -> timedelta:
    return timedelta(hours=n)


def _weeks(n: float) -> timedelta:
    return timedelta(weeks=n)


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise ExpressionError(str(exc)) from None


def to_datetime(value: Any) -> datetime | date | None:
    """Accept a datetime, a date or an ISO 8601 string (as the context may carry either)."""
    if value is None or isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return date.fromisoformat(value)
            return datetime.fromisoformat(value)
        except ValueError:
            raise ExpressionError(f"not a date: {value!r}") from None
    raise ExpressionError(f"not a date: {value!r}")


def next_anniversary(day: Any, after: Any) -> date | None:
    """The next date on or after `after` with the month and day of `day` (29 Feb -> 28 Feb)."""
    base = to_datetime(day)
    ref = to_datetime(after)
    if base is None or ref is None:
        return None
    ref_day = ref.date() if isinstance(ref, datetime) else ref
    for year in (ref_day.year, ref_day.year + 1):
        try:
            candidate = date(year, base.month, base.day)
        except ValueError:
            candidate = date(year, base.month, 28)
        if candidate >= ref_day:
            return candidate
    return None


def _env() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    functions: dict[str, Callable[..., Any]] = {
        "days": _days,
        "hours": _hours,
        "weeks": _weeks,
        "duration": _duration,
        "date": to_datetime,
        "next_anniversary": next_anniversary,
    }
    env.globals.update(functions)
    env.filters["date"] = to_datetime
    return env


_ENV = _env()


def environment() -> ImmutableSandboxedEnvironment:
    """The one sandbox expressions run in (the checker parses with it too)."""
    return _ENV


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Callable[..., Any]:
    """Compile once; raises ExpressionError with the parser's message."""
    try:
        return _ENV.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"expression does not parse: {exc.message}") from None


def check_expression(source: str) -> None:
    compile_expression(source)


def evaluate(source: str, context: Mapping[str, Any]) -> Any:
    """Evaluate an expression over the context; unknown names are errors, never blanks."""
    expression = compile_expression(source)
    try:
        return expression(**context)
    except UndefinedError as exc:
        raise ExpressionError(f"{source!r}: {exc.message}") from None
    except SecurityError as exc:
        raise ExpressionError(f"{source!r}: not allowed ({exc})") from None
    except (TypeError, ValueError, ArithmeticError, AttributeError) as exc:
        raise ExpressionError(f"{source!r}: {exc}") from None


def truthy(source: str, context: Mapping[str, Any]) -> bool:
    return bool(evaluate(source, context))


def resolve_moment(value: Any, *, tz: str, at: time | None, default_time: time) -> datetime:
    """A date or datetime from an expression, as an aware UTC moment in the customer's zone."""
    moment = to_datetime(value)
    if moment is None:
        raise ExpressionError("the date is empty")
    zone = ZoneInfo(tz)
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        if at is not None:
            local = moment.astimezone(zone)
            moment = datetime.combine(local.date(), at, tzinfo=zone)
        return moment.astimezone(UTC)
    return datetime.combine(moment, at or default_time, tzinfo=zone).astimezone(UTC)


def next_local_time(now: datetime, at: time, tz: str) -> datetime:
    """The next moment (strictly after now) whose local wall-clock time is `at`."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(UTC)


def bucket(*parts: str) -> float:
    """A stable number in [0, 1) from the parts: the same customer always lands in one arm."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
