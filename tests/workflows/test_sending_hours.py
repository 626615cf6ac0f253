"""Sending hours in the simulator: a deferred email lands in the next window, never at night."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.conftest import ROOT
from tests.workflows.scenario import of, run, write_scenario

TWO_TIPS = """\
journey: two_tips
trigger: {event: purchase}
settings: {category: service}
steps:
  - {id: first, send: email, template: care_tips}
  - {id: pause, wait: 1h}
  - {id: second, send: email, template: care_tips}
"""


async def test_an_email_deferred_by_smart_sending_waits_for_the_morning(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "two_tips.yaml").write_text(TWO_TIPS, encoding="utf-8")
    path = write_scenario(
        tmp_path / "scenario.yaml",
        customers=[{"id": "c1", "first_name": "Bart", "email": "c1@example.com"}],
        events=[
            {
                "at": "0d",
                "type": "purchase",
                "customer": "c1",
                "order": "o1",
                "channel": "pos",
                "lines": [{"sku": "LAWN-10"}],
            },
        ],
        until="3d",
    )
    _scenario, result = await run(path, journeys, ROOT / "templates")
    sent = [
        (e.step, datetime.fromisoformat(e.at).strftime("%Y-%m-%d %H:%M"), e.outcome)
        for e in of(result, "c1")
    ]
    # 16 hours of smart sending after 09:00 end at 01:00; email sending hours start at 08:00.
    assert sent == [
        ("first", "2026-03-02 09:00", "sent"),
        ("second", "2026-03-03 08:00", "sent"),
    ]
