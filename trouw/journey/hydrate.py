"""Turns ISO strings in a JSON context back into dates, so expressions can do date arithmetic."""

from __future__ import annotations

import re
from datetime import date, datetime
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
