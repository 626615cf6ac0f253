"""Journey runs inside the customer workflow: a yearly cycle starts again in place, and a bug in
a run fails the customer workflow's task instead of vanishing with its asyncio task."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

import workflows.run
from activities.services import Services
from tests.conftest import ROOT
from tests.purchases import ingest_purchase
from tests.time_skipping import time_skipping
from tests.workflows.scenario import write_scenario
from trouw.commands.simulate import load_scenario, simulate
from trouw.domain.db.engine import get_engine
from trouw.language.contracts import CustomerInput, customer_workflow_id
from trouw.settings import Settings
from trouw.stack.worker import build_worker
from workflows.customer import CustomerWorkflow

YEARLY = [
    {
        "id": "y1",
        "first_name": "Yara",
        "email": "y1@example.com",
        "locale": "nl-BE",
        "birthday": "1985-04-20",
        "opt_in": {"email": True, "sms": False},
    }
]
REGISTER = [{"at": "0d", "type": "register", "customer": "y1"}]


async def test_a_yearly_journey_starts_its_next_cycle_in_place(tmp_path: Path) -> None:
    path = write_scenario(tmp_path / "yearly.yaml", customers=YEARLY, events=REGISTER, until="800d")
    runs: dict[str, list[Any]] = {}
    result = await simulate(
        load_scenario(path),
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        workdir=tmp_path / "sim",
        run_histories=runs,
    )
    wishes = [e for e in result.timeline if e.template == "birthday"]
    assert [(e.outcome, e.at[:16]) for e in wishes] == [
        ("sent", "2026-04-20T09:00"),
        ("sent", "2027-04-20T09:00"),
        ("sent", "2028-04-20T09:00"),
    ]
    # each cycle its own message key (the cycle is in it), one voucher per cycle
    assert len({e.at for e in wishes}) == 3
    assert set(runs) == {"customer:y1"}  # the run never was a workflow of its own


async def _bugged_send(self: Any, step: Any) -> None:
    raise RuntimeError(f"bug in step {step.id}")


@pytest.mark.parametrize("fail_runs_on_errors", [True, False], ids=["simulator", "production"])
async def test_a_bug_in_a_run_fails_the_customer_workflow_task(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, fail_runs_on_errors: bool
) -> None:
    """Not an exception lost in an asyncio task: the simulator's worker fails the customer
    workflow with it, a production worker's task fails and is retried until a fix is deployed
    (the history's WorkflowTaskFailed; a dev server's `trouw why` reports it as failing)."""
    engine = get_engine(settings.effective_database_url)
    services = Services.from_settings(settings, engine=engine)
    event = ingest_purchase(
        engine,
        id="evt-bug",
        customer="bug-1",
        order="o-bug",
        profile={"id": "bug-1", "first_name": "Bo", "email": "bo@example.com"},
        at=datetime.now(UTC),
    )
    # Unsandboxed, so the patch reaches the workflow code.
    monkeypatch.setattr(workflows.run.JourneyRunner, "_send", _bugged_send)
    async with time_skipping() as env:
        async with build_worker(
            env.client,
            services,
            task_queue="inline-bug",
            sandboxed=False,
            fail_runs_on_errors=fail_runs_on_errors,
        ):
            handle = await env.client.start_workflow(
                CustomerWorkflow.run,
                CustomerInput(customer_id="bug-1", search_attributes=False, inline_runs=True),
                id=customer_workflow_id("bug-1"),
                task_queue="inline-bug",
                start_signal="record_event",
                start_signal_args=[event],
            )
            if fail_runs_on_errors:
                with pytest.raises(WorkflowFailureError) as failed:
                    await asyncio.wait_for(handle.result(), timeout=60)
                assert "bug in step confirmation" in str(failed.value.cause)
                return
            failures: list[str] = []
            for _ in range(60):
                history = await handle.fetch_history()
                failures = [
                    event.workflow_task_failed_event_attributes.failure.message
                    for event in history.events
                    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
                ]
                if failures:
                    break
                await asyncio.sleep(1)
            description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert failures == ["bug in step confirmation"]


def test_moments_round_up_to_the_second() -> None:
    from workflows.inline import _whole_second

    moment = datetime(2026, 3, 2, 9, 0, 0, 1, tzinfo=UTC)
    assert _whole_second(moment) == moment.replace(microsecond=0) + timedelta(seconds=1)
    assert _whole_second(moment.replace(microsecond=0)) == moment.replace(microsecond=0)
