"""Records histories of a yearly journey whose split has a hold-out (histories/split_arms*/).

`python -m tests.replay.record_split_arms split_arms_v1` was run on the workflow code from before
hold-out arms were noted (the `split-arm-notes` patch); `... split_arms` on today's code. Run
after a deliberate change of that behaviour, never to silence a failing replay test.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType

import trouw.commands.simulate
from tests.conftest import ROOT
from tests.replay.record import write_histories
from tests.workflows.scenario import write_scenario
from trouw.commands.simulate import load_scenario, simulate

JOURNEY = """\
journey: yearly_split
trigger: {date: customer.birthday, every: year, at: "09:00"}
settings: {category: service}
steps:
  - id: ab
    split:
      - {name: mail, weight: 1}
      - {name: holdout, weight: 1, holdout: true}
  - {id: wishes, send: sms, template: delivery_notice}
"""
# h1 lands in the hold-out of yearly_split/ab, m1 in the mail arm (trouw.language.journey.split).
CUSTOMERS = ("h1", "m1")


async def _keep_every_cycle(env: Any, histories: dict[str, Any]) -> None:
    """The simulator keeps a workflow's latest run; the split happens in the first cycle, so
    walk each yearly run back through continue-as-new and keep every cycle's history."""
    for workflow_id, history in list(histories.items()):
        cycle = 0
        while True:
            started = history.events[0]
            assert started.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
            previous = (
                started.workflow_execution_started_event_attributes.continued_execution_run_id
            )
            if not previous:
                break
            cycle += 1
            handle = env.client.get_workflow_handle(workflow_id, run_id=previous)
            history = await handle.fetch_history()
            histories[f"{workflow_id}_cycle-{cycle}"] = history


async def record(folder: Path) -> list[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="trouw-record-"))
    try:
        journeys = workdir / "journeys"
        journeys.mkdir()
        (journeys / "yearly_split.yaml").write_text(JOURNEY, encoding="utf-8")
        customers = [
            {
                "id": cid,
                "first_name": "Ann",
                "phone": f"+3247000002{n}",
                "birthday": "1980-03-05",
            }
            for n, cid in enumerate(CUSTOMERS)
        ]
        events: list[dict[str, Any]] = [
            {"at": "0d", "type": "register", "customer": cid} for cid in CUSTOMERS
        ]
        path = write_scenario(
            workdir / "scenario.yaml", customers=customers, events=events, until="380d"
        )
        histories: dict[str, Any] = {}
        stop = trouw.commands.simulate._stop_customer

        async def stop_and_keep(env: Any, engine: Any, cid: str, kept: Any) -> None:
            found: dict[str, Any] = {}
            await stop(env, engine, cid, found)
            await _keep_every_cycle(env, found)
            histories.update(found)

        trouw.commands.simulate._stop_customer = stop_and_keep  # type: ignore[assignment]
        await simulate(
            load_scenario(path),
            journeys_dir=journeys,
            templates_dir=ROOT / "templates",
            workdir=workdir / "sim",
            histories={},
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return write_histories(histories, folder)


if __name__ == "__main__":
    target = Path(__file__).parent / "histories" / sys.argv[1]
    files = asyncio.run(record(target))
    print(f"{len(files)} histories written to {target}")  # noqa: T201
