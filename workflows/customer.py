"""CustomerWorkflow: one per customer; receives every event, starts and feeds journey runs."""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from trouw.language.contracts import (
        CANCEL_HELD_RUNS_SIGNAL,
        CONSENT_WITHDRAWALS,
        CUSTOMER_WORKFLOW,
        HELD_RUNS_QUERY,
        MATCH_JOURNEYS,
        NEXT_WAKE_QUERY,
        PING_SIGNAL,
        RECORD_EVENT_SIGNAL,
        RECORD_RUN,
        STATUS_QUERY,
        ActiveRun,
        CancelHeldRuns,
        CarriedRun,
        CustomerEvent,
        CustomerInput,
        GoalReached,
        JourneyInput,
        MatchJourneysInput,
        MatchJourneysResult,
        RecordRunInput,
        RunEnd,
        RunEventRecord,
        RunPlan,
        WaitingRun,
        customer_workflow_id,
    )
    from trouw.language.journey.exits import Ending, ending
    from trouw.language.journey.model import Journey
    from trouw.language.journey.plain import hydrate

    from workflows.inline import InlineRuns
    from workflows.journey import JourneyWorkflow, goal_reached, run_event
    from workflows.options import LOCAL_OPTIONS

__all__ = ["CUSTOMER_ID", "CustomerWorkflow", "customer_workflow_id"]

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
# Patch id: a run whose first step is a wait is held here until that wait ends (RunPlan.due),
# or until an event it listens for comes, instead of sleeping for weeks as a workflow of its own.
HOLD_WAITING_RUNS = "hold-waiting-runs"
# Patch id: a held run that an event ends (not a consent withdrawal) is recorded as ended here
# instead of being started only to end at once.
END_HELD_RUNS_HERE = "end-held-runs-here"
# Patch id: a cancel_held_runs signal that comes with an execution's first task (its handler runs
# before the main method has taken up the runs its input carries, e.g. just after continue-as-
# new) is applied once they are taken up; before this change it found nothing and was lost.
EARLY_CANCELS = "early-cancel-held-runs"


