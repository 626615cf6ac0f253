"""A running worker's sandbox (workflow modules passed through) runs a purchase as the strict one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from activities.services import Services
from tests.purchases import ingest_purchase
from tests.time_skipping import time_skipping
from trouw.domain.db.engine import get_engine, session_scope
from trouw.domain.db.models import JourneyRun, Message
from trouw.language.contracts import CustomerInput, customer_workflow_id
from trouw.settings import Settings
from trouw.stack.worker import WORKFLOW_PACKAGE, build_worker, workflow_runner
from workflows.customer import CustomerWorkflow


def test_only_the_running_worker_passes_the_workflow_modules_through() -> None:
    assert WORKFLOW_PACKAGE not in workflow_runner().restrictions.passthrough_modules
    assert WORKFLOW_PACKAGE in workflow_runner(strict=False).restrictions.passthrough_modules


@pytest.mark.parametrize("strict", [True, False])
async def test_a_purchase_runs_the_same_in_either_sandbox(settings: Settings, strict: bool) -> None:
    engine = get_engine(settings.effective_database_url)
    services = Services.from_settings(settings, engine=engine)
    event = ingest_purchase(
        engine,
        id="evt-sandbox",
        customer="sb-1",
        order="o-sb",
        channel="web",
        profile={"id": "sb-1", "first_name": "An", "email": "an@example.com"},
        at=datetime.now(UTC),
    )
    async with time_skipping() as env:
        async with build_worker(env.client, services, task_queue="sandbox", strict_sandbox=strict):
            await env.client.start_workflow(
                CustomerWorkflow.run,
                CustomerInput(customer_id="sb-1", search_attributes=False),
                id=customer_workflow_id("sb-1"),
                task_queue="sandbox",
                start_signal="record_event",
                start_signal_args=[event],
            )
            await env.sleep(timedelta(seconds=5))
    with session_scope(engine) as session:
        runs = session.exec(select(JourneyRun.journey).where(JourneyRun.customer_id == "sb-1"))
        sent = session.exec(
            select(Message.template).where(Message.customer_id == "sb-1", Message.state == "sent")
        )
        assert sorted(runs.all()) == ["enrichment", "post_purchase", "reactivation"]
        assert sent.all() == ["order_confirmation"]
