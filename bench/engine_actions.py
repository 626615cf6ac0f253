"""Temporal work per purchase, counted from histories: workflows, history events, billable actions.

Run: .venv/bin/python bench/engine_actions.py [--json]
Simulates one new web customer's purchase of three lines over its whole life (confirmation,
delivery, care tips, review request, refill reminder, birthday question, reactivation) on the
time-skipping server with search attributes on, as in production, and counts what Temporal
recorded in every history of every run (continue-as-new chains followed), over the first hour
after the purchase and over the whole 400 days. Not a test: nothing here asserts.

Importable: `purchase_work()` returns the two `Work` counts; `count_actions(histories)` counts
any set of histories (bench/engine_bench.py uses both).

Counting rule, per Temporal Cloud's published action list
(docs.temporal.io/cloud/actions; github:temporalio/documentation,
docs/evaluate/temporal-cloud/actions.mdx), applied to history events:
- start: WorkflowExecutionStarted by a client (a signal-with-start is one action in all, so the
  signal recorded right after its start adds nothing); a child's or a continued run's start is
  counted where it was asked for (below).
- child: StartChildWorkflowExecutionInitiated counts 2 ("start" and "execution").
- continue_as_new: WorkflowExecutionContinuedAsNew counts 1.
- signal: each signal sent, by a client (WorkflowExecutionSignaled without a sending workflow)
  or by a workflow (SignalExternalWorkflowExecutionInitiated, counted at the sender only).
- timer: each TimerStarted (workflow.wait_condition with a timeout starts one too).
- upsert: each UpsertWorkflowSearchAttributes, unless it only sets TemporalChangeVersion.
  The time-skipping server knows no custom search attributes (it refuses Step and NextWakeup),
  so the simulation runs without them and the upserts a production run makes are added by rule:
  a journey run upserts Step and NextWakeup once before each of its waits, i.e. once per timer
  it starts (JourneyWorkflow._show); `infer_upserts=False` turns that off. A customer workflow
  with the runs inside (workflows/inline.py) logs each upsert it would make (the line
  UPSERT_NOT_MADE, with the workflow's time); those lines are counted, 1 event and 1 action each.
- activity: each attempt of an activity (ActivityTaskStarted's attempt number).
- local_activity: one per workflow task that recorded any local-activity marker.
- update: each accepted update (WorkflowExecutionUpdateAccepted).
Queries and heartbeats leave no event; Trouw sends neither in its normal course (the status
query runs only when an operator asks), so they are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import WorkflowHistory  # noqa: E402

from trouw.language.contracts import JOURNEY_WORKFLOW  # noqa: E402

ACTION_KINDS = (
    "start",
    "child",
    "continue_as_new",
    "signal",
    "timer",
    "upsert",
    "activity",
    "local_activity",
    "update",
)
LOCAL_ACTIVITY_MARKER = "core_local_activity"
CHANGE_VERSION = "TemporalChangeVersion"
FIRST_HOUR = timedelta(hours=1)


@dataclass
class Work:
    """What Temporal recorded for one purchase within one window."""

    window: str
    workflows: int = 0  # distinct workflow ids started in the window
    runs: int = 0  # executions, continue-as-new runs included
    events: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    events_by_workflow: Counter[str] = field(default_factory=Counter)
    actions_by_workflow: Counter[str] = field(default_factory=Counter)

    @property
    def total_actions(self) -> int:
        return sum(self.actions.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "workflows": self.workflows,
            "runs": self.runs,
            "history_events": self.events,
            "actions": self.total_actions,
            "actions_by_kind": {kind: self.actions[kind] for kind in ACTION_KINDS},
            "events_by_workflow": dict(sorted(self.events_by_workflow.items())),
            "actions_by_workflow": dict(sorted(self.actions_by_workflow.items())),
        }


def _kind(workflow_id: str) -> str:
    """customer:c1 -> customer; journey:c1:refill:o1:LAWN-10 -> refill."""
    parts = workflow_id.split(":")
    return parts[2] if parts[0] == "journey" and len(parts) > 2 else parts[0]


def is_journey_run(history: WorkflowHistory) -> bool:
    started = next(iter(history.events)).workflow_execution_started_event_attributes
    return started.workflow_type.name == JOURNEY_WORKFLOW


def event_actions(
    history: WorkflowHistory, until: datetime | None = None, *, infer_upserts: bool = True
) -> list[tuple[str, int]]:
    """(action kind, count) for each billable event of one run's history, up to `until`."""
    journey_run = is_journey_run(history)
    found: list[tuple[str, int]] = []
    local_tasks: set[int] = set()
    events = list(history.events)
    first = events[0].workflow_execution_started_event_attributes
    client_started = not first.HasField("parent_workflow_execution") and not (
        first.continued_execution_run_id
    )
    task_started = with_start_seen = False
    for event in events:
        if until is not None and event.event_time.ToDatetime().replace(tzinfo=until.tzinfo) > until:
            break
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            task_started = True
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            if client_started:
                found.append(("start", 1))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs = event.workflow_execution_signaled_event_attributes
            if client_started and not task_started and not with_start_seen:
                with_start_seen = True  # the signal of a signal-with-start: one action in all
            elif not attrs.HasField("external_workflow_execution"):
                found.append(("signal", 1))
        elif kind == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
            found.append(("signal", 1))
        elif kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            found.append(("child", 2))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            found.append(("continue_as_new", 1))
        elif kind == EventType.EVENT_TYPE_TIMER_STARTED:
            found.append(("timer", 1))
            if infer_upserts and journey_run:
                found.append(("upsert", 1))
        elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes
            names = set(fields.search_attributes.indexed_fields)
            if names - {CHANGE_VERSION}:
                found.append(("upsert", 1))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            found.append(("activity", max(1, event.activity_task_started_event_attributes.attempt)))
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            attrs = event.marker_recorded_event_attributes
            task = attrs.workflow_task_completed_event_id
            if attrs.marker_name == LOCAL_ACTIVITY_MARKER and task not in local_tasks:
                local_tasks.add(task)
                found.append(("local_activity", 1))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            found.append(("update", 1))
    return found


