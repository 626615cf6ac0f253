"""Durations as marketers write them: 3d, 12h, 90m, 2w, 1d12h."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)\s*([wdhms])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[wdhms]\s*)+$")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


class DurationError(ValueError):
    """Not a duration; the message shows the accepted form."""


def parse_duration(text: str | int) -> timedelta:
    """Parse '3d', '12h', '1d12h', '90m', '2w' (an int means days)."""
    if isinstance(text, bool):
        raise DurationError(f"bad duration {text!r}: write it like 3d, 12h, 90m or 2w")
    if isinstance(text, int):
        return timedelta(days=text)
    if not isinstance(text, str) or not _WHOLE.match(text):
        raise DurationError(f"bad duration {text!r}: write it like 3d, 12h, 90m or 2w")
    total = timedelta()
    for amount, unit in _PART.findall(text):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    return total


def format_duration(delta: timedelta) -> str:
    """The shortest readable form: 1d12h, 3d, 90m -> 1h30m."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)
