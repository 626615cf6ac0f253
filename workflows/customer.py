"""CustomerWorkflow: one per customer; receives every event, starts and feeds journey runs."""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from trouw.contracts import (
        CUSTOMER_WORKFLOW,
        PING_SIGNAL,
        RECORD_EVENT_SIGNAL,
        STATUS_QUERY,
        ActiveRun,
        CustomerEvent,
        CustomerInput,
        JourneyInput,
        MatchJourneysInput,
        MatchJourneysResult,
        RunPlan,
        customer_workflow_id,
    )
    from trouw.journey.model import Journey

    from workflows.journey import JourneyWorkflow
    from workflows.options import LOCAL_OPTIONS

__all__ = ["CustomerWorkflow", "customer_workflow_id"]

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
JOURNEY = SearchAttributeKey.for_keyword("Journey")
JOURNEY_VERSION = SearchAttributeKey.for_keyword("JourneyVersion")
ORDER_ID = SearchAttributeKey.for_keyword("OrderId")

SEEN_LIMIT = 1000
# Patch id: runs started before this change replay with sequential starts.
PARALLEL_STARTS = "parallel-child-starts"
IDLE_END = timedelta(days=30)
# Patch id: while every run it started is still watched, the workflow waits for an event or for
# the runs to end with no timer; before this change it woke every IDLE_END (a timer, a billed
# action and five history events each time) for as long as a run ran, a year for reactivation.
QUIET_WHILE_RUNS_RUN = "quiet-while-runs-run"


@workflow.defn(name=CUSTOMER_WORKFLOW)
class CustomerWorkflow:
    """Events arrive by signal-with-start; duplicates are dropped by id."""

    def __init__(self) -> None:
        self._queue: list[CustomerEvent] = []
        self._runs: dict[str, ActiveRun] = {}
        self._handled = 0
        self._watchers: set[asyncio.Task[None]] = set()
        self._watched: set[str] = set()  # runs whose end this execution hears of (its children)

    @workflow.signal(name=RECORD_EVENT_SIGNAL)
    def record_event(self, event: CustomerEvent) -> None:
        self._queue.append(event)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> str:
        runs = ", ".join(sorted(run.journey for run in self._runs.values())) or "none"
        return (
            f"{self._handled} events handled, {len(self._queue)} waiting; journeys running: {runs}"
        )

    @workflow.run
    async def run(self, input: CustomerInput) -> None:
        seen: deque[str] = deque(input.seen, maxlen=SEEN_LIMIT)
        self._queue[:0] = input.pending
        self._runs = {run.workflow_id: run for run in input.runs}
        self._handled = input.handled
        quiet = workflow.patched(QUIET_WHILE_RUNS_RUN)
        while True:
            if quiet and self._runs and set(self._runs) <= self._watched and not self._queue:
                # Each run's end removes it (forget_when_done): nothing to check meanwhile.
                await workflow.wait_condition(lambda: bool(self._queue) or not self._runs)
                continue
            try:
                await workflow.wait_condition(lambda: bool(self._queue), timeout=IDLE_END)
            except TimeoutError:
                await self._forget_finished_carried_runs(input)
                if not self._runs and not self._queue:
                    return  # idle: the next event starts a fresh execution
                continue
            event = self._queue.pop(0)
            if event.id in seen:
                continue
            seen.append(event.id)
            await self._route(event)
            await self._start_runs(input, event)
            self._handled += 1
            if (
                workflow.info().get_current_history_length() > input.history_limit
                and not self._queue
            ):
                workflow.continue_as_new(
                    CustomerInput(
                        customer_id=input.customer_id,
                        seen=list(seen),
                        runs=list(self._runs.values()),
                        search_attributes=input.search_attributes,
                        clock_offset_seconds=input.clock_offset_seconds,
                        history_limit=input.history_limit,
                        handled=self._handled,
                    )
                )

    async def _forget_finished_carried_runs(self, input: CustomerInput) -> None:
        """Runs carried over continue-as-new have no watcher: ask each whether it still runs."""
        carried = {run.workflow_id for run in input.runs}
        for workflow_id in sorted(carried & set(self._runs)):
            try:
                await workflow.get_external_workflow_handle(workflow_id).signal(PING_SIGNAL)
            except Exception:  # noqa: BLE001 - it has ended
                self._runs.pop(workflow_id, None)

    async def _route(self, event: CustomerEvent) -> None:
        """Hand the event to runs that listen for it (exits, waits, goals), before new runs start."""
        for run in list(self._runs.values()):
            if event.type not in run.listens:
                continue
            try:
                await workflow.get_external_workflow_handle(run.workflow_id).signal(
                    RECORD_EVENT_SIGNAL, event
                )
            except Exception:  # noqa: BLE001 - the run has ended: forget it
                self._runs.pop(run.workflow_id, None)

    async def _start_runs(self, input: CustomerInput, event: CustomerEvent) -> None:
        plans = await workflow.execute_local_activity(
            "match_journeys",
            MatchJourneysInput(
                customer_id=input.customer_id,
                event=event,
                now=workflow.now() + timedelta(seconds=input.clock_offset_seconds),
            ),
            result_type=MatchJourneysResult,
            **LOCAL_OPTIONS,
        )
        if workflow.patched(PARALLEL_STARTS):
            # All runs of one event are started in one workflow task: one round trip to the
            # server instead of one per run (a purchase starts four or five journeys).
            await asyncio.gather(*(self._start(input, event, plan) for plan in plans.runs))
        else:
            for plan in plans.runs:
                await self._start(input, event, plan)

    async def _start(self, input: CustomerInput, event: CustomerEvent, plan: RunPlan) -> None:
        journey = Journey.model_validate(plan.definition)
        pairs = [
            SearchAttributePair(CUSTOMER_ID, input.customer_id),
            SearchAttributePair(JOURNEY, plan.journey),
            SearchAttributePair(JOURNEY_VERSION, plan.version),
        ]
        if plan.order_id:
            pairs.append(SearchAttributePair(ORDER_ID, plan.order_id))
        try:
            handle = await workflow.start_child_workflow(
                JourneyWorkflow.run,
                JourneyInput(
                    customer_id=input.customer_id,
                    journey=plan.journey,
                    version=plan.version,
                    definition=plan.definition,
                    trigger=event,
                    context=plan.context,
                    order_id=plan.order_id,
                    skus=plan.skus,
                    search_attributes=input.search_attributes,
                    clock_offset_seconds=input.clock_offset_seconds,
                ),
                id=plan.workflow_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
                search_attributes=TypedSearchAttributes(pairs) if input.search_attributes else None,
                task_queue=workflow.info().task_queue,
            )
        except WorkflowAlreadyStartedError:
            return
        listens = sorted(journey.listens_to())
        self._runs[plan.workflow_id] = ActiveRun(
            workflow_id=plan.workflow_id, journey=plan.journey, listens=listens
        )

        async def forget_when_done() -> None:
            try:
                await handle
            except Exception:  # noqa: BLE001 - failed or cancelled runs end as well
                pass
            self._runs.pop(plan.workflow_id, None)
            self._watched.discard(plan.workflow_id)

        self._watched.add(plan.workflow_id)
        task = asyncio.create_task(forget_when_done())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
