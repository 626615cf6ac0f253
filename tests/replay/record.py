"""Records workflow histories of the shipped journeys for the replay tests.

Run after a deliberate change of workflow behaviour (new histories), never to silence a failing
replay test: `python -m tests.replay.record`. Histories are JSON in tests/replay/histories/.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tests.conftest import ROOT
from tests.workflows import test_shipped_journeys, test_unsubscribe_scope
from tests.workflows.scenario import write_scenario
from trouw.commands.simulate import load_scenario, simulate

# Each engine version's histories stay: v1 before the parallel child starts, v2 before an exit
# on an unsubscribe let a run's transactional messages through, v3 before the engine-efficiency
# changes (docs/performance.md, "Temporal work per purchase"), v4 before runs whose first step is
# a wait were held in the customer workflow, v5 before the customer workflow ended held runs
# itself, v6 before a send's first attempt became a local activity, v7 before journey runs ran
# inside the customer workflow (child workflows, each with a history of its own), current after:
# every run's steps are in its customer workflow's history.
HISTORIES = Path(__file__).parent / "histories" / "current"


async def record() -> list[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="trouw-record-"))
    try:
        histories: dict[str, Any] = {}
        for index, scenario in enumerate((test_shipped_journeys, test_unsubscribe_scope)):
            path = write_scenario(
                workdir / f"scenario{index}.yaml",
                customers=scenario.CUSTOMERS,
                events=scenario.EVENTS,
            )
            await simulate(
                load_scenario(path),
                journeys_dir=ROOT / "journeys",
                templates_dir=ROOT / "templates",
                workdir=workdir / f"sim{index}",
                histories=histories,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return write_histories(histories, HISTORIES)


async def scenario_histories(
    journeys: Path,
    workdir: Path,
    *,
    customers: list[dict[str, Any]],
    events: list[dict[str, Any]],
    until: str,
) -> dict[str, Any]:
    """Simulate a scenario over the journeys in a folder: each workflow's history by its id."""
    path = write_scenario(
        workdir / "scenario.yaml", customers=customers, events=events, until=until
    )
    histories: dict[str, Any] = {}
    await simulate(
        load_scenario(path),
        journeys_dir=journeys,
        templates_dir=ROOT / "templates",
        workdir=workdir / "sim",
        histories=histories,
    )
    return histories


def write_histories(histories: dict[str, Any], folder: Path) -> list[Path]:
    """One JSON file per workflow id in folder, the form tests/replay reads back."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for workflow_id, history in sorted(histories.items()):
        target = folder / (re.sub(r"[^A-Za-z0-9_.-]", "_", workflow_id) + ".json")
        target.write_text(history.to_json(), encoding="utf-8")
        written.append(target)
    return written


if __name__ == "__main__":
    files = asyncio.run(record())
    print(f"{len(files)} histories written to {HISTORIES}")  # noqa: T201
