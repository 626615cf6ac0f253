"""Stored histories of the shipped journeys replay on today's workflow code without non-determinism."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import CancelledError, FailureError
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    Replayer,
    StartLocalActivityInput,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
    WorkflowRunner,
)
from temporalio.workflow import ActivityHandle, ContinueAsNewError

from trouw.stack.worker import WORKFLOWS, workflow_runner

HISTORIES = sorted((Path(__file__).parent / "histories").rglob("*.json"))
HISTORY_BY_NAME = {
    f"{p.parent.name}/{p.stem}": WorkflowHistory.from_json(p.stem, p.read_text(encoding="utf-8"))
    for p in HISTORIES
}


SHIPPED = ("post_purchase", "refill", "reactivation", "birthday", "enrichment", "voucher_expiry")


@pytest.mark.parametrize("version", ["v1", "v2", "v3", "v4", "v5", "v6", "v7"])
def test_histories_cover_every_shipped_journey(version: str) -> None:
    names = {path.name for path in HISTORIES if path.parent.name == version}
    for journey in SHIPPED:
        assert any(f"_{journey}_" in name for name in names), f"no stored history of {journey}"
    assert any(name.startswith("customer_") for name in names)


def test_histories_of_runs_inside_the_customer_workflow_cover_every_shipped_journey() -> None:
    """Since journey runs run inside the customer workflow, their steps are in its history: the
    runs match_journeys planned there (the result of its local activity) name their journeys."""
    current = [path for path in HISTORIES if path.parent.name == "current"]
    assert current and all(path.name.startswith("customer_") for path in current)
    planned: set[str] = set()
    for path in current:
        history = HISTORY_BY_NAME[f"{path.parent.name}/{path.stem}"]
        for event in history.events:
            attributes = event.marker_recorded_event_attributes
            if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
                continue
            data = json.loads(attributes.details["data"].payloads[0].data)
            if data["activity_type"] != "match_journeys" or "result" not in attributes.details:
                continue
            result = json.loads(attributes.details["result"].payloads[0].data)
            planned |= {run["journey"] for run in (result or {}).get("runs", [])}
    assert set(SHIPPED) <= planned, f"no run of {sorted(set(SHIPPED) - planned)}"


@pytest.mark.parametrize("path", HISTORIES, ids=[f"{p.parent.name}/{p.stem}" for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    await replays(path, workflow_runner())


async def replays(path: Path, runner: WorkflowRunner, *interceptors: Interceptor) -> None:
    """The stored history at path replays on today's workflow code without a failure."""
    history = HISTORY_BY_NAME[f"{path.parent.name}/{path.stem}"]
    replayer = Replayer(
        workflows=list(WORKFLOWS),
        data_converter=pydantic_data_converter,
        workflow_runner=runner,
        interceptors=interceptors,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


# What the replayer leaves unchecked: a local activity's marker is matched by its sequence
# number, not its type (a give_up_send where the history ran a send_message replays), and the
# run's end is not compared with the history's. Both are checked here, from what the workflow
# asked for during the replay (unsandboxed: the interceptor's record outlives the workflow).
ENDS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "completed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: "cancelled",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "failed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continued",
}
_replayed: dict[str, list[str]] = {}


class _Outbound(WorkflowOutboundInterceptor):
    def start_local_activity(self, input: StartLocalActivityInput) -> ActivityHandle[Any]:
        # Not what a workflow asks for while the replayer evicts it at the history's end (the
        # SDK cancels its tasks then; a run's cancellation handler asks to record the run, a
        # command never sent): the workflow instance is the running event loop.
        if not getattr(asyncio.get_running_loop(), "_deleting", False):
            _replayed[workflow.info().workflow_id].append(input.activity)
        return super().start_local_activity(input)


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        seen = _replayed[workflow.info().workflow_id]
        try:
            result = await super().execute_workflow(input)
        except ContinueAsNewError:
            seen.append("end: continued")
            raise
        except (asyncio.CancelledError, CancelledError):
            seen.append("end: cancelled")
            raise
        except FailureError:
            seen.append("end: failed")
            raise
        seen.append("end: completed")
        return result


class _Recording(Interceptor):
    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _Inbound


def _asked_in_history(history: WorkflowHistory) -> list[str]:
    """The local activities of the history's markers, in their order, and how the run ended."""
    # In the order they were asked (their sequence number): local activities of runs inside the
    # customer workflow run side by side, and a marker is recorded when its activity is done.
    asked: list[tuple[int, str]] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            attributes = event.marker_recorded_event_attributes
            if attributes.marker_name == "core_local_activity":
                data = json.loads(attributes.details["data"].payloads[0].data)
                asked.append((data["seq"], data["activity_type"]))
    end = ENDS.get(history.events[-1].event_type)
    return [name for _seq, name in sorted(asked)] + ([f"end: {end}"] if end else [])


@pytest.mark.parametrize("path", HISTORIES, ids=[f"{p.parent.name}/{p.stem}" for p in HISTORIES])
async def test_history_replays_the_same_local_activities_and_end(path: Path) -> None:
    history = HISTORY_BY_NAME[f"{path.parent.name}/{path.stem}"]
    _replayed[history.workflow_id] = []
    await replays(path, UnsandboxedWorkflowRunner(), _Recording())
    expected = _asked_in_history(history)
    replayed = _replayed.pop(history.workflow_id)
    if not expected or not expected[-1].startswith("end: "):
        replayed = [asked for asked in replayed if not asked.startswith("end: ")]
    assert replayed == expected