@workflow.defn(name=CUSTOMER_WORKFLOW)
class CustomerWorkflow:
    """Events arrive by signal-with-start; duplicates are dropped by id."""

    def __init__(self) -> None:
        self._queue: list[CustomerEvent] = []
        self._runs: dict[str, ActiveRun] = {}
        self._handled = 0
        self._watchers: set[asyncio.Task[None]] = set()
        self._watched: set[str] = set()  # runs whose end this execution hears of (its children)
        self._waiting: dict[str, WaitingRun] = {}
        self._hold = False
        self._offset = 0.0
        self._due_timer: asyncio.Task[None] | None = None
        self._due_at: datetime | None = None
        # Held runs an operator cancelled, with the end reason, not yet recorded.
        self._dropped: list[tuple[WaitingRun, str]] = []
        # Journey runs inside this workflow (CustomerInput.inline_runs), and since which
        # workflow task the main loop is busy with an event (None: it waits for one).
        self._inline: InlineRuns | None = None
        self._busy_since: int | None = None
        # Cancels signalled before the main method took up its input's runs (`_take_up`).
        self._early_cancels: list[CancelHeldRuns] | None = []

    @workflow.signal(name=RECORD_EVENT_SIGNAL)
    def record_event(self, event: CustomerEvent) -> None:
        self._queue.append(event)

    @workflow.signal(name=CANCEL_HELD_RUNS_SIGNAL)
    def cancel_held_runs(self, cancel: CancelHeldRuns) -> None:
        """Drop the held runs of a journey at once (none of them starts after this); the main
        loop records their end. Histories without this signal replay unchanged."""
        if self._early_cancels is not None:
            self._early_cancels.append(cancel)  # the runs are not taken up yet: see _take_up
            return
        for workflow_id, held in sorted(self._waiting.items()):
            if held.plan.journey == cancel.journey:
                del self._waiting[workflow_id]
                self._dropped.append((held, cancel.reason))
        if self._inline is not None:
            # Runs inside this workflow end at once if they wait (else at their next step; a
            # send's retries are cancelled), recorded by the run itself: cancelled, with this
            # reason, at the step it was at.
            for run in self._inline.of_journey(cancel.journey):
                run.cancel(cancel.reason)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> str:
        runs = ", ".join(sorted(run.journey for run in self._runs.values())) or "none"
        text = f"{self._handled} events handled, {len(self._queue)} waiting"
        if self._inline is None or self._runs:
            text += f"; journeys running: {runs}"  # as workflows of their own
        if self._inline is not None:
            inside = "; ".join(self._inline.status()) or "none"
            text += f"; journeys running here: {inside}"
        if self._waiting:
            held = sorted(
                self._waiting.values(), key=lambda held: (held.plan.due, held.plan.journey)
            )
            text += "; journeys held until their first wait ends: " + ", ".join(
                f"{held.plan.journey} until {held.plan.due.isoformat(timespec='minutes')}"
                for held in held
                if held.plan.due is not None
            )
        return text

    @workflow.query(name=NEXT_WAKE_QUERY)
    def next_wake(self, journeys: list[str] | None = None) -> datetime | None:
        """When the first held run (of these journeys, or any) starts: its first wait ends;
        or the first run inside this workflow wakes."""
        held = min(
            (
                held.plan.due
                for held in self._waiting.values()
                if held.plan.due and (journeys is None or held.plan.journey in journeys)
            ),
            default=None,
        )
        inline = self._inline.next_wake(journeys) if self._inline is not None else None
        return min((wake for wake in (held, inline) if wake is not None), default=None)

    @workflow.query(name=HELD_RUNS_QUERY)
    def held_runs(self) -> list[str]:
        """The workflow ids of the runs held until their first wait ends, and of the runs inside
        this workflow (no workflow of their own either: `trouw why` shows them as running, a
        cancel reaches them by `cancel_held_runs`)."""
        inline = list(self._inline.runs) if self._inline is not None else []
        return sorted({*self._waiting, *inline})

    @workflow.run
    async def run(self, input: CustomerInput) -> None:
        seen: deque[str] = deque(input.seen, maxlen=SEEN_LIMIT)
        self._queue[:0] = input.pending
        self._runs = {run.workflow_id: run for run in input.runs}
        self._handled = input.handled
        self._waiting = {held.plan.workflow_id: held for held in input.waiting}
        self._offset = input.clock_offset_seconds
        if input.inline_runs:
            await self._run_inline(input, seen)
            return
        quiet = workflow.patched(QUIET_WHILE_RUNS_RUN)
        self._hold = quiet and workflow.patched(HOLD_WAITING_RUNS)
        self._take_up()
        while True:
            if self._dropped:
                await self._record_dropped()
                continue
            if self._waiting and not self._queue:
                await self._hold_until_due(input)
                continue
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
            if not await self._handle_next(input, seen):
                continue
            if (
                workflow.info().get_current_history_length() > input.history_limit
                and not self._queue
                and not self._dropped
            ):
                workflow.continue_as_new(
                    CustomerInput(
                        customer_id=input.customer_id,
                        seen=list(seen),
                        runs=list(self._runs.values()),
                        waiting=list(self._waiting.values()),
                        search_attributes=input.search_attributes,
                        clock_offset_seconds=input.clock_offset_seconds,
                        history_limit=input.history_limit,
                        handled=self._handled,
                        # The next execution runs new runs (and the ones held here) inside
                        # itself; its children run on as children.
                        inline_runs=True,
                    )
                )

    async def _run_inline(self, input: CustomerInput, seen: deque[str]) -> None:
        """The engine with journey runs inside this workflow (CustomerInput.inline_runs).

        No patch markers: an execution is on this path from its start or not at all. Runs
        started as child workflows by an earlier execution (`input.runs`) are still routed by
        signal; runs it held (`input.waiting`) go on here, their first wait ending when planned.
        """
        runs = self._inline = InlineRuns(
            offset_seconds=input.clock_offset_seconds,
            search_attributes=input.search_attributes,
            emit=self._queue.append,
        )
        for carried in input.inline:
            runs.start(carried.workflow_id, carried.input)
        for held in sorted(self._waiting.values(), key=lambda held: held.plan.workflow_id):
            runs.start(
                held.plan.workflow_id,
                self._journey_input(input, held.trigger, held.plan, first_wake=held.plan.due),
            )
        self._waiting = {}
        self._take_up()
        keeper = asyncio.create_task(runs.keep_time(self._main_settled))
        self._watchers.add(keeper)
        while True:
            # Ended as soon as no run runs here and no event waits (the next event starts a
            # fresh execution: a start costs what a signal costs). Runs an earlier engine
            # started as workflows are asked every IDLE_END whether they still run, a moment
            # on the runs' clock like any other.
            idle = (
                runs.clock.add(self._now() + IDLE_END) if self._runs and not self._queue else None
            )
            self._busy_since = None
            await workflow.wait_condition(functools.partial(self._inline_wakes, input, idle))
            self._busy_since = workflow.info().get_current_history_length()
            if idle is not None:
                runs.clock.remove(idle)
            if runs.crash is not None:
                raise runs.crash  # a bug in a run fails this workflow task, as in its own workflow
            if self._time_to_continue(input):
                going_on = runs.carried()
                assert going_on is not None
                self._continue(input, seen, going_on)
            if not self._queue:
                if idle is not None and runs.clock.reached(idle):
                    await self._forget_finished_carried_runs(input)
                if not self._runs and not runs.active and not self._queue:
                    return  # nothing runs: the next event starts a fresh execution
                continue
            await self._handle_next(input, seen)

    def _take_up(self) -> None:
        """The runs of the input are taken up: cancels that came before now apply to them."""
        early, self._early_cancels = self._early_cancels or [], None
        if early and workflow.patched(EARLY_CANCELS):
            for cancel in early:
                self.cancel_held_runs(cancel)

    async def _handle_next(self, input: CustomerInput, seen: deque[str]) -> bool:
        """The next queued event, unless seen already (False): to the runs that listen, then
        new runs."""
        event = self._queue.pop(0)
        if event.id in seen:
            return False
        seen.append(event.id)
        await self._route(input, event)
        await self._start_runs(input, event)
        self._handled += 1
        return True

    def _inline_wakes(self, input: CustomerInput, idle: int | None) -> bool:
        """Something for the main loop: an event, a crashed run, no run left, its idle moment,
        or a history long enough to continue as new."""
        runs = self._inline
        assert runs is not None
        return (
            bool(self._queue)
            or runs.crash is not None
            or (idle is None and not runs.active)
            or (idle is not None and runs.clock.reached(idle))
            or self._time_to_continue(input)
        )

    def _main_settled(self) -> bool:
        """The main loop does nothing more in this workflow task (for the runs' clock)."""
        if self._busy_since is None:
            return not self._queue
        return self._busy_since != workflow.info().get_current_history_length()

    def _time_to_continue(self, input: CustomerInput) -> bool:
        """A long history, nothing queued, and every run inside waits where it can go on from."""
        runs = self._inline
        return (
            runs is not None
            and workflow.info().get_current_history_length() > input.history_limit
            and not self._queue
            and runs.settled()
            and runs.carried() is not None
        )

    def _continue(self, input: CustomerInput, seen: deque[str], carried: list[CarriedRun]) -> None:
        workflow.continue_as_new(
            CustomerInput(
                customer_id=input.customer_id,
                seen=list(seen),
                runs=list(self._runs.values()),
                pending=list(self._queue),
                search_attributes=input.search_attributes,
                clock_offset_seconds=input.clock_offset_seconds,
                history_limit=input.history_limit,
                handled=self._handled,
                inline_runs=True,
                inline=carried,
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

    def _now(self) -> datetime:
        return workflow.now() + timedelta(seconds=self._offset)

    async def _hold_until_due(self, input: CustomerInput) -> None:
        """Wait for the next event or for the first held run's due moment; start what is due.

        One timer for the earliest due moment, kept while events come and go: an event that
        does not change that moment costs no new timer."""
        due = min(held.plan.due or self._now() for held in self._waiting.values())
        if self._due_timer is None or self._due_at != due:
            self._stop_due_timer()
            self._due_at = due
            self._due_timer = asyncio.create_task(self._sleep_until(due))
        timer = self._due_timer
        await workflow.wait_condition(
            lambda: bool(self._queue) or timer.done() or bool(self._dropped)
        )
        if not timer.done():
            return  # an event (or an operator's cancel) came first
        self._due_timer = self._due_at = None
        now = self._now()
        ready = [held for held in self._waiting.values() if (held.plan.due or now) <= now]
        await self._start_held(input, ready)

    async def _sleep_until(self, moment: datetime) -> None:
        delay = moment - self._now()
        if delay > timedelta():
            await workflow.sleep(delay)

    def _stop_due_timer(self) -> None:
        if self._due_timer is not None and not self._due_timer.done():
            self._due_timer.cancel()
        self._due_timer = self._due_at = None

    async def _end_held(self, event: CustomerEvent, held: list[WaitingRun]) -> list[WaitingRun]:
        """Record the held runs this event ends (a goal, an exit rule); return the others.

        Consent withdrawals are left to the run: it may still owe a transactional message."""
        now = self._now()
        ended: list[tuple[WaitingRun, Ending]] = []
        rest = []
        for run in held:
            journey = Journey.model_validate(run.plan.definition)
            seen = run_event(event, order_id=run.plan.order_id, skus=run.plan.skus)
            end = ending(journey, seen, scope=hydrate(run.plan.context), now=now)
            if end is None:
                rest.append(run)
            else:
                ended.append((run, end))
        for run, end in ended:
            if self._waiting.pop(run.plan.workflow_id, None) is None:
                continue  # an operator cancelled it meanwhile: recorded as that
            await self._record_held_end(
                run, end.outcome, end.reason, now, goal=goal_reached(end, event)
            )
        if not self._waiting:
            self._stop_due_timer()
        return rest

    async def _record_dropped(self) -> None:
        """Record the held runs an operator cancelled: ended at their first step, never started."""
        now = self._now()
        while self._dropped:
            run, reason = self._dropped.pop(0)
            await self._record_held_end(run, "cancelled", reason, now)
        if not self._waiting:
            self._stop_due_timer()

    async def _record_held_end(
        self,
        run: WaitingRun,
        outcome: RunEnd,
        reason: str | None,
        now: datetime,
        *,
        goal: GoalReached | None = None,
    ) -> None:
        """The end of a run that never started, at its first step, as the run would record it."""
        first = Journey.model_validate(run.plan.definition).steps[0].id
        record = RunEventRecord(
            key=f"{run.plan.workflow_id}:held:{outcome}",
            kind=outcome,
            at=now,
            step=first,
            reason=reason,
        )
        await workflow.execute_local_activity(
            RECORD_RUN,
            RecordRunInput(
                workflow_id=run.plan.workflow_id,
                status=outcome,
                reason=reason,
                now=now,
                events=[record],
                goal=goal,
            ),
            **LOCAL_OPTIONS,
        )

    async def _start_held(self, input: CustomerInput, held: list[WaitingRun]) -> None:
        # Only runs still held: an operator may have cancelled one while an activity ran.
        held = [run for run in held if self._waiting.pop(run.plan.workflow_id, None) is not None]
        if not self._waiting:
            self._stop_due_timer()  # nothing left to wake for
        await asyncio.gather(
            *(self._start(input, run.trigger, run.plan, first_wake=run.plan.due) for run in held)
        )

    async def _route(self, input: CustomerInput, event: CustomerEvent) -> None:
        """Hand the event to runs that listen for it (exits, waits, goals), before new runs start."""
        # A held run that listens for this event starts now and judges it itself, exactly as
        # it would have had it been running all along; one the event simply ends is recorded
        # as ended here, without a workflow (a repeat purchase ends the waiting reactivation).
        if self._inline is not None:
            self._inline.route(event)
        listening = [held for held in self._waiting.values() if event.type in held.listens]
        if listening and self._hold and event.type not in CONSENT_WITHDRAWALS:
            if workflow.patched(END_HELD_RUNS_HERE):
                listening = await self._end_held(event, listening)
        await self._start_held(input, listening)
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
            MATCH_JOURNEYS,
            MatchJourneysInput(
                customer_id=input.customer_id,
                event=event,
                now=workflow.now() + timedelta(seconds=input.clock_offset_seconds),
            ),
            result_type=MatchJourneysResult,
            **LOCAL_OPTIONS,
        )
        runs = plans.runs
        if self._inline is not None:
            for plan in runs:
                self._inline.start(plan.workflow_id, self._journey_input(input, event, plan))
            return
        if self._hold:
            now = self._now()
            for plan in runs:
                if plan.due is not None and plan.due > now:
                    listens = sorted(Journey.model_validate(plan.definition).listens_to())
                    self._waiting[plan.workflow_id] = WaitingRun(
                        plan=plan, trigger=event, listens=listens
                    )
            runs = [plan for plan in runs if plan.workflow_id not in self._waiting]
        if workflow.patched(PARALLEL_STARTS):
            # All runs of one event are started in one workflow task: one round trip to the
            # server instead of one per run (a purchase starts four or five journeys).
            await asyncio.gather(*(self._start(input, event, plan) for plan in runs))
        else:
            for plan in runs:
                await self._start(input, event, plan)

    async def _start(
        self,
        input: CustomerInput,
        event: CustomerEvent,
        plan: RunPlan,
        *,
        first_wake: datetime | None = None,
    ) -> None:
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
                self._journey_input(input, event, plan, first_wake=first_wake),
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

    def _journey_input(
        self,
        input: CustomerInput,
        event: CustomerEvent,
        plan: RunPlan,
        *,
        first_wake: datetime | None = None,
    ) -> JourneyInput:
        return JourneyInput(
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
            first_wake=first_wake,
        )
