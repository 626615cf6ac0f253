"""Live on Trouw's own dev server: `status` sees a stuck run (its workflow task keeps failing)
with its error, and a task queue that no worker polls."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from tests.e2e.test_slice import e2e_settings
from trouw.stack.health import stuck_runs_check, workers_check
from trouw.stack.temporal import connect, start_dev_server, wait_for_port

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
