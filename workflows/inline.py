"""Journey runs inside the customer workflow: JourneyRunners on one clock with a single timer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from trouw.language.contracts import CarriedRun, CustomerEvent, JourneyInput
    from trouw.language.journey.model import Journey

    from workflows.run import JourneyRunner
    from workflows.sending import CANCEL_STOPS_SEND_RETRIES

# The customer workflow's search attributes for the runs inside it (keyword lists), so the
# Temporal UI finds a customer by journey, step and order as it found a run workflow by
# Journey, Step and OrderId. JourneyRuns (text: a server allows 3 keyword lists) holds
# `journey:version:step` per run, space-separated in workflow-id order, for `trouw runs`' tally
# by version and step.
JOURNEYS = SearchAttributeKey.for_keyword_list("Journeys")
STEPS = SearchAttributeKey.for_keyword_list("Steps")
ORDER_IDS = SearchAttributeKey.for_keyword_list("OrderIds")
JOURNEY_RUNS = SearchAttributeKey.for_text("JourneyRuns")
LISTS = (JOURNEYS, STEPS, ORDER_IDS)
# The log line the simulator's runs (no custom search attributes) write instead of an upsert;
# bench/engine_actions.py counts them as the upserts a server with the attributes records.
UPSERT_NOT_MADE = "search attributes off: would upsert"


def _task_mark() -> int:
    """Tells workflow tasks apart: the history grows between two tasks, never within one (the
    activations that deliver local activities' results belong to the task that asked)."""
    return workflow.info().get_current_history_length()


def _whole_second(moment: datetime) -> datetime:
    """Rounded up to the second, so waits that end together share one timer."""
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


class Clock:
    """The moments the runs (and the customer workflow) wait for, and one timer to the earliest.

    A timer is planned once the runs have settled (InlineRuns.keep_time), never cancelled in the
    workflow task that started it: the time-skipping server refuses such a completion and then
    hangs (temporalio/sdk-java issues 2606 and 3088)."""

    def __init__(self, offset_seconds: float) -> None:
        self._offset = timedelta(seconds=offset_seconds)
        self._moments: dict[int, datetime] = {}
        self._tokens = 0
        self._timers: dict[datetime, tuple[asyncio.Task[None], int]] = {}
        self._reached: datetime | None = None  # the latest moment a timer of ours fired for
        self.changed = False

    def now(self) -> datetime:
        return workflow.now() + self._offset

    def add(self, moment: datetime) -> int:
        self._tokens += 1
        self._moments[self._tokens] = _whole_second(moment)
        self.changed = True
        return self._tokens

    def remove(self, token: int) -> None:
        if self._moments.pop(token, None) is not None:
            self.changed = True

    def reached(self, token: int) -> bool:
        moment = self._moments.get(token)
        if moment is None:
            return True
        now = self.now()
        return moment <= (max(now, self._reached) if self._reached else now)

    def moment(self, token: int) -> datetime | None:
        return self._moments.get(token)

    def plan(self) -> None:
        """One timer to the earliest moment not reached; timers no longer needed are cancelled
        unless this workflow task started them (then they fire, and the clock plans again)."""
        self.changed = False
        due = min(
            (moment for token, moment in self._moments.items() if not self.reached(token)),
            default=None,
        )
        mark = _task_mark()
        for at, (task, started) in list(self._timers.items()):
            if at != due and started != mark:
                del self._timers[at]
                task.cancel()
        if due is None or any(at <= due for at in self._timers):
            return
        self._timers[due] = (asyncio.create_task(self._ring(due)), mark)

    async def _ring(self, at: datetime) -> None:
        await workflow.sleep(at - self.now())
        self._timers.pop(at, None)
        self._reached = max(self._reached, at) if self._reached else at
        self.changed = True


class _Restart(Exception):
    """A yearly journey's next cycle: the run starts again in place with this input."""

    def __init__(self, input: JourneyInput) -> None:
        super().__init__("next cycle")
        self.input = input


class InlineRun:
    """One journey run inside the customer workflow: the RunHost of its JourneyRunner."""

    def __init__(self, runs: InlineRuns, workflow_id: str, input: JourneyInput) -> None:
        self._runs = runs
        self._workflow_id = workflow_id
        self.input = input
        self.journey = input.journey
        self.listens = sorted(Journey.model_validate(input.definition).listens_to())
        self.runner = JourneyRunner(self)
        self.done = False
        self._ready: Callable[[], bool] | None = None  # set while the run waits
        self._busy_since: int | None = _task_mark()
        self._away = False

    # --- what InlineRuns asks ---------------------------------------------------------------
    def settled(self) -> bool:
        """Nothing more happens in this run before the next workflow task: it waits for a
        moment or an event, or for something that outlasts this task (an activity)."""
        if self.done:
            return True
        if self._ready is not None:
            return not self._ready()
        return self._away or self._busy_since != _task_mark()

    def carried(self) -> CarriedRun | None:
        """The run as continue-as-new carries it, when it waits where it can go on from."""
        if self._ready is None or self._ready():
            return None
        resume = self.runner.resume_input()
        return None if resume is None else CarriedRun(workflow_id=self.workflow_id, input=resume)

    async def live(self) -> None:
        while True:
            try:
                await self.runner.run(self.input)
            except _Restart as restart:
                self.input = restart.input
                self.runner = JourneyRunner(self)
                self._runs.shown = True
                continue
            except FailureError as exc:
                # Recorded as failed by the run (its reason, the step): the customer's other
                # runs and its events go on, as they did when the run was a workflow of its own.
                workflow.logger.warning("run %s failed: %s", self.workflow_id, exc)
            except asyncio.CancelledError:
                pass  # the customer workflow itself is being cancelled
            except Exception as exc:  # noqa: BLE001 - a bug: the customer workflow's task fails
                self._runs.crash = exc
            break
        self.done = True
        self._ready = None
        self._runs.ended(self)

    def cancel(self, reason: str) -> None:
        """An operator's cancel: the run ends at once if it waits, else at its next step; a send
        waiting on its retries is cancelled (its row ended), one at the provider finishes."""
        retrying = self.runner.send_retrying and self.runner.step is not None
        self.runner.cancel(reason)
        if retrying and workflow.patched(CANCEL_STOPS_SEND_RETRIES):
            # Thrown into the send where it waits (the announced delay's timer, the activity,
            # both started in an earlier workflow task): send_message ends the row, the run
            # ends cancelled with this reason.
            self._runs.interrupt(self)

    # --- RunHost ----------------------------------------------------------------------------
    @property
    def workflow_id(self) -> str:
        return self._workflow_id

    def note_key(self, number: int) -> str:
        return f"{workflow.info().run_id}:{self._workflow_id}#{self.input.cycle}:{number}"

    async def wait(self, condition: Callable[[], bool], longest: timedelta) -> bool:
        clock = self._runs.clock
        token = clock.add(clock.now() + longest)
        met = False

        def ready() -> bool:
            nonlocal met
            met = met or condition()
            return met or clock.reached(token)

        self._ready = ready
        self._away = False
        try:
            await workflow.wait_condition(ready)
        except BaseException:
            # Cancelled, or closed with the workflow (outside its event loop): no workflow calls.
            self._ready = None
            clock.remove(token)
            raise
        self._ready = None
        self._busy_since = _task_mark()
        clock.remove(token)
        return met

    def show(self, step: str, wake: datetime) -> None:
        self._runs.shown = True

    async def emit(self, event: CustomerEvent) -> None:
        self._runs.emit(event)

    def history_is_long(self) -> bool:
        return False  # the customer workflow continues as new, carrying the run

    def continue_as_new(self, input: JourneyInput) -> NoReturn:
        raise _Restart(input)

    def patched(self, patch_id: str) -> bool:
        return True  # every run patch predates runs inside the customer workflow

    def away(self) -> None:
        self._away = True


class InlineRuns:
    """A customer's journey runs inside its workflow, their clock and their search attributes."""

    def __init__(
        self,
        *,
        offset_seconds: float,
        search_attributes: bool,
        emit: Callable[[CustomerEvent], None],
    ) -> None:
        self.clock = Clock(offset_seconds)
        self.runs: dict[str, InlineRun] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.crash: BaseException | None = None
        self.shown = False  # a run's step may have changed: recompute the attributes
        self.emit = emit
        self._search_attributes = search_attributes
        info = workflow.info().typed_search_attributes
        # What the execution carries from its start (continue-as-new copies the attributes).
        self._upserted: tuple[dict[str, list[str]], str] = (
            {key.name: list(info.get(key) or []) for key in LISTS},
            info.get(JOURNEY_RUNS) or "",
        )

    @property
    def active(self) -> bool:
        return bool(self.runs)

    def start(self, workflow_id: str, input: JourneyInput) -> None:
        if workflow_id in self.runs:
            return
        run = InlineRun(self, workflow_id, input)
        self.runs[workflow_id] = run
        self.shown = True
        self._tasks[workflow_id] = asyncio.create_task(run.live())

    def ended(self, run: InlineRun) -> None:
        self.runs.pop(run.workflow_id, None)
        self._tasks.pop(run.workflow_id, None)
        self.shown = True

    def interrupt(self, run: InlineRun) -> None:
        """Cancel what the run awaits (its send's retries): the run's own asyncio task."""
        task = self._tasks.get(run.workflow_id)
        if task is not None and not task.done():
            task.cancel()

    def of_journey(self, journey: str) -> list[InlineRun]:
        return [run for _id, run in sorted(self.runs.items()) if run.journey == journey]

    def route(self, event: CustomerEvent) -> None:
        for _id, run in sorted(self.runs.items()):
            if event.type in run.listens:
                run.runner.record_event(event)

    def carried(self) -> list[CarriedRun] | None:
        """Every run as continue-as-new carries it; None while one is not in such a wait."""
        out = []
        for _id, run in sorted(self.runs.items()):
            carried = run.carried()
            if carried is None:
                return None
            out.append(carried)
        return out

    def settled(self) -> bool:
        return all(run.settled() for run in self.runs.values())

    async def keep_time(self, host_settled: Callable[[], bool]) -> None:
        """Once per workflow task, after every run has reached its next wait: plan the timer
        and upsert the search attributes that changed."""
        while True:
            await workflow.wait_condition(
                lambda: (
                    (self.clock.changed or self.shown)
                    and self.crash is None
                    and host_settled()
                    and self.settled()
                )
            )
            self.clock.plan()
            if self.shown:
                self.shown = False
                self._show()

    def attributes(self) -> tuple[dict[str, list[str]], str]:
        """The keyword lists (Journeys, Steps, OrderIds) and JourneyRuns, from the runs now."""
        runs = [run for _id, run in sorted(self.runs.items()) if not run.done]
        steps = [(run, run.runner.step) for run in runs]
        lists = {
            JOURNEYS.name: sorted({run.journey for run in runs}),
            STEPS.name: sorted({step for _run, step in steps if step}),
            ORDER_IDS.name: sorted({run.input.order_id for run in runs if run.input.order_id}),
        }
        entries = [
            f"{run.journey}:{run.input.version}:{step or '(starting)'}" for run, step in steps
        ]
        return lists, " ".join(entries)

    def _show(self) -> None:
        wanted = self.attributes()
        if wanted == self._upserted:
            return
        lists, runs = wanted
        updates: list[SearchAttributeUpdate[Any]] = [
            key.value_set(lists[key.name]) if lists[key.name] else key.value_unset()
            for key in LISTS
            if lists[key.name] != self._upserted[0][key.name]
        ]
        if runs != self._upserted[1]:
            updates.append(JOURNEY_RUNS.value_set(runs) if runs else JOURNEY_RUNS.value_unset())
        self._upserted = wanted
        if self._search_attributes:
            workflow.upsert_search_attributes(updates)
        else:
            workflow.logger.debug(
                "%s at %s: %s", UPSERT_NOT_MADE, workflow.now().isoformat(), wanted
            )

    def status(self) -> list[str]:
        return [run.runner.status() for _id, run in sorted(self.runs.items())]

    def next_wake(self, journeys: list[str] | None) -> datetime | None:
        return min(
            (
                wake
                for run in self.runs.values()
                if (journeys is None or run.journey in journeys)
                and (wake := run.runner.next_wake()) is not None
            ),
            default=None,
        )
