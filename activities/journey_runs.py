"""Activities that read and record journey runs: match triggers, load context, record outcomes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.services import Services
from trouw.domain.context import HISTORY_REWRITES, build_context, for_history
from trouw.domain.control import pause_reason, paused_journeys
from trouw.domain.db.engine import insert_new, session_scope
from trouw.domain.db.models import Customer, JourneyRun, JourneyRunEvent, SplitAssignment
from trouw.domain.interest import mark_matched, register_versions
from trouw.domain.measure.goals import record_goal
from trouw.language.attributes import (
    AttributeValueError,
    Declared,
    check_values,
    context_attributes,
    declared_attributes,
)
from trouw.language.contracts import (
    EVALUATE_CONDITION,
    LOAD_CONTEXT,
    MATCH_JOURNEYS,
    RECORD_RUN,
    RECORD_RUN_EVENTS,
    UPDATE_CUSTOMER,
    ConditionResult,
    ContextResult,
    EvaluateConditionInput,
    LoadContextInput,
    MatchJourneysInput,
    MatchJourneysResult,
    RecordRunEventsInput,
    RecordRunInput,
    RunEventRecord,
    RunPlan,
    UpdateCustomerInput,
)
from trouw.language.journey import expressions
from trouw.language.journey.model import Journey
from trouw.language.journey.plain import hydrate, jsonable
from trouw.language.journey.triggers import (
    PlannedRun,
    Refusal,
    TriggerFailure,
    listens_for_start,
    plan_runs,
    run_workflow_id,
)
from trouw.language.journey.waits import first_wait_end
from trouw.stack import metrics
from trouw.stack.logs import log_context
from trouw.stack.runs import operator_cancel_reason, run_record

log = logging.getLogger("trouw.journeys")


class SharedContext:
    """The history-safe copy of an event's context, made plain (and read back) once per event.

    Every run an event starts gets the event's context plus keys of its own (trigger, the
    for_each item, its product): those are all that is converted per run. Equal to
    jsonable(for_history(run_context)) and its hydrate, key by key."""

    def __init__(self, context: dict[str, Any], declared: Declared | None) -> None:
        self.context = context
        self.declared = declared
        self.plain = jsonable(for_history(context, declared))
        self.scope = hydrate(self.plain)

    def for_run(self, run_context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the run's context as it travels in its input, the same with dates as dates)."""
        own = {
            key: value
            for key, value in run_context.items()
            if key not in self.context or self.context[key] is not value
        }
        if own.keys() & HISTORY_REWRITES.keys():  # for_history rewrites it: convert whole
            plain = jsonable(for_history(run_context, self.declared))
            return plain, hydrate(plain)
        plain_own = jsonable(own)
        return {**self.plain, **plain_own}, {**self.scope, **hydrate(plain_own)}


def _record_trigger_failure(
    session: Session, input: MatchJourneysInput, failure: TriggerFailure
) -> None:
    """The failed journey's run, in the ledger with its reason; other journeys go on."""
    journey = failure.journey
    workflow_id = run_workflow_id(input.customer_id, journey.name, f"failed:{input.event.id}")
    log.error("journey %s failed for event %s: %s", journey.name, input.event.id, failure.reason)
    if run_record(session, workflow_id) is not None:
        return
    run = JourneyRun(**_run_values(input, journey, f"failed:{input.event.id}"))
    run.status, run.ended_at, run.end_reason = "failed", input.now, failure.reason[:2000]
    session.add(run)
    session.flush()
    metrics.on_commit(session, metrics.RUNS.labels(journey=journey.name, outcome="failed").inc)
    _insert_events(
        session,
        [
            _event_row(
                key=f"{workflow_id}:failed",
                customer_id=input.customer_id,
                journey=journey.name,
                workflow_id=workflow_id,
                kind="failed",
                at=input.now,
                reason=failure.reason,
                expression=failure.expression,
            )
        ],
    )


