"""Worker assembly: the workflows and activities on one task queue, stopped gracefully."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import all_activities
from activities.services import Services
from trouw.stack.sandbox_code import install_workflow_code_cache
from trouw.stack.worker_logs import WorkLog
from workflows.customer import CustomerWorkflow
from workflows.insight import InsightRefreshWorkflow
from workflows.journey import JourneyWorkflow

WORKFLOWS: Sequence[type] = (CustomerWorkflow, JourneyWorkflow, InsightRefreshWorkflow)
# Pure modules the workflows import: passed through the sandbox instead of re-imported per run.
PASSTHROUGH = ("trouw.language", "pydantic", "jinja2", "markupsafe", "yaml")
# The workflow modules themselves (see workflow_runner).
WORKFLOW_PACKAGE = "workflows"


def workflow_runner(*, strict: bool = True) -> SandboxedWorkflowRunner:
    """The sandbox the workflows run in.

    strict (tests, replays, TROUW_WORKER_STRICT_SANDBOX): the workflow modules are imported
    afresh for every workflow, so a call the sandbox forbids in them (datetime.now, random,
    I/O) fails the workflow task. Not strict (a running worker by default): they are passed
    through like the pure modules above, imported once per process. That import per workflow
    was a sixth of the worker's Python time per purchase (docs/performance.md); what it guards
    against is kept out by ruff's banned APIs in workflows/ and by the test suite, which runs
    every workflow strict. The workflow modules hold no state of their own between runs.
    """
    install_workflow_code_cache()
    passthrough = PASSTHROUGH if strict else (*PASSTHROUGH, WORKFLOW_PACKAGE)
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*passthrough)
    )


class TrouwWorker(Worker):
    """A Temporal worker that stops the thread pool its workflow activations ran on when it
    stops (the SDK leaves a pool it was given running)."""

    def __init__(self, *args: Any, activation_threads: ThreadPoolExecutor, **kwargs: Any) -> None:
        super().__init__(*args, workflow_task_executor=activation_threads, **kwargs)
        self.activation_threads = activation_threads

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            self.activation_threads.shutdown(wait=False)


def build_worker(
    client: Client,
    services: Services,
    *,
    task_queue: str | None = None,
    sandboxed: bool = True,
    strict_sandbox: bool = True,
    fail_runs_on_errors: bool = False,
    build_id: str | None = None,
) -> Worker:
    """The worker; `sandboxed=False` is for the simulator only (see docs/decisions.md);
    `strict_sandbox`: see workflow_runner (a running worker passes its setting).

    `fail_runs_on_errors` (the simulator): an unexpected exception in workflow code fails the
    run at once. A production worker retries the workflow task instead, so that deploying a fix
    lets the run go on; on the time-skipping server such retries stall the whole simulation.

    `build_id` (the simulator): named instead of the SDK's default, a hash of the code of every
    module loaded (0.3-0.6 CPU s per process; the simulator starts a worker in each part).
    """
    # Validate the journeys now: refusals are logged at start, and the first event does not
    # wait for every template to be compiled and checked.
    services.catalog.journeys()
    settings = services.settings
    return TrouwWorker(
        client,
        task_queue=task_queue or services.settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=all_activities(services),
        workflow_runner=(
            workflow_runner(strict=strict_sandbox) if sandboxed else UnsandboxedWorkflowRunner()
        ),
        interceptors=[WorkLog()],
        max_cached_workflows=settings.worker_max_cached_workflows,
        # Slots, polls and threads apart (trouw/settings.py): every waiting poll holds a slot,
        # and with Temporal's 5 polls (4 on the sticky queue, which a new customer's purchase
        # never uses) 8 slots ran at most 4 purchases at once (docs/decisions.md).
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(
            settings.worker_workflow_task_polls
        ),
        nonsticky_to_sticky_poll_ratio=0.5,
        activation_threads=ThreadPoolExecutor(
            max_workers=settings.worker_workflow_task_threads,
            thread_name_prefix="temporal_workflow",
        ),
        graceful_shutdown_timeout=timedelta(seconds=10),
        workflow_failure_exception_types=[Exception] if fail_runs_on_errors else [],
        build_id=build_id,
    )
