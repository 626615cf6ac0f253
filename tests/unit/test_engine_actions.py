"""The per-purchase action counter (bench/engine_actions.py) applies Temporal Cloud's rules."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from tests.conftest import ROOT

HISTORIES = ROOT / "tests" / "replay" / "histories" / "v3"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "engine_actions", ROOT / "bench" / "engine_actions.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _history(name: str) -> WorkflowHistory:
    path = HISTORIES / f"{name}.json"
    return WorkflowHistory.from_json(path.stem, json.loads(path.read_text(encoding="utf-8")))


def _events(history: WorkflowHistory, kind: int) -> int:
    return sum(1 for event in history.events if event.event_type == kind)


def test_customer_workflow_counts_children_twice_and_signal_with_start_once() -> None:
    bench = _bench()
    customer = _history("customer_a1")
    work = bench.count_actions([customer], infer_upserts=False)
    children = _events(customer, EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED)
    assert children > 0
    assert work.actions["child"] == 2 * children
    assert work.actions["start"] == 1
    signalled = _events(customer, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    sent = _events(customer, EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED)
    # the signal that came with the start is part of the signal-with-start action
    assert work.actions["signal"] == signalled - 1 + sent
    assert work.actions["timer"] == _events(customer, EventType.EVENT_TYPE_TIMER_STARTED)
    assert work.events == len(list(customer.events))
    # only the patch marker's TemporalChangeVersion upsert happens here: not billed
    assert _events(customer, EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES) >= 1
    assert work.actions["upsert"] == 0


def test_journey_run_counts_activities_local_activity_tasks_and_inferred_upserts() -> None:
    bench = _bench()
    run = _history("journey_a1_post_purchase_o-a1")
    exact = bench.count_actions([run], infer_upserts=False)
    inferred = bench.count_actions([run])
    assert exact.actions["start"] == 0  # a child: counted where its parent asked for it
    assert exact.actions["activity"] == _events(run, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    markers = [
        e.marker_recorded_event_attributes.workflow_task_completed_event_id
        for e in run.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    assert exact.actions["local_activity"] == len(set(markers)) > 0
    timers = _events(run, EventType.EVENT_TYPE_TIMER_STARTED)
    assert inferred.actions["upsert"] - exact.actions["upsert"] == timers
    assert inferred.events == exact.events + timers


def test_window_cuts_events_after_the_moment() -> None:
    bench = _bench()
    run = _history("journey_a1_post_purchase_o-a1")
    start = bench.first_event_time([run])
    early = bench.count_actions([run], until=start, infer_upserts=False)
    whole = bench.count_actions([run], infer_upserts=False)
    assert 0 < early.events < whole.events
    assert early.total_actions <= whole.total_actions