def _run_values(input: MatchJourneysInput, journey: Journey, key: str) -> dict[str, Any]:
    """A new run's row of journey_run, as its columns."""
    return {
        "workflow_id": run_workflow_id(input.customer_id, journey.name, key),
        "customer_id": input.customer_id,
        "journey": journey.name,
        "version": journey.version,
        "reentry_key": key,
        "event_source_id": input.event.id,
        "started_at": input.now,
        "status": "running",
        "ended_at": None,
        "end_reason": None,
    }


# Built once (every match_journeys reads it); the planned runs' workflow ids are bound.
_KNOWN_RUNS = select(JourneyRun).where(
    col(JourneyRun.workflow_id).in_(bindparam("ids", expanding=True))
)


class JourneyActivities:
    def __init__(self, services: Services) -> None:
        self.services = services

    @activity.defn(name=MATCH_JOURNEYS)
    async def match_journeys(self, input: MatchJourneysInput) -> MatchJourneysResult:
        with log_context(customer=input.customer_id, event_id=input.event.id):
            return await asyncio.to_thread(self._match, input)

    def _match(self, input: MatchJourneysInput) -> MatchJourneysResult:
        event = input.event
        journeys = [
            journey
            for journey in self.services.catalog.journeys().values()
            if listens_for_start(journey, event.type)
        ]
        if not journeys:
            # No journey starts on this event type: no context to build, no query at all.
            return MatchJourneysResult(runs=[])
        declared = declared_attributes(self.services.settings)
        runs: list[RunPlan] = []
        with session_scope(self.services.engine) as session:
            # Answered with the runs this transaction records: until then the relay signals
            # this customer's events that such runs would listen to (trouw.domain.interest).
            mark_matched(session, event.id, input.now)
            context = build_context(
                session,
                customer_id=input.customer_id,
                order_id=event.order_id,
                skus=event.skus,
                now=input.now,
                attributes=declared,
            )
            refusals: list[Refusal] = []
            plans, failures = plan_runs(journeys, event, context, input.now, refusals)
            for failure in failures:
                _record_trigger_failure(session, input, failure)
            events = [
                _not_started(
                    input,
                    refusal.journey.name,
                    refusal.reason,
                    scope=refusal.journey.name,
                    expression=refusal.expression,
                )
                for refusal in refusals
            ]
            paused = paused_journeys(session)
            # One query for the re-entry guard of every planned run (a purchase plans 4-5).
            ids = [
                run_workflow_id(input.customer_id, plan.journey.name, plan.key) for plan in plans
            ]
            known = {
                run.workflow_id: run for run in session.exec(_KNOWN_RUNS, params={"ids": ids}).all()
            }
            # The run events in the order they were decided; a start is kept only if its run
            # row is this transaction's (a run another writer recorded first is theirs).
            decided: list[dict[str, Any] | str] = []
            kept: list[tuple[PlannedRun, str]] = []
            new: dict[str, PlannedRun] = {}
            for plan, workflow_id in zip(plans, ids, strict=True):
                journey = plan.journey
                pause = paused.get(journey.name)
                if pause is not None:
                    # A paused journey starts no runs; the event is not kept for a later resume.
                    decided.append(
                        _not_started(input, journey.name, pause_reason(pause), scope=workflow_id)
                    )
                    continue
                existing = known.get(workflow_id)
                if existing is not None and existing.event_source_id != event.id:
                    reason = (
                        f"re-entry guard: run {workflow_id} was started by event "
                        f"{existing.event_source_id} (re-entry: {journey.trigger.reentry})"
                    )
                    decided.append(_not_started(input, journey.name, reason, scope=workflow_id))
                    continue
                if existing is None:
                    if workflow_id in new:
                        continue  # planned twice: the first plan is the run
                    new[workflow_id] = plan
                    decided.append(workflow_id)
                kept.append((plan, workflow_id))
            started = _start_runs(session, input, new)
            _insert_events(
                session,
                [
                    *events,
                    *(
                        _started(input, entry, new[entry].journey)
                        if isinstance(entry, str)
                        else entry
                        for entry in decided
                        if not isinstance(entry, str) or entry in started
                    ),
                ],
            )
            shared = SharedContext(context, declared)
            for plan, workflow_id in kept:
                if workflow_id in new and workflow_id not in started:
                    continue  # another writer recorded this run first: it is theirs
                journey = plan.journey
                history_context, scope = shared.for_run(plan.context)
                runs.append(
                    RunPlan(
                        workflow_id=workflow_id,
                        journey=journey.name,
                        version=journey.version,
                        definition=journey.model_dump(mode="json", by_alias=True),
                        reentry_key=plan.key,
                        context=history_context,
                        order_id=event.order_id,
                        skus=plan.skus,
                        # From the context the run itself will see, so both agree on the moment.
                        due=first_wait_end(journey, scope, input.now),
                    )
                )
        return MatchJourneysResult(runs=runs)

    @activity.defn(name=LOAD_CONTEXT)
    async def load_context(self, input: LoadContextInput) -> ContextResult:
        def load() -> ContextResult:
            declared = declared_attributes(self.services.settings)
            with session_scope(self.services.engine) as session:
                context = build_context(
                    session,
                    customer_id=input.customer_id,
                    order_id=input.order_id,
                    skus=input.skus,
                    now=input.now,
                    attributes=declared,
                )
            return ContextResult(context=jsonable(for_history(context, declared)))

        return await asyncio.to_thread(load)

    @activity.defn(name=EVALUATE_CONDITION)
    async def evaluate_condition(self, input: EvaluateConditionInput) -> ConditionResult:
        """A condition on a personal attribute, evaluated here, next to the data: the workflow
        gets true or false, and the value never enters its history."""

        def evaluate() -> ConditionResult:
            declared = declared_attributes(self.services.settings)
            with session_scope(self.services.engine) as session:
                customer = session.get(Customer, input.customer_id)
                stored = dict(customer.attributes or {}) if customer is not None else {}
            scope = hydrate(input.scope)
            scope["customer"] = {
                **(scope.get("customer") or {}),
                "attributes": context_attributes(stored, declared, personal=True),
            }
            try:
                return ConditionResult(value=expressions.truthy(input.expression, scope))
            except expressions.ExpressionError as exc:
                raise ApplicationError(
                    str(exc), type="ExpressionError", non_retryable=True
                ) from None

        return await asyncio.to_thread(evaluate)

    @activity.defn(name=UPDATE_CUSTOMER)
    async def update_customer(self, input: UpdateCustomerInput) -> None:
        def update() -> None:
            declared = declared_attributes(self.services.settings)
            try:
                values = check_values(input.attributes, declared)
            except AttributeValueError as exc:
                # A journey that passed validation writes only declared attributes; a changed
                # declaration fails the run with the reason, not the workflow task forever.
                raise ApplicationError(
                    f"update: {exc}", type="AttributeValueError", non_retryable=True
                ) from None
            with session_scope(self.services.engine) as session:
                customer = session.get(Customer, input.customer_id)
                if customer is None:
                    return
                customer.attributes = {**(customer.attributes or {}), **values}
                tags = [t for t in (customer.tags or []) if t not in input.tags_remove]
                tags += [t for t in input.tags_add if t not in tags]
                customer.tags = tags
                customer.updated_at = input.now
                session.add(customer)

        await asyncio.to_thread(update)

    @activity.defn(name=RECORD_RUN)
    async def record_run(self, input: RecordRunInput) -> None:
        def record() -> None:
            with session_scope(self.services.engine) as session:
                run = run_record(session, input.workflow_id)
                if run is None:
                    return
                if input.status != "running" and run.status != input.status:
                    metrics.on_commit(
                        session, metrics.RUNS.labels(journey=run.journey, outcome=input.status).inc
                    )
                run.status = input.status
                run.end_reason = input.reason
                if input.status == "cancelled":
                    # The run knows only that it was cancelled; the operator said who and why.
                    run.end_reason = (
                        operator_cancel_reason(session, run.workflow_id) or input.reason
                    )
                run.ended_at = input.now if input.status != "running" else None
                session.add(run)
                _add_run_events(session, run, input.events)
                if input.status == "converted" and input.goal is not None:
                    record_goal(session, run, input.goal, at=input.now)

        await asyncio.to_thread(record)

    @activity.defn(name=RECORD_RUN_EVENTS)
    async def record_run_events(self, input: RecordRunEventsInput) -> None:
        def record() -> None:
            with session_scope(self.services.engine) as session:
                run = run_record(session, input.workflow_id)
                if run is not None:
                    _add_run_events(session, run, input.events)

        await asyncio.to_thread(record)


