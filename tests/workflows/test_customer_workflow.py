"""CustomerWorkflow: duplicate events dropped by id, continue-as-new keeps what it must remember."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from activities.services import Services
from tests.purchases import ingest_purchase
from tests.time_skipping import time_skipping
from trouw.domain.db.engine import get_engine, session_scope
from trouw.domain.db.models import JourneyRun, Message
from trouw.domain.why import temporal_outcome
from trouw.language.contracts import CustomerInput, customer_workflow_id
from trouw.settings import Settings
from trouw.stack.worker import build_worker
from workflows.customer import CustomerWorkflow


@pytest.mark.parametrize("inline", [False, True], ids=["children", "inline"])
async def test_duplicates_dropped_across_continue_as_new(settings: Settings, inline: bool) -> None:
    engine = get_engine(settings.effective_database_url)
    services = Services.from_settings(settings, engine=engine)
    now = datetime.now(UTC)
    purchase_event = ingest_purchase(
        engine,
        id="evt-1",
        customer="dup-1",
        order="o-dup",
        profile={
            "id": "dup-1",
            "first_name": "An",
            "email": "an@example.com",
            "birthday": "1990-05-05",
        },
        at=now,
    )
    async with time_skipping() as env:
        async with build_worker(env.client, services, task_queue="cust-test"):
            start = CustomerInput(
                customer_id="dup-1", search_attributes=False, history_limit=60, inline_runs=inline
            )

            async def send(event: object) -> None:
                await env.client.start_workflow(
                    CustomerWorkflow.run,
                    start,
                    id=customer_workflow_id("dup-1"),
                    task_queue="cust-test",
                    start_signal="record_event",
                    start_signal_args=[event],
                )
                await env.sleep(timedelta(seconds=2))

            await send(purchase_event)
            first_run = (
                await env.client.get_workflow_handle(customer_workflow_id("dup-1")).describe()
            ).run_id
            first_status = await env.client.get_workflow_handle(
                customer_workflow_id("dup-1")
            ).query("status")
            await send(purchase_event)  # the same event again: dropped
            for number in range(12):  # enough signals to pass the history limit
                await send(
                    purchase_event.model_copy(update={"id": f"review-{number}", "type": "review"})
                )
            await send(purchase_event)  # still remembered after continue-as-new
            handle = env.client.get_workflow_handle(customer_workflow_id("dup-1"))
            description = await handle.describe()
            status = await handle.query("status")
            held = await handle.query("held_runs", result_type=list[str])
            held_outcome = await temporal_outcome(env.client, held[0], customer_id="dup-1")
            unknown = await temporal_outcome(
                env.client, "journey:dup-1:nothing:x", customer_id="dup-1"
            )
    assert description.run_id != first_run, "the customer workflow should have continued as new"
    with session_scope(engine) as session:
        runs = session.exec(
            select(JourneyRun.journey).where(JourneyRun.customer_id == "dup-1")
        ).all()
        confirmations = session.exec(
            select(Message).where(
                Message.customer_id == "dup-1", Message.template == "order_confirmation"
            )
        ).all()
    assert sorted(runs) == ["birthday", "post_purchase", "reactivation"]
    assert len(confirmations) == 1 and confirmations[0].state == "sent"
    # 1 purchase + 12 reviews; the two repeats of the purchase were dropped
    assert status.startswith("13 events handled, 0 waiting")
    # `trouw why` finds a held run (or one inside the customer workflow) healthy
    assert held_outcome is None
    assert unknown is not None and unknown.status == "unknown"
    if not inline:
        # The engine before: the runs are children, reactivation (a 180-day wait first) held.
        # Its continue-as-new goes on with the runs inside: the children run on as children,
        # the held run waits inside until the moment it was held until.
        held_until = re.search(r"reactivation until (\S+)", first_status)
        assert held_until is not None, first_status
        assert "journeys running: birthday, post_purchase;" in status
        assert _until(status, "reactivation") == held_until.group(1), status
        assert held == ["journey:dup-1:reactivation:o-dup"]
        return
    # every run inside the customer workflow, carried over continue-as-new in the middle of its
    # wait: each still waits at its step, until the moment it waited for before
    assert [h.split(":")[2] for h in sorted(held)] == ["birthday", "post_purchase", "reactivation"]
    for journey in ("birthday", "post_purchase", "reactivation"):
        before, after = _until(first_status, journey), _until(status, journey)
        assert before is not None and before == after, (journey, first_status, status)


def _until(status: str, journey: str) -> str | None:
    """When the run of this journey waits until, as the customer workflow's status says."""
    found = re.search(rf"{journey}( at step \w+)?: [^;]*? until (\S+)", status)
    return found.group(2) if found else None
