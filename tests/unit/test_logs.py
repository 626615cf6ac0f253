"""JSON logs (TROUW_LOG_FORMAT=json): one object a line, with the customer, journey and message
key of the work that logged it, also from a thread started inside that work."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from trouw.settings import load_settings
from trouw.stack.logs import JsonFormatter, configure_logging, log_context


def capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("trouw.test-json")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


async def test_json_lines_carry_customer_journey_and_message_key() -> None:
    logger, stream = capture()
    with log_context(customer="c1", journey="post_purchase", message_key="m:c1:1"):
        logger.warning("provider slow: %s", "sendgrid")
        # activities do their database work in a thread: the context goes along
        await asyncio.to_thread(logger.error, "in a thread")
    logger.info("outside")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "provider slow: sendgrid",
        "in a thread",
        "outside",
    ]
    for line in lines[:2]:
        assert line["customer"] == "c1"
        assert line["journey"] == "post_purchase"
        assert line["message_key"] == "m:c1:1"
        assert line["logger"] == "trouw.test-json" and line["time"].endswith("+00:00")
    assert "customer" not in lines[2]
    assert lines[1]["level"] == "ERROR"


def test_exception_and_extra_travel_in_the_object() -> None:
    logger, stream = capture()
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logger.exception("failed", extra={"customer": "c9"})
    (line,) = stream.getvalue().splitlines()  # the traceback's line breaks stay inside the JSON
    record = json.loads(line)
    assert record["customer"] == "c9" and "ValueError: bad" in record["exception"]


def test_log_format_setting_selects_the_formatter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TROUW_LOG_FORMAT", "json")
    settings = load_settings()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(verbose=False, log_format=settings.log_format)
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        configure_logging(verbose=True, log_format="text")
        assert not isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.INFO
    finally:
        root.handlers, root.level = saved[0], saved[1]
