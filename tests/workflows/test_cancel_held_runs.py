"""An operator's cancel reaches runs the customer workflow still holds (the engine before runs
ran inside it) or runs inside it: ended, recorded as cancelled with the operator's reason, and
never going on when their wait ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

import trouw.stack.runs
from activities.journey_runs import JourneyActivities
from activities.services import Services
from tests.purchases import ingest_purchase
from tests.time_skipping import time_skipping
from trouw.domain.db.engine import get_engine, session_scope
from trouw.domain.db.models import JourneyRun, JourneyRunEvent
from trouw.language.contracts import (
    CANCEL_HELD_RUNS_SIGNAL,
    CancelHeldRuns,
    CustomerInput,
    MatchJourneysInput,
    WaitingRun,
    customer_workflow_id,
)
from trouw.language.journey.model import Journey
from trouw.settings import Settings
from trouw.stack.runs import cancel_runs
from trouw.stack.worker import build_worker
from workflows.customer import CustomerWorkflow

CUSTOMER = "hc-1"
HELD = f"journey:{CUSTOMER}:reactivation:o-hc"


@pytest.mark.parametrize("inline", [False, True], ids=["held", "inline"])
async def test_a_cancelled_held_run_is_recorded_and_never_starts(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    engine = get_engine(settings.effective_database_url)
    services = Services.from_settings(settings, engine=engine)
    now = datetime.now(UTC)
    purchase_event = ingest_purchase(
        engine,
        id="evt-hc",
        customer=CUSTOMER,
        order="o-hc",
        profile={"id": CUSTOMER, "first_name": "An", "email": "an@example.com"},
        at=now,
    )

    # The time-skipping server has no custom search attributes: visibility lists no running
    # run of reactivation, which is true (the held run is no execution).
    async def no_running(*_args: Any, **_kwargs: Any) -> list[trouw.stack.runs.RunningRun]:
        return []

    monkeypatch.setattr(trouw.stack.runs, "running_runs", no_running)
    async with time_skipping() as env:
        async with build_worker(env.client, services, task_queue="held-cancel"):
            handle = await env.client.start_workflow(
                CustomerWorkflow.run,
                CustomerInput(customer_id=CUSTOMER, search_attributes=False, inline_runs=inline),
                id=customer_workflow_id(CUSTOMER),
                task_queue="held-cancel",
                start_signal="record_event",
                start_signal_args=[purchase_event],
            )
            await env.sleep(timedelta(seconds=2))
            before = await handle.query("held_runs", result_type=list[str])

            async def cancel(reason: str) -> trouw.stack.runs.CancelReport:
                return await cancel_runs(
                    env.client,
                    engine,
                    journey="reactivation",
                    customer=CUSTOMER,
                    by="cli:ann",
                    reason=reason,
                    now=datetime.now(UTC),
                )

            report = await cancel("complaint")
            await env.sleep(timedelta(seconds=2))
            after = await handle.query("held_runs", result_type=list[str])
            status = await handle.query("status", result_type=str)
            again = await cancel("twice")
            # Past the 180-day wait the run would have started (or gone on) at: it does not.
            await env.sleep(timedelta(days=200))
            with pytest.raises(RPCError) as missing:
                await env.client.get_workflow_handle(HELD).describe()
            customer = await handle.describe()
    assert HELD in before
    assert report.cancelled == [] and report.held == [HELD]
    assert HELD not in after and sorted(after) == sorted(set(before) - {HELD})
    assert "reactivation until" not in status
    assert again.held == []  # nothing held any more: no signal, nothing recorded twice
    assert missing.value.status == RPCStatusCode.NOT_FOUND
    assert customer.status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)
    # and no reactivation message went out 180 days on
    assert "reactivation" not in [
        message.template for message in _messages(engine) if message.customer_id == CUSTOMER
    ]
    with session_scope(engine) as session:
        run = session.exec(select(JourneyRun).where(JourneyRun.workflow_id == HELD)).one()
        kinds = session.exec(
            select(JourneyRunEvent.kind, JourneyRunEvent.step, JourneyRunEvent.reason).where(
                JourneyRunEvent.workflow_id == HELD
            )
        ).all()
        others = session.exec(
            select(JourneyRun.journey, JourneyRun.status).where(
                JourneyRun.customer_id == CUSTOMER, JourneyRun.workflow_id != HELD
            )
        ).all()
    assert (run.status, run.end_reason) == ("cancelled", "cancelled by cli:ann: complaint")
    assert run.ended_at is not None
    ended = [(kind, reason) for kind, _step, reason in kinds if kind == "cancelled"]
    assert ended == [("cancelled", "cancelled by cli:ann: complaint")]
    assert all(step is not None for kind, step, _ in kinds if kind == "cancelled")
    # the customer's other runs are untouched by the cancel (none of them was cancelled)
    assert others and all(status != "cancelled" for _journey, status in others)


def _messages(engine: Any) -> list[Any]:
    from trouw.domain.db.models import Message

    with session_scope(engine) as session:
        return list(session.exec(select(Message)).all())


@pytest.mark.parametrize("inline", [False, True], ids=["held", "inline"])
async def test_a_cancel_that_comes_with_the_first_task_of_an_execution_is_not_lost(
    settings: Settings, inline: bool
) -> None:
    """An operator's cancel can reach a customer workflow that has just continued as new: the
    signal then comes with the new execution's first task, and its handler runs before the
    workflow's main method has taken up the runs its input carries. The held run must still
    end cancelled, not wait its 180 days and start."""
    engine = get_engine(settings.effective_database_url)
    services = Services.from_settings(settings, engine=engine)
    now = datetime.now(UTC)
    purchase = ingest_purchase(
        engine,
        id="evt-early",
        customer="early-1",
        order="o-early",
        profile={"id": "early-1", "first_name": "Ed", "email": "ed@example.com"},
        at=now,
    )
    plans = JourneyActivities(services)._match(
        MatchJourneysInput(customer_id="early-1", event=purchase, now=now)
    )
    (plan,) = [plan for plan in plans.runs if plan.journey == "reactivation"]
    assert plan.due is not None and plan.due > now  # a run the customer workflow holds
    # What the execution before carried over continue-as-new: the held run.
    listens = sorted(Journey.model_validate(plan.definition).listens_to())
    carried = CustomerInput(
        customer_id="early-1",
        seen=[purchase.id],
        waiting=[WaitingRun(plan=plan, trigger=purchase, listens=listens)],
        search_attributes=False,
        inline_runs=inline,
    )
    async with time_skipping() as env:
        async with build_worker(env.client, services, task_queue="early-cancel"):
            handle = await env.client.start_workflow(
                CustomerWorkflow.run,
                carried,
                id=customer_workflow_id("early-1"),
                task_queue="early-cancel",
                start_signal=CANCEL_HELD_RUNS_SIGNAL,
                start_signal_args=[
                    CancelHeldRuns(journey="reactivation", reason="cancelled by cli:ann: early")
                ],
            )
            await env.sleep(timedelta(seconds=2))
            held = await handle.query("held_runs", result_type=list[str])
            await env.sleep(timedelta(days=200))  # past the moment it was held until
    assert held == []
    with session_scope(engine) as session:
        run = session.exec(
            select(JourneyRun).where(JourneyRun.workflow_id == plan.workflow_id)
        ).one()
    assert (run.status, run.end_reason) == ("cancelled", "cancelled by cli:ann: early")
    assert "reactivation" not in [
        message.template for message in _messages(engine) if message.customer_id == "early-1"
    ]
