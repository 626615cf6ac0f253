"""The workflow a reliability run starts per message: the real send activity called the way a
journey calls it (workflows/sending.py: a local first attempt, then the regular activity under
the real options profile), so Temporal's retries and timeouts are the production ones."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from trouw.language.contracts import SendMessageInput
    from workflows.options import SEND_OPTIONS
    from workflows.sending import send_message

# The production profile with one change: retries back off to at most 5 s instead of an hour,
# so a run ends in minutes. Timeouts (and so leases and the retry after a killed worker) are
# the production ones; how long a retry waits decides no outcome.
RELIABILITY_OPTIONS = {
    **SEND_OPTIONS,
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=5),
        non_retryable_error_types=SEND_OPTIONS["retry_policy"].non_retryable_error_types,
    ),
}


@workflow.defn(name="ReliabilitySend")
class ReliabilitySendWorkflow:
    """Sends one message and returns its outcome (or why it failed for good)."""

    @workflow.run
    async def run(self, input: SendMessageInput) -> str:
        try:
            result = await send_message(input, local_first=True, retries=RELIABILITY_OPTIONS)
        except ActivityError as exc:
            return f"failed: {exc.cause or exc}"
        return result.outcome
