"""Plain data both ways: values to JSON for histories and payloads, ISO strings back to dates."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def hydrate(value: Any) -> Any:
    """A deep copy of value with ISO 8601 strings parsed; pure, so safe in workflow code."""
    if isinstance(value, dict):
        return {key: hydrate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [hydrate(item) for item in value]
    if isinstance(value, str):
        if _DATETIME.match(value):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return value
        if _DATE.match(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                return value
    return value


def jsonable(value: Any, *, money: Callable[[Decimal], Any] = float) -> Any:
    """Plain JSON, so the value travels through Temporal and back unchanged (with `hydrate`):
    dates as ISO strings, durations as seconds; money as numbers (for workflow conditions) by
    default, or as exact strings with `money=str` (stored payloads, exports). Pure."""
    if isinstance(value, dict):
        return {str(key): jsonable(item, money=money) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item, money=money) for item in value]
    if isinstance(value, Decimal):
        return money(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value