def _add_run_events(session: Session, run: JourneyRun, events: Sequence[RunEventRecord]) -> None:
    _insert_events(
        session,
        [
            _event_row(
                key=event.key,
                customer_id=run.customer_id,
                journey=run.journey,
                workflow_id=run.workflow_id,
                kind=event.kind,
                at=event.at,
                step=event.step,
                reason=event.reason,
                expression=event.expression,
            )
            for event in events
        ],
    )
    for event in events:
        if event.arm is not None and event.step is not None:
            _add_arm(session, run, event)


def _add_arm(session: Session, run: JourneyRun, event: RunEventRecord) -> None:
    """The run's arm of one split, once (a loop back through the split takes the same arm)."""
    assert event.arm is not None and event.step is not None
    exists = session.exec(
        select(SplitAssignment.id).where(
            SplitAssignment.workflow_id == run.workflow_id, SplitAssignment.step == event.step
        )
    ).first()
    if exists is None:
        session.add(
            SplitAssignment(
                workflow_id=run.workflow_id,
                customer_id=run.customer_id,
                journey=run.journey,
                version=run.version,
                step=event.step,
                arm=event.arm,
                holdout=event.holdout,
                at=event.at,
            )
        )


def _not_started(
    input: MatchJourneysInput,
    journey: str,
    reason: str,
    *,
    scope: str,
    expression: str | None = None,
) -> dict[str, Any]:
    """The run event saying the event started no run of `journey` (refused, paused, the
    re-entry guard), once per event and `scope` (the journey, or the run it would have been)."""
    return _event_row(
        key=f"{input.customer_id}:{input.event.id}:{scope}:not_started",
        customer_id=input.customer_id,
        journey=journey,
        kind="not_started",
        at=input.now,
        reason=reason,
        expression=expression,
    )