def count_actions(
    histories: Iterable[WorkflowHistory],
    *,
    window: str = "all",
    until: datetime | None = None,
    infer_upserts: bool = True,
    logged_upserts: Iterable[tuple[str, datetime]] = (),
) -> Work:
    """Workflows, runs, history events and billable actions of these histories (each one run);
    `logged_upserts` (workflow id, moment) are the upserts a run without search attributes
    logged instead of making (workflows/inline.py), counted as made."""
    work = Work(window=window)
    for workflow_id, moment in logged_upserts:
        if until is None or moment <= until:
            kind = _kind(workflow_id)
            work.events += 1
            work.events_by_workflow[kind] += 1
            work.actions["upsert"] += 1
            work.actions_by_workflow[kind] += 1
    workflow_ids: set[str] = set()
    for history in histories:
        events = list(history.events)
        if not events:
            continue
        if until is not None:
            events = [
                e for e in events if e.event_time.ToDatetime().replace(tzinfo=until.tzinfo) <= until
            ]
            if not events:
                continue
        kind = _kind(history.workflow_id)
        workflow_ids.add(history.workflow_id)
        work.runs += 1
        work.events += len(events)
        work.events_by_workflow[kind] += len(events)
        if infer_upserts and is_journey_run(history):
            upserts = sum(1 for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED)
            work.events += upserts  # each upsert is one history event too
            work.events_by_workflow[kind] += upserts
        for action, count in event_actions(history, until, infer_upserts=infer_upserts):
            work.actions[action] += count
            work.actions_by_workflow[kind] += count
    work.workflows = len(workflow_ids)
    return work


def first_event_time(histories: Iterable[WorkflowHistory]) -> datetime:
    from datetime import UTC

    return min(
        next(iter(h.events)).event_time.ToDatetime().replace(tzinfo=UTC)
        for h in histories
        if list(h.events)
    )


CUSTOMER = {
    "id": "n1",
    "first_name": "Nina",
    "email": "n1@example.com",
    "phone": "+32470000011",
    "locale": "nl-BE",
}
# A new customer's web order of three lines: a consumable (refill), a plant with care tips and
# a pot; delivered two days later. No birthday on file: the enrichment journey asks for it.
EVENTS = [
    {
        "at": "0d",
        "type": "purchase",
        "customer": "n1",
        "order": "w-1",
        "channel": "web",
        "lines": [{"sku": "LAWN-10"}, {"sku": "ROSE-01"}, {"sku": "POT-40"}],
    },
    {"at": "2d", "type": "delivered", "customer": "n1", "order": "w-1"},
]


