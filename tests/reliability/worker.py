"""A Temporal worker for reliability runs: `python -m tests.reliability.worker`, configured by the
TROUW_* environment like `trouw worker`, plus RELIABILITY_* knobs (latency around the provider
call, how soon the provider's "not found" is trusted). The harness SIGKILLs it at will."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from temporalio.worker import Worker

from activities.messaging import MessagingActivities
from activities.services import Services
from tests.reliability.workload import ReliabilitySendWorkflow
from trouw.providers import email_provider, sms_provider
from trouw.settings import Settings
from trouw.stack.temporal import connect
from trouw.stack.worker import workflow_runner


class Latency:
    """A provider with a random pause before the call (claim committed, nothing sent yet) and
    after it (answered, not yet recorded): wider send windows for the kills to land in."""

    def __init__(self, inner: Any, *, before: float, after: float) -> None:
        self._inner = inner
        self._before = before
        self._after = after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def _around(self, call: Any) -> Any:
        await asyncio.sleep(random.uniform(0, self._before))  # noqa: S311 - test timing only
        result = await call
        await asyncio.sleep(random.uniform(0, self._after))  # noqa: S311
        return result

    async def send_email(self, email: Any, *, deadline: float | None = None) -> Any:
        return await self._around(self._inner.send_email(email, deadline=deadline))

    async def send_sms(self, sms: Any, *, deadline: float | None = None) -> Any:
        return await self._around(self._inner.send_sms(sms, deadline=deadline))


def services_from_env() -> Services:
    settings = Settings()
    services = Services.from_settings(settings)
    before = float(os.environ.get("RELIABILITY_LATENCY_BEFORE", "0"))
    after = float(os.environ.get("RELIABILITY_LATENCY_AFTER", "0"))
    for channel, factory in (("email", email_provider), ("sms", sms_provider)):
        provider = factory(settings)
        if "RELIABILITY_SETTLE" in os.environ and hasattr(provider, "lookup_settle_seconds"):
            provider.lookup_settle_seconds = float(os.environ["RELIABILITY_SETTLE"])
        if "RELIABILITY_ANSWER_WITHIN" in os.environ and hasattr(provider, "answer_within_seconds"):
            provider.answer_within_seconds = float(os.environ["RELIABILITY_ANSWER_WITHIN"])
        services._providers[channel] = Latency(provider, before=before, after=after)
    return services


async def main() -> None:
    services = services_from_env()
    client = await connect(services.settings)
    messaging = MessagingActivities(services)
    worker = Worker(
        client,
        task_queue=services.settings.task_queue,
        workflows=[ReliabilitySendWorkflow],
        activities=[messaging.send_message, messaging.give_up_send],
        # The sandbox a running worker uses (workflow modules passed through, as configured by
        # TROUW_WORKER_STRICT_SANDBOX), so the run measures the production worker's workflows.
        workflow_runner=workflow_runner(strict=services.settings.worker_strict_sandbox),
        # Fewer sends at once spread a run over time, so the kills meet sends in every phase.
        max_concurrent_activities=int(os.environ.get("RELIABILITY_CONCURRENCY", "100")),
        max_concurrent_local_activities=int(os.environ.get("RELIABILITY_CONCURRENCY", "100")),
    )
    print("worker ready", flush=True)  # noqa: T201 - the harness reads the log
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
