"""The terminal report's step table: one column per engagement kind, each with its count."""

from __future__ import annotations

from typing import Any

from trouw.commands.terminal import console
from trouw.domain.measure.cli import print_report
from trouw.domain.measure.engagement import ENGAGEMENT_KINDS


def test_step_table_has_each_engagement_kind_with_its_count() -> None:
    counts = {kind: 101 + number for number, kind in enumerate(ENGAGEMENT_KINDS)}
    step: dict[str, Any] = {
        "step": "welcome",
        "channel": "email",
        "eligible": 900,
        "sent": 800,
        "suppressed": {},
        "deferred": 0,
        "orders": 3,
        "revenue": 42.0,
        **counts,
    }
    journey = {
        "journey": "welcome",
        "version": 1,
        "entered": 900,
        "converted": 3,
        "held_out": 0,
        "orders": 3,
        "revenue": 42.0,
        "steps": [step],
    }
    body = {"from": "a", "to": "b", "journeys": [journey], "methods": {}, "attributed_orders": 3}

    with console.capture() as captured:
        print_report(body)

    header, row = (
        line
        for line in captured.get().splitlines()
        if line.strip().startswith(("┃ step", "│ welcome"))
    )
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    names = [cell.strip() for cell in header.strip("┃ ").split("┃")]
    assert [dict(zip(names, cells, strict=True))[kind] for kind in ENGAGEMENT_KINDS] == [
        str(counts[kind]) for kind in ENGAGEMENT_KINDS
    ]
