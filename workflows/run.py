"""A journey run's step logic: one journey definition for one customer, pinned to its version."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn, Protocol, assert_never

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from trouw.language.attributes import needs_activity
    from trouw.language.contracts import (
        CONSENT_WITHDRAWALS,
        EVALUATE_CONDITION,
        LOAD_CONTEXT,
        RECORD_RUN,
        RECORD_RUN_EVENTS,
        UPDATE_CUSTOMER,
        CallActivityInput,
        CallActivityResult,
        ConditionResult,
        ContextResult,
        CustomerEvent,
        EvaluateConditionInput,
        GoalReached,
        JourneyInput,
        JourneyResult,
        LoadContextInput,
        RecordRunEventsInput,
        RecordRunInput,
        ResumeState,
        RunEnd,
        RunEventKind,
        RunEventRecord,
        SendMessageInput,
        UpdateCustomerInput,
    )
    from trouw.language.journey import expressions
    from trouw.language.journey.durations import format_duration, parse_duration
    from trouw.language.journey.exits import Ending, RunEvent, ending, matches
    from trouw.language.journey.graph import default_next, edges
    from trouw.language.journey.model import (
        AnyStep,
        BranchStep,
        CallStep,
        ExitStep,
        GoalStep,
        Journey,
        SendStep,
        SplitArm,
        SplitStep,
        StepBase,
        UpdateStep,
        WaitForStep,
        WaitStep,
        WaitUntilStep,
        parse_clock,
    )
    from trouw.language.journey.plain import hydrate, jsonable
    from trouw.language.journey.split import choose_arm
    from trouw.language.journey.waits import timezone_of, wait_until_moment

    from workflows.options import CALL_OPTIONS, LOCAL_OPTIONS
    from workflows.sending import LOCAL_FIRST_SEND, send_message

FRESH_YEARLY_CONTEXT = "fresh-yearly-context"
RECORD_FAILED_RUNS = "record-failed-runs"
# Patch id: runs started before this change record no run events and no failure or cancellation.
RUN_EVENTS = "run-events"
# Patch id: an exit on a consent withdrawal (unsubscribe, opt_out, sms_stop) lets the run's
# transactional messages still go out; runs that exited at once before this change replay so.
KEEP_TRANSACTIONAL = "withdrawal-keeps-transactional"
# Patch id: conditions on attributes the run's copy lacks are evaluated in an activity.
PERSONAL_CONDITIONS = "personal-attribute-conditions"
# Patch id: a hold-out arm is noted (and so stored in split_assignment) like any other arm.
SPLIT_ARM_NOTES = "split-arm-notes"


class RunHost(Protocol):
    """What a run needs from the workflow it runs in (its own, or its customer's)."""

    @property
    def workflow_id(self) -> str:
        """The run's id: its message keys, call keys and run record are made from it."""
        ...

    def note_key(self, number: int) -> str:
        """The key of the run's `number`th note in this execution (unique across executions)."""
        ...

    async def wait(self, condition: Callable[[], bool], longest: timedelta) -> bool:
        """Wait until `condition` holds (True) or `longest` has passed (False)."""
        ...

    def show(self, step: str, wake: datetime) -> None:
        """Make the step the run waits in, and until when, searchable."""
        ...

    async def emit(self, event: CustomerEvent) -> None:
        """Hand an event a step made (a custom activity's voucher_issued) to the customer."""
        ...

    def history_is_long(self) -> bool:
        """Whether the run should go on in a fresh history at its next step boundary."""
        ...

    def continue_as_new(self, input: JourneyInput) -> NoReturn:
        """Go on as `input` in a fresh history (a new yearly cycle, or a long history)."""
        ...

    def patched(self, patch_id: str) -> bool:
        """Whether the run takes the change `patch_id` (workflow.patched in a run's own workflow;
        always in a host that came after every run patch)."""
        ...

    def away(self) -> None:
        """The run now waits on something that may outlast this workflow task (an activity with
        durable retries, a delay the provider asked for)."""
        ...


class _Ended(Exception):
    """The run ends now (an exit event, a goal, a hold-out)."""

    def __init__(
        self,
        outcome: RunEnd,
        reason: str,
        *,
        by_event: bool = False,
        goal: GoalReached | None = None,
    ) -> None:
        self.outcome = outcome
        self.reason = reason
        self.by_event = by_event
        self.goal = goal


class JourneyRunner:
    """A thin loop: each step type is one small method; graph logic lives in trouw.language.journey.

    Where the run lives (its own workflow or inside the customer workflow) is the host's
    business: the run asks it for its id, its waits, its search attributes and its restarts.
    """

    def __init__(self, host: RunHost) -> None:
        self._host = host
        self._input: JourneyInput | None = None
        self._journey: Journey | None = None
        self._inbox: list[CustomerEvent] = []
        self._ended: _Ended | None = None
        self._step: str | None = None
        self._doing = "starting"
        self._wake: datetime | None = None
        self._sent = 0
        self._recording = False
        self._notes: list[RunEventRecord] = []
        self._noted = 0
        self._failing: str | None = None  # the expression that failed the run, if one did
        # Set by an exit on a consent withdrawal: only transactional messages still go out, and
        # the run ends as soon as none is ahead.
        self._winding_down: str | None = None
        self._first_step: str | None = None
        # Where the run goes on if its host continues as new during the current wait: (next
        # step, the step it waits in, whether to wait in that step again); None when the run
        # is not in a wait it can resume (a deferred send's wait, an activity).
        self._resume_point: tuple[str | None, str | None, bool] | None = None
        self._reentry: datetime | None = None  # the deadline of a wait_for step re-entered
        # A send whose local attempt failed waits on its durable retries (an announced delay,
        # the regular activity): an operator's cancel stops it (InlineRun.cancel).
        self._send_retrying = False
        self._cancelled_by: str | None = None  # an operator's cancel (`cancel`), its reason

    # --- signals and queries -------------------------------------------------------------
    def record_event(self, event: CustomerEvent) -> None:
        self._inbox.append(event)
        self._judge(event)

    def _judge(self, event: CustomerEvent) -> None:
        """Does this event end the run (a goal or an exit rule)?"""
        if self._journey is None or self._input is None or self._ended is not None:
            return
        end = ending(self._journey, self._run_event(event), scope=self._ctx, now=self._now())
        if end is None:
            return
        if (
            end.outcome == "exited"
            and event.type in CONSENT_WITHDRAWALS
            and self._host.patched(KEEP_TRANSACTIONAL)
            and self._transactional_ahead(self._step or self._first_step)
        ):
            # An unsubscribe never stops a receipt or a delivery notice of this run.
            self._winding_down = self._winding_down or (
                f"{end.reason} (transactional messages still sent)"
            )
            return
        self._ended = _Ended(end.outcome, end.reason, by_event=True, goal=goal_reached(end, event))

    def _run_event(self, event: CustomerEvent) -> RunEvent:
        assert self._input is not None
        return run_event(event, order_id=self._input.order_id, skus=self._input.skus)

    def next_wake(self) -> datetime | None:
        """The end of the wait the run is in, if any (a query: no history)."""
        return None if self._ended is not None else self._wake

    @property
    def step(self) -> str | None:
        """The step the run is at (None before its first step and after its end)."""
        return None if self._ended is not None else self._step

    def cancel(self, reason: str) -> None:
        """An operator's cancel: the run ends at its next step boundary or now if it waits,
        recorded as cancelled with this reason (a yearly journey does not start a new cycle)."""
        if self._ended is None:
            self._ended = _Ended("cancelled", reason, by_event=True)
            self._cancelled_by = reason

    @property
    def send_retrying(self) -> bool:
        """Whether the run waits on a send's retries, after its local attempt failed."""
        return self._send_retrying

    def resume_input(self) -> JourneyInput | None:
        """The input that goes on with this run in a fresh history, from the middle of the wait
        it is in (its end moment kept); None when it is not in such a wait."""
        if (
            self._resume_point is None
            or self._wake is None
            or self._input is None
            or self._ended is not None
            or self._notes
        ):
            return None
        follow, waiting_in, reenter = self._resume_point
        resume = ResumeState(step=follow, wake=self._wake, waiting_in=waiting_in, reenter=reenter)
        return self._going_on(resume).model_copy(update={"first_wake": None})

    def status(self) -> str:
        name = self._journey.name if self._journey else "journey"
        if self._ended is not None:
            return f"{name}: ended ({self._ended.reason})"
        text = f"{name}: {self._doing}"
        if self._step:
            text = f"{name} at step {self._step}: {self._doing}"
        if self._wake is not None:
            text += f" until {self._wake.isoformat(timespec='minutes')}"
        return text

    # --- the loop --------------------------------------------------------------------------
    async def run(self, input: JourneyInput) -> JourneyResult:
        self._input = input
        self._recording = self._host.patched(RUN_EVENTS)
        self._journey = journey = Journey.model_validate(input.definition)
        self._ctx: dict[str, Any] = hydrate(input.context)
        resume = input.resume or ResumeState(step=journey.steps[0].id)
        self._vars: dict[str, Any] = dict(resume.vars)
        self._events: dict[str, Any] = dict(resume.events)
        self._visits: dict[str, int] = dict(resume.visits)
        self._inbox[:0] = resume.inbox
        self._winding_down = resume.winding_down
        # A yearly cycle starts from today's data, not the first cycle's snapshot (patched:
        # cycles that started before this change replay without the reload).
        self._stale = input.cycle > 0 and self._host.patched(FRESH_YEARLY_CONTEXT)
        # Signals delivered with the start arrive before the journey is parsed: judge them now.
        step_id: str | None = resume.step
        self._first_step = step_id
        for early in list(self._inbox):
            self._judge(early)
        again = resume.step if resume.reenter and resume.wake is not None else None
        self._reentry = resume.wake if again is not None else None
        try:
            if input.resume is None and journey.trigger.date is not None:
                await self._wait_for_date()
            elif resume.wake is not None and again is None:
                # Carried over in the middle of a wait: it ends when it would have.
                self._stale = True
                self._step = resume.waiting_in
                self._resume_point = (resume.step, resume.waiting_in, False)
                await self._sleep_until(resume.wake, "waiting")
            while step_id is not None:
                self._check_ended()
                if self._winding_down and not self._transactional_ahead(step_id):
                    raise _Ended("exited", self._winding_down, by_event=True)
                self._step = step_id
                step = journey.step(step_id)
                if step_id != again:
                    self._visits[step_id] = self._visits.get(step_id, 0) + 1
                again = None  # a step re-entered after continue-as-new was visited already
                self._resume_point = None  # set by a step that waits in a resumable way
                step_id = await self._run_step(step)
        except _Ended as ended:
            if journey.trigger.every == "year" and not ended.by_event:
                await self._flush()
                self._next_cycle(input)
            await self._record(ended.outcome, ended.reason, goal=ended.goal)
            return JourneyResult(outcome=ended.outcome, reason=ended.reason, sent=self._sent)
        except FailureError as exc:
            # The run fails alone and visibly (Temporal UI); its record says why first. Patched:
            # runs from before run records record only a failed expression, older ones nothing.
            if self._recording or (
                isinstance(exc, ApplicationError)
                and exc.type == "ExpressionError"
                and self._host.patched(RECORD_FAILED_RUNS)
            ):
                cause = exc.cause if isinstance(exc, ActivityError) and exc.cause else exc
                reason = cause.message if isinstance(cause, FailureError) else str(cause)
                if isinstance(exc, ActivityError):
                    reason = f"step {self._step}: {reason}"
                await self._record("failed", reason, expression=self._failing)
            raise
        except asyncio.CancelledError:
            if self._recording:
                await self._record("cancelled", "cancelled in Temporal")
            raise
        self._step = None
        self._doing = "completed"
        if journey.trigger.every == "year":
            await self._flush()
            self._next_cycle(input)
        await self._record("completed", None)
        return JourneyResult(outcome="completed", sent=self._sent)

    def _now(self) -> datetime:
        offset = self._input.clock_offset_seconds if self._input else 0.0
        return workflow.now() + timedelta(seconds=offset)

    def _next_cycle(self, input: JourneyInput) -> None:
        """A yearly journey starts its next cycle with a fresh history."""
        trigger = input.trigger.model_copy(update={"at": self._now()})
        self._host.continue_as_new(
            input.model_copy(update={"cycle": input.cycle + 1, "resume": None, "trigger": trigger})
        )

    async def _run_step(self, step: AnyStep) -> str | None:
        assert self._journey is not None
        follow = default_next(self._journey, step.id)
        match step:
            case SendStep():
                await self._send(step)
            case WaitStep():
                self._resume_point = (follow, step.id, False)
                held = self._held_until(step)
                if held is not None:
                    await self._sleep_until(held, f"waiting {step.wait}")
                else:
                    await self._sleep_until(
                        self._now() + parse_duration(step.wait), f"waiting {step.wait}"
                    )
                await self._maybe_continue_as_new(follow)
            case WaitUntilStep():
                self._resume_point = (follow, step.id, False)
                held = self._held_until(step)
                if held is not None:
                    await self._sleep_until(held, "waiting")
                else:
                    await self._wait_until(step)
                await self._maybe_continue_as_new(follow)
            case WaitForStep():
                return await self._wait_for(step, follow)
            case BranchStep():
                return await self._branch(step, follow)
            case SplitStep():
                return self._split(step, follow)
            case UpdateStep():
                await self._update(step)
            case CallStep():
                await self._call(step)
            case GoalStep():
                raise _Ended("converted", f"goal {step.goal}", goal=GoalReached(goal=step.goal))
            case ExitStep():
                raise _Ended("exited", step.exit)
            case _:
                assert_never(step)
        return follow

    # --- steps -------------------------------------------------------------------------------
    async def _send(self, step: SendStep) -> None:
        assert self._journey is not None and self._input is not None
        journey = self._journey
        category = self._category(step)
        if self._winding_down and category != "transactional":
            self._note("skipped", step.id, self._winding_down)
            return
        if step.when and not await self._condition(step.when):
            self._note("skipped", step.id, "`when` is false", expression=step.when)
            return
        triggered = self._input.trigger.at
        visit = self._visits.get(step.id, 1)
        key = f"{self._host.workflow_id}#{self._input.cycle}:{step.id}:{step.send}"
        if visit > 1:
            key += f"~{visit}"
        deadline = None
        if category == "promotional" and journey.settings.promotional_when_busy == "defer":
            deadline = self._now() + parse_duration(journey.settings.promotional_defer_limit)
        while True:
            self._check_ended()
            if self._winding_down and category != "transactional":
                # A deferred message the customer has since unsubscribed from.
                self._note("skipped", step.id, self._winding_down)
                return
            self._doing = f"sending {step.send} {step.template}"
            request = SendMessageInput(
                message_key=key,
                customer_id=self._input.customer_id,
                journey=journey.name,
                journey_version=self._input.version,
                workflow_id=self._host.workflow_id,
                step=step.id,
                channel=step.send,
                template=step.template,
                category=category,
                triggered_at=triggered,
                service_cutoff_days=journey.cutoff.days,
                promotional_when_busy=journey.settings.promotional_when_busy,
                defer_deadline=deadline,
                now=self._now(),
                order_id=self._input.order_id,
                skus=self._input.skus,
                vars=jsonable(
                    {"trigger": self._ctx.get("trigger", {}), **self._vars, "events": self._events}
                ),
            )
            try:
                result = await send_message(
                    request,
                    local_first=self._host.patched(LOCAL_FIRST_SEND),
                    on_retry=self._retrying,
                    why_cancelled=self._why_send_stopped,
                )
            except asyncio.CancelledError:
                if self._cancelled_by is None or self._ended is None:
                    raise  # the workflow itself is cancelled
                # The send's row is ended (send_message); the run ends as the operator asked.
                raise self._ended from None
            except ActivityError as exc:
                # Recorded in the ledger by the activity; the journey says whether to go on.
                cause = exc.cause or exc
                workflow.logger.warning("step %s failed: %s", step.id, cause)
                if step.on_error == "exit":
                    raise _Ended("exited", f"step {step.id} failed: {cause}") from None
                return
            finally:
                self._send_retrying = False
            if result.outcome == "sent":
                self._sent += 1
            if result.outcome != "deferred" or result.until is None:
                return
            await self._sleep_until(
                result.until, f"deferred: {result.reason_text or result.reason}"
            )

    def _why_send_stopped(self) -> str | None:
        """An operator's cancel, for the send's row (a send going on after its local attempt
        stops for it); None: not cancelled so."""
        if self._cancelled_by is None:
            return None
        return f"{self._cancelled_by}, while the send was on its way"

    def _retrying(self) -> None:
        self._send_retrying = True
        self._host.away()

    def _held_until(self, step: StepBase) -> datetime | None:
        """The end of the first wait when the customer workflow held the run until then (the
        wait counts from the trigger, as if the run had started with it); None otherwise."""
        assert self._input is not None and self._journey is not None
        if (
            self._input.first_wake is None
            or self._input.resume is not None
            or step.id != self._journey.steps[0].id
            or self._visits.get(step.id) != 1
        ):
            return None
        self._stale = True  # the wait has passed, if only in part: conditions see today's data
        return self._input.first_wake

    async def _wait_until(self, step: WaitUntilStep) -> None:
        spec = step.wait_until
        value = await self._value(spec.date) if spec.date else None
        moment = wait_until_moment(spec, value, now=self._now(), tz=self._timezone())
        if moment is None:
            workflow.logger.info("step %s: date is empty, going on", step.id)
            return
        await self._sleep_until(moment, "waiting")

    async def _wait_for(self, step: WaitForStep, follow: str | None) -> str | None:
        deadline = self._reentry or self._now() + parse_duration(step.timeout)
        self._reentry = None
        self._doing = f"waiting for {step.wait_for}"
        await self._flush()
        if step.when:
            await self._refresh()  # the condition compares the event with today's data
        await self._show(step.id, deadline)
        found: list[CustomerEvent] = []
        broken: list[str] = []

        def arrived() -> bool:
            if self._ended is not None:
                return True
            for event in self._inbox:
                if event.type != step.wait_for or not self._matches(step.match, event):
                    continue
                if step.when:
                    scope = {**self._ctx, "event": event_scope(event), "now": self._now()}
                    try:
                        if not expressions.truthy(step.when, scope):
                            continue  # not the event this step waits for: keep waiting
                    except expressions.ExpressionError as exc:
                        broken.append(str(exc))  # fails the run below, not this callback
                        return True
                found.append(event)
                return True
            return False

        self._resume_point = (step.id, step.id, True)
        waited = await self._host.wait(arrived, deadline - self._now())
        self._wake = self._resume_point = None
        if not waited:
            return step.on_timeout or follow
        self._check_ended()
        if broken:
            raise ApplicationError(
                f"step {self._step}: {broken[0]}", type="ExpressionError", non_retryable=True
            )
        event = found[0]
        self._events[step.wait_for] = event_scope(event)
        self._ctx.setdefault("events", {})[step.wait_for] = self._events[step.wait_for]
        self._stale = True
        return follow

    async def _branch(self, step: BranchStep, follow: str | None) -> str | None:
        for number, case in enumerate(step.branch, start=1):
            if await self._condition(case.if_):
                self._note("branched", step.id, f"case {number} → {case.goto}", case.if_)
                return case.goto
        target = step.else_ or follow
        self._note("branched", step.id, f"no case is true → {target or 'end'}")
        return target

    def _split(self, step: SplitStep, follow: str | None) -> str | None:
        assert self._input is not None and self._journey is not None
        # The one arm function the reports use too (a hash: same customer, same arm).
        arm = choose_arm(self._input.customer_id, self._journey.name, step)
        if arm is None:
            return follow
        self._vars.setdefault("splits", {})[step.id] = arm.name
        if arm.holdout:
            # Patched: a yearly run flushes its notes before the next cycle, so a new note
            # here would add a command to histories from before arms were recorded.
            if self._host.patched(SPLIT_ARM_NOTES):
                self._note("branched", step.id, f"split arm {arm.name}: hold-out", arm=arm)
            raise _Ended("held_out", f"hold-out group of split {step.id}")
        self._note("branched", step.id, f"split arm {arm.name} → {arm.goto or follow}", arm=arm)
        return arm.goto or follow

    async def _update(self, step: UpdateStep) -> None:
        assert self._input is not None
        attributes = {}
        for name, source in step.update.attributes.items():
            attributes[name] = jsonable(await self._value(source))
        await workflow.execute_local_activity(
            UPDATE_CUSTOMER,
            UpdateCustomerInput(
                customer_id=self._input.customer_id,
                attributes=attributes,
                tags_add=step.update.tags_add,
                tags_remove=step.update.tags_remove,
                now=self._now(),
            ),
            **LOCAL_OPTIONS,
        )
        tags = [f"+{t}" for t in step.update.tags_add] + [f"-{t}" for t in step.update.tags_remove]
        if tags:
            self._note("tagged", step.id, " ".join(tags))
        if attributes:
            self._note("updated", step.id, "attributes " + ", ".join(sorted(attributes)))
        self._stale = True

    async def _call(self, step: CallStep) -> None:
        assert self._input is not None and self._journey is not None
        key = f"{self._host.workflow_id}#{self._input.cycle}:{step.id}"
        self._doing = f"calling {step.call}"
        self._host.away()
        result = await workflow.execute_activity(
            step.call,
            CallActivityInput(
                key=key,
                customer_id=self._input.customer_id,
                journey=self._journey.name,
                args=step.with_,
                now=self._now(),
            ),
            result_type=CallActivityResult,
            **CALL_OPTIONS,
        )
        for emitted in result.events:
            # An activity's event (voucher_issued) goes to the customer workflow like any other.
            event = CustomerEvent(customer_id=self._input.customer_id, **emitted.model_dump())
            await self._host.emit(event)
        if step.as_:
            self._vars[step.as_] = result.values
            self._ctx[step.as_] = hydrate(result.values)

    # --- helpers -----------------------------------------------------------------------------
    async def _wait_for_date(self) -> None:
        assert self._journey is not None and self._journey.trigger.date is not None
        trigger = self._journey.trigger
        value = await self._value(trigger.date or "")
        day = expressions.next_anniversary(value, self._now()) if trigger.every else value
        if day is None:
            raise _Ended("completed", "no date to wait for", by_event=True)
        moment = expressions.resolve_moment(
            day,
            tz=self._timezone(),
            at=parse_clock(trigger.at),
            default_time=parse_clock(trigger.at),
        )
        if moment <= self._now() and trigger.every:
            next_day = expressions.next_anniversary(value, self._now() + timedelta(days=1))
            moment = expressions.resolve_moment(
                next_day,
                tz=self._timezone(),
                at=parse_clock(trigger.at),
                default_time=parse_clock(trigger.at),
            )
        self._resume_point = (self._journey.steps[0].id, None, False)
        await self._sleep_until(moment, f"waiting for {trigger.date}")

    async def _sleep_until(self, moment: datetime, doing: str) -> None:
        delay = moment - self._now()
        if delay <= timedelta():
            self._resume_point = None
            return
        await self._flush()
        self._doing = f"{doing} ({format_duration(delay)})"
        await self._show(self._step or "start", moment)
        await self._host.wait(lambda: self._ended is not None, delay)
        self._wake = self._resume_point = None
        self._stale = True
        self._check_ended()

    async def _show(self, step: str, wake: datetime) -> None:
        self._wake = wake
        self._host.show(step, wake)

    async def _maybe_continue_as_new(self, follow: str | None) -> None:
        """At the end of a wait step (a step boundary), start afresh if the history is long."""
        assert self._input is not None
        if not self._host.history_is_long():
            return
        await self._flush()
        self._host.continue_as_new(self._going_on(ResumeState(step=follow)))

    def _going_on(self, resume: ResumeState) -> JourneyInput:
        """The input that goes on with this run from `resume` (its step, and its wait if any),
        with what the run has gathered so far."""
        assert self._input is not None
        gathered = {
            "vars": self._vars,
            "events": self._events,
            "visits": self._visits,
            "inbox": self._inbox,
            "winding_down": self._winding_down,
        }
        return self._input.model_copy(
            update={"resume": resume.model_copy(update=gathered), "context": jsonable(self._ctx)}
        )

    async def _refresh(self) -> None:
        """Conditions after a wait see today's data: one local activity, only when needed."""
        assert self._input is not None
        if not self._stale:
            return
        result = await workflow.execute_local_activity(
            LOAD_CONTEXT,
            LoadContextInput(
                customer_id=self._input.customer_id,
                order_id=self._input.order_id,
                skus=self._input.skus,
                now=self._now(),
            ),
            result_type=ContextResult,
            **LOCAL_OPTIONS,
        )
        fresh = hydrate(result.context)
        for key in ("trigger", "item", "line", "events"):
            if key in self._ctx:
                fresh[key] = self._ctx[key]
        for name, value in self._vars.items():
            fresh.setdefault(name, hydrate(value))
        self._ctx = fresh
        self._stale = False

    async def _condition(self, source: str) -> bool:
        await self._refresh()
        available = (self._ctx.get("customer") or {}).get("attributes") or {}
        if needs_activity(source, available) and self._host.patched(PERSONAL_CONDITIONS):
            return await self._condition_in_activity(source)
        return bool(await self._value(source))

    async def _condition_in_activity(self, source: str) -> bool:
        """A condition on a personal attribute (one the run's copy leaves out) is evaluated in
        an activity that loads the customer: only true or false enters the history."""
        assert self._input is not None
        try:
            result: ConditionResult = await workflow.execute_local_activity(
                EVALUATE_CONDITION,
                EvaluateConditionInput(
                    customer_id=self._input.customer_id,
                    expression=source,
                    scope=jsonable({**self._ctx, "now": self._now()}),
                ),
                result_type=ConditionResult,
                **LOCAL_OPTIONS,
            )
        except ActivityError as exc:
            cause = exc.cause
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
            self._failing = source
            raise ApplicationError(
                f"step {self._step}: {reason}", type="ExpressionError", non_retryable=True
            ) from None
        return result.value

    async def _value(self, source: str) -> Any:
        await self._refresh()
        scope = {**self._ctx, "now": self._now()}
        try:
            return expressions.evaluate(source, scope)
        except expressions.ExpressionError as exc:
            self._failing = source
            # A data problem must not fail the workflow task forever: fail the run visibly.
            raise ApplicationError(
                f"step {self._step}: {exc}", type="ExpressionError", non_retryable=True
            ) from None

    def _matches(self, match: str, event: CustomerEvent) -> bool:
        return matches(match, self._run_event(event))

    def _category(self, step: SendStep) -> str:
        assert self._journey is not None
        return step.category or self._journey.settings.category

    def _transactional_ahead(self, step_id: str | None) -> bool:
        """Whether a transactional send can still happen from this step on (this one included)."""
        assert self._journey is not None
        journey = self._journey
        known = {step.id for step in journey.steps}
        todo, seen = [step_id] if step_id else [], set()
        while todo:
            current = todo.pop()
            if current in seen or current not in known:
                continue
            seen.add(current)
            step = journey.step(current)
            if isinstance(step, SendStep) and self._category(step) == "transactional":
                return True
            todo.extend(target for target, _cost in edges(journey, step) if target is not None)
        return False

    def _timezone(self) -> str:
        return timezone_of(self._ctx)

    def _check_ended(self) -> None:
        if self._ended is not None:
            raise self._ended

    def _note(
        self,
        kind: RunEventKind,
        step: str | None,
        reason: str | None,
        expression: str | None = None,
        *,
        arm: SplitArm | None = None,
    ) -> None:
        """Keep what the run did for its record; written at the next wait or at the end."""
        if not self._recording:
            return
        self._notes.append(
            RunEventRecord(
                key=self._host.note_key(self._noted),
                kind=kind,
                at=self._now(),
                step=step,
                reason=reason,
                expression=expression,
                arm=arm.name if arm else None,
                holdout=arm.holdout if arm else False,
            )
        )
        self._noted += 1

    async def _flush(self) -> None:
        """Write the notes before a wait: one local activity per wait, only when there are some."""
        if not self._notes:
            return
        events, self._notes = self._notes, []
        await workflow.execute_local_activity(
            RECORD_RUN_EVENTS,
            RecordRunEventsInput(workflow_id=self._host.workflow_id, events=events),
            **LOCAL_OPTIONS,
        )

    async def _record(
        self,
        status: RunEnd,
        reason: str | None,
        *,
        expression: str | None = None,
        goal: GoalReached | None = None,
    ) -> None:
        self._note(status, self._step, reason, expression)
        events, self._notes = self._notes, []
        await workflow.execute_local_activity(
            RECORD_RUN,
            RecordRunInput(
                workflow_id=self._host.workflow_id,
                status=status,
                reason=reason,
                now=self._now(),
                events=events,
                goal=goal,
            ),
            **LOCAL_OPTIONS,
        )


def goal_reached(end: Ending, event: CustomerEvent) -> GoalReached | None:
    """The goal and the event that met it, when a goal (not an exit rule) ended the run."""
    if end.goal is None:
        return None
    return GoalReached(
        goal=end.goal, event_id=event.id, event_type=event.type, order_id=event.order_id
    )


def event_scope(event: CustomerEvent) -> dict[str, Any]:
    """What expressions see as `event` (and a run keeps of an event it waited for)."""
    return {"type": event.type, "at": event.at, "order_id": event.order_id, **event.data}


def run_event(event: CustomerEvent, *, order_id: str | None, skus: list[str]) -> RunEvent:
    """The event as the exit rules of a run of this order and these products see it."""
    return RunEvent(
        type=event.type,
        scope=event_scope(event),
        order_id=event.order_id,
        skus=list(event.skus),
        run_order_id=order_id,
        run_skus=list(skus),
    )
