"""Live on Trouw's own dev server: `status` sees a stuck run (its workflow task keeps failing)
with its error, and a task queue that no worker polls."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from temporalio import activity, workflow
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import workflows.run
from activities.services import Services
from tests.e2e.test_slice import e2e_settings
from tests.purchases import ingest_purchase
from trouw.domain.db.engine import make_engine, migrate, session_scope
from trouw.domain.db.models import JourneyRun
from trouw.domain.why import temporal_outcome
from trouw.language.contracts import CustomerInput, customer_workflow_id
from trouw.stack.health import stuck_runs_check, workers_check
from trouw.stack.temporal import connect, start_dev_server, wait_for_port
from trouw.stack.worker import build_worker
from workflows.customer import CustomerWorkflow

pytestmark = pytest.mark.slow


@activity.defn(name="noop")
async def noop() -> None:
    """Never called."""


@workflow.defn(name="Journey")
class BrokenJourney:
    """A journey run whose code raises: its workflow task fails again and again."""

    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("boom in workflow code")


async def test_status_lists_a_stuck_run_and_an_unpolled_queue(tmp_path: Path) -> None:
    settings = e2e_settings(tmp_path)
    settings.home.mkdir(parents=True)
    server = start_dev_server(settings)
    try:
        await wait_for_port("127.0.0.1", settings.temporal_port, within=60, process=server.process)
        client = await connect(settings)
        namespace = settings.temporal_namespace

        def now() -> datetime:
            return datetime.now(UTC)

        idle = await workers_check(client, namespace=namespace, task_queue="nobody", now=now())
        assert not idle.ok and idle.summary.endswith("no worker is polling")
        async with Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[BrokenJourney],
            activities=[noop],  # so that the worker polls for activity tasks too
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            await client.start_workflow(
                "Journey", id="journey:s1:broken:o1", task_queue=settings.task_queue
            )
            deadline = asyncio.get_running_loop().time() + 90
            while (stuck := await stuck_runs_check(client)).ok:
                assert asyncio.get_running_loop().time() < deadline, "never reported stuck"
                await asyncio.sleep(1)
            polled = await workers_check(
                client, namespace=namespace, task_queue=settings.task_queue, now=now()
            )
        assert polled.ok and polled.summary.startswith(f"task queue {settings.task_queue}: 1 ")
        assert stuck.summary == "1 run(s) stuck on a failing workflow task"
        assert stuck.details[0].startswith("journey:s1:broken:o1: its workflow task fails")
        assert "boom in workflow code" in stuck.details[0]
    finally:
        server.stop()


async def _bugged_send(self: Any, step: Any) -> None:
    raise RuntimeError(f"bug in step {step.id}")


async def test_why_says_a_run_inside_a_stuck_customer_workflow_is_stuck_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in one run inside a customer workflow fails that workflow's task again and again.
    Its runs have no execution of their own and the workflow answers no query: `trouw why`
    must say each is stuck on its customer workflow's failing task, with the error, not that
    Temporal does not know it; `trouw status` lists the customer workflow as stuck."""
    settings = e2e_settings(tmp_path)
    settings.home.mkdir(parents=True)
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    services = Services.from_settings(settings, engine=engine)
    event = ingest_purchase(
        engine,
        id="evt-stuck",
        customer="stuck-1",
        order="o-stuck",
        profile={"id": "stuck-1", "first_name": "Sam", "email": "sam@example.com"},
        at=datetime.now(UTC),
    )
    monkeypatch.setattr(workflows.run.JourneyRunner, "_send", _bugged_send)  # unsandboxed
    server = start_dev_server(settings)
    try:
        await wait_for_port("127.0.0.1", settings.temporal_port, within=60, process=server.process)
        client = await connect(settings)
        async with build_worker(client, services, task_queue=settings.task_queue, sandboxed=False):
            await client.start_workflow(
                CustomerWorkflow.run,
                CustomerInput(customer_id="stuck-1", search_attributes=True, inline_runs=True),
                id=customer_workflow_id("stuck-1"),
                task_queue=settings.task_queue,
                start_signal="record_event",
                start_signal_args=[event],
            )
            deadline = asyncio.get_running_loop().time() + 90
            while (stuck := await stuck_runs_check(client)).ok:
                assert asyncio.get_running_loop().time() < deadline, "never reported stuck"
                await asyncio.sleep(1)
            with session_scope(engine) as session:
                running = sorted(
                    run.workflow_id
                    for run in session.exec(select(JourneyRun)).all()
                    if run.customer_id == "stuck-1" and run.status == "running"
                )
            outcomes = [
                await temporal_outcome(client, workflow_id, customer_id="stuck-1")
                for workflow_id in running
            ]
    finally:
        server.stop()
        engine.dispose()
    assert stuck.details[0].startswith("customer:stuck-1: its workflow task fails"), stuck.details
    assert running, "the purchase's runs are recorded running"
    for workflow_id, outcome in zip(running, outcomes, strict=True):
        assert outcome is not None, workflow_id
        assert outcome.status == "failing", (workflow_id, outcome)
        assert outcome.reason is not None
        assert outcome.reason.startswith(
            "no execution of its own; its customer workflow customer:stuck-1 is stuck: "
            "its workflow task fails (attempt "
        ), outcome.reason
        assert "RuntimeError: bug in step confirmation" in outcome.reason
