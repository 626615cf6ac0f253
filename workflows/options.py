"""Named activity option profiles: every activity call uses one of these."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

# The send timing budget, in one place (docs/reliability.md, "Deadlines"). Everything derives
# from the longest one provider call may take, connecting to final answer, enforced by closing
# the connection (trouw/providers/deadline.py); TROUW_PROVIDER_TIMEOUT_SECONDS and
# TROUW_SMTP_TIMEOUT_SECONDS may be lower, never higher (checked when the worker starts).
PROVIDER_CALL_MAX = timedelta(seconds=30)
# An in_flight ledger row's lease: the claim is committed, then the call runs (its deadline is
# the lease's end minus SEND_RECORD_MARGIN), then its answer is recorded. No later attempt
# sends while the lease runs, and no call can outlive it.
SEND_RECORD_MARGIN = timedelta(seconds=5)
SEND_LEASE_MARGIN = timedelta(seconds=10)
SEND_LEASE_MAX = PROVIDER_CALL_MAX + SEND_LEASE_MARGIN
# How soon Temporal retries an attempt lost with its worker: after the longest lease, so the
# retry finds the lease over and reconciles at once instead of waiting for it.
SEND_ATTEMPT_TIMEOUT = SEND_LEASE_MAX + timedelta(seconds=5)

# A send may wait on a provider's rate limit: retries back off up to an hour, for a day at most
# (which also bounds how long an unknown outcome can wait for the provider's answer).
SEND_OPTIONS: workflow.ActivityConfig = {
    "start_to_close_timeout": SEND_ATTEMPT_TIMEOUT,
    "schedule_to_close_timeout": timedelta(days=1),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=2),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(hours=1),
        non_retryable_error_types=["PermanentDeliveryError", "TemplateRenderError"],
    ),
}

# A send's first attempt, run as a local activity (workflows/sending.py): the same attempt
# timeout as the activity, and no retry of its own; a retryable failure goes on as a regular
# activity under SEND_OPTIONS.
SEND_LOCAL_OPTIONS: workflow.LocalActivityConfig = {
    "start_to_close_timeout": SEND_ATTEMPT_TIMEOUT,
    "retry_policy": RetryPolicy(maximum_attempts=1),
}

# Custom activities (issue_voucher, a CRM call): idempotent by the key they receive.
CALL_OPTIONS: workflow.ActivityConfig = {
    "start_to_close_timeout": timedelta(minutes=1),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(minutes=10),
        maximum_attempts=20,
        non_retryable_error_types=["InvalidArgumentsError"],
    ),
}

# Short database reads and writes, run as local activities: one marker event instead of three.
LOCAL_OPTIONS: workflow.LocalActivityConfig = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=30),
    ),
}
