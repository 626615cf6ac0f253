"""Runs whose first step is a wait wait inside the customer workflow (no workflow of their own)
and end there when an event ends them (a repeat purchase ends the waiting reactivation and
refill). Customer workflows of the engine before held such runs (tests/replay keeps those)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import ROOT
from tests.workflows.scenario import write_scenario
from trouw.commands.simulate import load_scenario, simulate

CUSTOMERS = [{"id": "h1", "first_name": "Hanne", "email": "h1@example.com", "locale": "nl-BE"}]
EVENTS = [
    {
        "at": "0d",
        "type": "purchase",
        "customer": "h1",
        "order": "o1",
        "channel": "pos",
        "lines": [{"sku": "LAWN-10"}],
    },
    {
        "at": "30d",
        "type": "purchase",
        "customer": "h1",
        "order": "o2",
        "channel": "pos",
        "lines": [{"sku": "LAWN-10"}],
    },
]


async def test_a_repeat_purchase_ends_waiting_runs_inside_the_customer_workflow(
    tmp_path: Path,
) -> None:
    path = write_scenario(tmp_path / "held.yaml", customers=CUSTOMERS, events=EVENTS)
    runs: dict[str, list[Any]] = {}
    result = await simulate(
        load_scenario(path),
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        workdir=tmp_path / "sim",
        run_histories=runs,
    )
    ended = {
        (entry.journey, entry.workflow_id): (entry.outcome, entry.step, entry.reason, entry.at)
        for entry in result.runs
        if entry.outcome == "exited"
    }
    for journey, workflow_id in (
        ("reactivation", "journey:h1:reactivation:o1"),
        ("refill", "journey:h1:refill:o1:LAWN-10"),
    ):
        outcome, step, reason, at = ended[(journey, workflow_id)]
        assert (outcome, reason) == ("exited", "exit on purchase")
        # at the second purchase (10:00 in summer time)
        assert step is not None and at.startswith("2026-04-01T10:00")
    # the second order's refill waited too, and sent its reminder when its wait ended
    reminders = [e for e in result.timeline if e.template == "refill_reminder"]
    assert [(e.outcome, e.at[:16]) for e in reminders] == [("sent", "2026-05-26T10:00")]
    completed = {(e.workflow_id, e.outcome) for e in result.runs if e.outcome == "completed"}
    assert ("journey:h1:refill:o2:LAWN-10", "completed") in completed
    assert set(runs) == {"customer:h1"}  # every run inside it: no workflow of its own
