"""A worker runs at most the configured number of workflow tasks at once, on as many threads."""

from __future__ import annotations

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.services import Services
from trouw.domain.db.engine import get_engine
from trouw.settings import Settings
from trouw.stack.temporal import binary
from trouw.stack.worker import build_worker


async def test_workflow_tasks_at_once_follow_the_setting(settings: Settings) -> None:
    assert Settings().worker_max_concurrent_workflow_tasks == 8
    settings = settings.model_copy(update={"worker_max_concurrent_workflow_tasks": 3})
    services = Services.from_settings(settings, engine=get_engine(settings.effective_database_url))
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    try:
        async with build_worker(env.client, services, task_queue="limits") as worker:
            assert worker.config()["max_concurrent_workflow_tasks"] == 3
            # The threads workflow activations run on: no more than the tasks that can run.
            assert worker._workflow_worker is not None
            assert worker._workflow_worker._workflow_task_executor._max_workers == 3
    finally:
        await env.shutdown()