class UpsertLog(logging.Handler):
    """Collects the upserts workflows log instead of making (workflows/inline.py)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.upserts: list[tuple[str, datetime]] = []

    def emit(self, record: logging.LogRecord) -> None:
        from workflows.inline import UPSERT_NOT_MADE

        message = record.getMessage()
        if not message.startswith(UPSERT_NOT_MADE):
            return
        moment = datetime.fromisoformat(message[len(UPSERT_NOT_MADE) + 4 :].split(": ", 1)[0])
        details = getattr(record, "temporal_workflow", None) or {}
        self.upserts.append((str(details.get("workflow_id", "customer")), moment))


async def purchase_histories(
    workdir: Path,
) -> tuple[list[WorkflowHistory], list[Any], list[tuple[str, datetime]]]:
    """Every run's history of one purchase's whole life (400 days), its message timeline, and
    the upserts logged instead of made."""
    from tests.workflows.scenario import write_scenario
    from trouw.commands.simulate import load_scenario, simulate

    path = write_scenario(workdir / "purchase.yaml", customers=[CUSTOMER], events=EVENTS)
    runs: dict[str, list[WorkflowHistory]] = {}
    log = UpsertLog()
    workflow_log = logging.getLogger("temporalio.workflow")
    level = workflow_log.level
    workflow_log.addHandler(log)
    workflow_log.setLevel(logging.DEBUG)
    try:
        result = await simulate(
            load_scenario(path),
            journeys_dir=ROOT / "journeys",
            templates_dir=ROOT / "templates",
            workdir=workdir / "sim",
            run_histories=runs,
            search_attributes=False,  # the time-skipping server has none (see upsert above)
        )
    finally:
        workflow_log.removeHandler(log)
        workflow_log.setLevel(level)
    return [h for chain in runs.values() for h in chain], list(result.timeline), log.upserts


def purchase_work() -> tuple[Work, Work, list[Any]]:
    """(first hour, whole life, message timeline) of one new web customer's purchase."""
    workdir = Path(tempfile.mkdtemp(prefix="trouw-actions-"))
    try:
        histories, timeline, upserts = asyncio.run(purchase_histories(workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    start = first_event_time(histories)
    hour = count_actions(
        histories, window="first hour", until=start + FIRST_HOUR, logged_upserts=upserts
    )
    life = count_actions(histories, window="whole life (400 days)", logged_upserts=upserts)
    return hour, life, timeline


def report(hour: Work, life: Work, timeline: list[Any]) -> str:
    lines = [
        "Temporal work of one purchase (new web customer, three lines), counted from histories",
        "",
        f"{'':28}{'first hour':>12}{'whole life':>12}",
        f"{'workflows started':28}{hour.workflows:>12}{life.workflows:>12}",
        f"{'runs (with continue-as-new)':28}{hour.runs:>12}{life.runs:>12}",
        f"{'history events':28}{hour.events:>12}{life.events:>12}",
        f"{'billable actions':28}{hour.total_actions:>12}{life.total_actions:>12}",
    ]
    lines += [
        f"{'  ' + kind:28}{hour.actions[kind]:>12}{life.actions[kind]:>12}" for kind in ACTION_KINDS
    ]
    lines += ["", "by workflow (whole life)", f"{'':28}{'events':>12}{'actions':>12}"]
    for kind in sorted(life.events_by_workflow):
        lines.append(
            f"{'  ' + kind:28}{life.events_by_workflow[kind]:>12}{life.actions_by_workflow[kind]:>12}"
        )
    sent = [e for e in timeline if e.outcome == "sent"]
    lines += ["", f"messages sent: {len(sent)} ({', '.join(e.template for e in sent)})"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args()
    from trouw.stack.temporal import quiet_runtime

    quiet_runtime()
    began = time.perf_counter()
    hour, life, timeline = purchase_work()
    if args.json:
        print(json.dumps({"first_hour": hour.as_dict(), "whole_life": life.as_dict()}, indent=2))  # noqa: T201
    else:
        print(report(hour, life, timeline))  # noqa: T201
        print(
            f"\n(simulated in {time.perf_counter() - began:.1f} s; load {os.getloadavg()[0]:.2f})"
        )  # noqa: T201
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
