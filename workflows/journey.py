"""JourneyWorkflow: one journey run as a workflow of its own (the engine before inline runs)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from trouw.language.contracts import (
        JOURNEY_WORKFLOW,
        NEXT_WAKE_QUERY,
        PING_SIGNAL,
        RECORD_EVENT_SIGNAL,
        STATUS_QUERY,
        CustomerEvent,
        JourneyInput,
        JourneyResult,
        customer_workflow_id,
    )

    from workflows.run import JourneyRunner, event_scope, goal_reached, run_event

__all__ = ["JourneyWorkflow", "event_scope", "goal_reached", "run_event"]

STEP = SearchAttributeKey.for_keyword("Step")
NEXT_WAKEUP = SearchAttributeKey.for_datetime("NextWakeup")
# Continue-as-new well before Temporal's 50k-event limit; a yearly journey does it every cycle.
HISTORY_LIMIT = 4000


@workflow.defn(name=JOURNEY_WORKFLOW)
class JourneyWorkflow:
    """Hosts one JourneyRunner (workflows/run.py, the step logic) in a workflow of its own."""

    def __init__(self) -> None:
        self._run = JourneyRunner(self)
        self._search_attributes = False
        self._customer_id = ""

    @workflow.signal(name=RECORD_EVENT_SIGNAL)
    def record_event(self, event: CustomerEvent) -> None:
        self._run.record_event(event)

    @workflow.signal(name=PING_SIGNAL)
    def ping(self) -> None:
        """Lets the customer workflow find out whether this run still runs."""

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> str:
        return self._run.status()

    @workflow.query(name=NEXT_WAKE_QUERY)
    def next_wake(self, journeys: list[str] | None = None) -> datetime | None:
        # `journeys` is the customer workflow's filter: a run is asked only when it is one.
        return self._run.next_wake()

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyResult:
        self._search_attributes = input.search_attributes
        self._customer_id = input.customer_id
        return await self._run.run(input)

    # --- RunHost ---------------------------------------------------------------------------
    @property
    def workflow_id(self) -> str:
        return workflow.info().workflow_id

    def note_key(self, number: int) -> str:
        return f"{workflow.info().run_id}:{number}"

    async def wait(self, condition: Callable[[], bool], longest: timedelta) -> bool:
        try:
            await workflow.wait_condition(condition, timeout=longest)
        except TimeoutError:
            return False
        return True

    def show(self, step: str, wake: datetime) -> None:
        if self._search_attributes:
            workflow.upsert_search_attributes([STEP.value_set(step), NEXT_WAKEUP.value_set(wake)])

    async def emit(self, event: CustomerEvent) -> None:
        await workflow.get_external_workflow_handle(customer_workflow_id(self._customer_id)).signal(
            RECORD_EVENT_SIGNAL, event
        )

    def history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() >= HISTORY_LIMIT
            or info.is_continue_as_new_suggested()
        )

    def continue_as_new(self, input: JourneyInput) -> NoReturn:
        workflow.continue_as_new(input)

    def patched(self, patch_id: str) -> bool:
        return workflow.patched(patch_id)

    def away(self) -> None:
        """Nothing to do: this workflow's waits are timers of its own."""
