"""Stored histories of the shipped journeys replay on today's workflow code without non-determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from trouw.worker import WORKFLOWS, workflow_runner

HISTORIES = sorted((Path(__file__).parent / "histories").rglob("*.json"))
HISTORY_BY_NAME = {
    f"{p.parent.name}/{p.stem}": WorkflowHistory.from_json(p.stem, p.read_text(encoding="utf-8"))
    for p in HISTORIES
}


@pytest.mark.parametrize("version", ["v1", "v2", "v3", "v4", "v5", "v6", "current"])
def test_histories_cover_every_shipped_journey(version: str) -> None:
    names = {path.name for path in HISTORIES if path.parent.name == version}
    for journey in (
        "post_purchase",
        "refill",
        "reactivation",
        "birthday",
        "enrichment",
        "voucher_expiry",
    ):
        assert any(f"_{journey}_" in name for name in names), f"no stored history of {journey}"
    assert any(name.startswith("customer_") for name in names)


@pytest.mark.parametrize("path", HISTORIES, ids=[f"{p.parent.name}/{p.stem}" for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    history = HISTORY_BY_NAME[f"{path.parent.name}/{path.stem}"]
    replayer = Replayer(
        workflows=list(WORKFLOWS),
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
