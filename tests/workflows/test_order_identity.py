"""An order sent again under a new event id is the same order: it starts and ends nothing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.conftest import ROOT
from tests.workflows.scenario import of, run, write_scenario


def _local(at: str) -> str:
    return datetime.fromisoformat(at).strftime("%Y-%m-%d %H:%M")


async def test_a_resent_old_order_keeps_the_runs_of_the_newer_one(tmp_path: Path) -> None:
    lawn = [{"sku": "LAWN-10", "qty": 1}]
    path = write_scenario(
        tmp_path / "scenario.yaml",
        customers=[{"id": "c1", "first_name": "Sophie", "email": "c1@example.com"}],
        events=[
            {
                "at": "0d",
                "type": "purchase",
                "customer": "c1",
                "order": "o1",
                "channel": "pos",
                "lines": lawn,
            },
            {
                "at": "30d",
                "type": "purchase",
                "customer": "c1",
                "order": "o2",
                "channel": "pos",
                "lines": lawn,
            },
            # the till sends order o1 again, under its own event id
            {
                "at": "40d",
                "id": "till-o1",
                "type": "purchase",
                "customer": "c1",
                "order": "o1",
                "channel": "pos",
                "lines": lawn,
            },
        ],
        until="215d",
    )
    _scenario, result = await run(path, ROOT / "journeys", ROOT / "templates")
    # o2's refill reminder (60 days after day 30, 5 days early, 10:00) and its reactivation
    # message (180 days after day 30) both still go out; o1 is confirmed once.
    assert [(_local(e.at), e.outcome) for e in of(result, "c1", journey="refill")] == [
        ("2026-05-26 10:00", "sent")
    ]
    assert [_local(e.at)[:10] for e in of(result, "c1", journey="reactivation")] == ["2026-09-28"]
    assert len(of(result, "c1", template="order_confirmation")) == 2
