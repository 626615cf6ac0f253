"""Named activity option profiles: every activity call uses one of these."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

# A send may wait on a provider's rate limit: retries back off up to an hour, for a day at most.
# start_to_close is how soon an attempt lost with its worker is retried: above the provider
# timeout (30 s) and the send lease (provider timeout + 10 s, activities/messaging.py).
SEND_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=45),
    "schedule_to_close_timeout": timedelta(days=1),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=2),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(hours=1),
        non_retryable_error_types=["PermanentDeliveryError", "TemplateRenderError"],
    ),
}

# Custom activities (issue_voucher, a CRM call): idempotent by the key they receive.
CALL_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=1),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(minutes=10),
        maximum_attempts=20,
        non_retryable_error_types=["InvalidArgumentsError"],
    ),
}

# Short database reads and writes, run as local activities: one marker event instead of three.
LOCAL_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=30),
    ),
}
