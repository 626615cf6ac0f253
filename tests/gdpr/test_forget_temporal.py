"""`forget` against a real Temporal (time-skipping server): running workflows are terminated."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
import typer
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import workflow
from temporalio.client import WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from typer.testing import CliRunner

from tests.gdpr.conftest import Seeded
from trouw.commands import gdpr_cli
from trouw.domain import gdpr
from trouw.domain.db.models import Customer
from trouw.settings import Settings
from trouw.stack.temporal import binary


@workflow.defn(name="GdprTestWaiter")
class WaiterWorkflow:
    """Stands in for a customer or journey workflow: waits, or ends at once."""

    @workflow.run
    async def run(self, days: int) -> None:
        if days:
            await workflow.sleep(timedelta(days=days))


async def test_forget_terminates_running_workflows_and_ignores_closed_ones(
    engine: Engine, seeded: Seeded
) -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    queue = f"gdpr-{uuid.uuid4().hex[:8]}"
    try:
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[WaiterWorkflow],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            # The ledger still says running, but the workflow has already ended.
            ended = await env.client.start_workflow(
                WaiterWorkflow.run, 0, id=seeded.running_workflow, task_queue=queue
            )
            # Waiting for a result lets the test server skip time: without this the customer
            # workflow's year-long timer would fire and end it before `forget` runs.
            with env.auto_time_skipping_disabled():
                await ended.result()
            customer = await env.client.start_workflow(
                WaiterWorkflow.run, 365, id="customer:c1", task_queue=queue
            )

            async def cancel(ids: list[str]) -> list[str]:
                return await gdpr.terminate_workflows(env.client, [*ids, "never-started"])

            report = await gdpr.forget(engine, customer_id=seeded.customer_id, cancel=cancel)
            assert report.workflows_terminated == ["customer:c1"]
            described = await customer.describe()
            assert described.status == WorkflowExecutionStatus.TERMINATED
            assert (await ended.describe()).status == WorkflowExecutionStatus.COMPLETED
    finally:
        await env.shutdown()
    with Session(engine) as session:
        row = session.get(Customer, seeded.customer_id)
        assert row is not None and row.erased


async def test_forget_command_connects_to_the_configured_temporal(
    engine: Engine, seeded: Seeded, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    queue = f"gdpr-{uuid.uuid4().hex[:8]}"
    configured = settings.model_copy(
        update={"temporal_address": env.client.service_client.config.target_host}
    )
    monkeypatch.setattr(gdpr_cli, "_settings", lambda: configured)
    monkeypatch.setattr(gdpr_cli, "_engine", lambda _settings: engine)
    app = typer.Typer()
    app.command("forget")(gdpr_cli.forget)
    app.command("noop")(lambda: None)
    try:
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[WaiterWorkflow],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            journey = await env.client.start_workflow(
                WaiterWorkflow.run, 90, id=seeded.running_workflow, task_queue=queue
            )
            # The command runs its own event loop: give it a thread of its own.
            result = await asyncio.to_thread(
                CliRunner().invoke, app, ["forget", seeded.customer_id, "--yes"]
            )
            assert result.exit_code == 0, result.output
            assert "1 workflows terminated, 1 already closed or never started" in result.stdout
            assert (await journey.describe()).status == WorkflowExecutionStatus.TERMINATED
    finally:
        await env.shutdown()