def _started(input: MatchJourneysInput, workflow_id: str, journey: Journey) -> dict[str, Any]:
    """The `started` run event of a run this transaction recorded."""
    return _event_row(
        key=f"{workflow_id}:started",
        customer_id=input.customer_id,
        journey=journey.name,
        workflow_id=workflow_id,
        kind="started",
        at=input.now,
        reason=f"{input.event.type} event {input.event.id}",
    )


def _event_row(**fields: Any) -> dict[str, Any]:
    """A run event as a row of journey_run_event (every column, for one INSERT of many)."""
    return {"workflow_id": None, "step": None, "reason": None, "expression": None, **fields}


def _insert_events(session: Session, rows: list[dict[str, Any]]) -> None:
    """Run events in one statement; a key already there (a retried activity, a replayed
    record) is skipped. Before: a look-up of each key, then an insert."""
    if rows:
        table = JourneyRunEvent.__table__  # type: ignore[attr-defined]
        session.execute(insert_new(session, table, key=["key"]), rows)


def _start_runs(
    session: Session, input: MatchJourneysInput, new: dict[str, PlannedRun]
) -> set[str]:
    """Record the new runs (workflow id -> plan) in one statement; the ids recorded.

    A run another writer recorded since the re-entry look-up is skipped alone (ON CONFLICT DO
    NOTHING), leaving the others in place; before, each run had a savepoint of its own."""
    if not new:
        return set()
    # Before the runs are recorded: the relay must see what their versions listen to as soon
    # as they count as live (trouw.domain.interest).
    register_versions(session, (plan.journey for plan in new.values()))
    table = JourneyRun.__table__  # type: ignore[attr-defined]
    rows = [_run_values(input, plan.journey, plan.key) for plan in new.values()]
    statement = insert_new(session, table, key=["workflow_id"], returning="workflow_id")
    started = set(session.execute(statement, rows).scalars())
    for workflow_id in started:
        metrics.on_commit(
            session,
            metrics.RUNS.labels(journey=new[workflow_id].journey.name, outcome="started").inc,
        )
    return started
