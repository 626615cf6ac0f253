"""A worker's log of the work it handles: each activity attempt, workflow run and signal.

At INFO (`trouw worker -v`): after a crash, the last lines of a worker's log say which
attempts it was holding, and the survivor's lines say when each was taken up again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from temporalio import activity, workflow
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    HandleSignalInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from trouw.stack.logs import log_context

log = logging.getLogger("trouw.worker")


class WorkLog(Interceptor):
    """Logs every activity attempt (start, end, failure with its type) and workflow run."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityLog(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _WorkflowLog


class _ActivityLog(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        kind = "local activity" if info.is_local else "activity"
        name = f"{kind} {info.activity_type} attempt {info.attempt}"
        started = time.monotonic()
        with log_context(workflow_id=info.workflow_id):
            log.info("%s started", name)
            try:
                result = await super().execute_activity(input)
            except BaseException as exc:
                # Expected retries (a lease held, an outcome awaited) say so in their type.
                reason = getattr(exc, "type", None) or type(exc).__name__
                log.warning(
                    "%s failed after %.1f s: %s: %s", name, time.monotonic() - started, reason, exc
                )
                raise
            log.info("%s done in %.1f s", name, time.monotonic() - started)
            return result


class _WorkflowLog(WorkflowInboundInterceptor):
    # workflow.logger writes nothing while a history is replayed: each line is new work.
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        info = workflow.info()
        extra = {"workflow_id": info.workflow_id}
        workflow.logger.info("workflow %s run started", info.workflow_type, extra=extra)
        try:
            result = await super().execute_workflow(input)
        except Exception as exc:  # not BaseException: an evicted run is not ending, and is
            # closed outside the workflow's event loop, where the logger cannot run
            workflow.logger.info(
                "workflow %s run ended: %s", info.workflow_type, type(exc).__name__, extra=extra
            )
            raise
        workflow.logger.info("workflow %s run completed", info.workflow_type, extra=extra)
        return result

    async def handle_signal(self, input: HandleSignalInput) -> None:
        workflow.logger.info(
            "signal %s received", input.signal, extra={"workflow_id": workflow.info().workflow_id}
        )
        await super().handle_signal(input)
