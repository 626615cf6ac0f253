"""Logging for the long-running commands: text lines, or one JSON object a line (TROUW_LOG_FORMAT).

A JSON line carries the customer, journey and message key of the work that logged it: the
activities set them with `log_context`, and every record logged inside (in threads started by
`asyncio.to_thread` too, which copy the context) gets them, so a log search by customer finds
every line about that customer.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
CONTEXT_KEYS = ("customer", "journey", "message_key", "workflow_id", "event_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("trouw_log_context")


@contextlib.contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    """Add these keys (customer, journey, message_key, ...) to every record logged inside."""
    merged = {**_context.get({}), **{key: v for key, v in values.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    return dict(_context.get({}))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, context keys, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(current_context())
        for key in CONTEXT_KEYS:  # `extra={"customer": ...}` on one call wins over the context
            value = record.__dict__.get(key)
            if value is not None:
                line[key] = str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(*, verbose: bool, log_format: LogFormat) -> None:
    """Root logging for `trouw worker`, `trouw api` and `trouw up` (stderr)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
