"""A send that fails for good, at its local first attempt or after the activity's retries.

The whole stack on the time-skipping server (worker, the real send activity, the SendGrid fake,
a SQLite database): what the ledger and the run record say, and what the run does next; for a
run inside its customer workflow (today's engine) and for a run as a child workflow of its own
(the engine before, whose runs may still be in flight).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from activities.services import Services
from tests.conftest import ROOT
from tests.fakes import FakeSendGrid, ScriptedResponse
from tests.purchases import ingest_purchase
from tests.time_skipping import time_skipping
from trouw.domain.db.engine import make_engine, migrate, session_scope
from trouw.domain.db.models import Customer, JourneyRun, Message
from trouw.language.contracts import (
    CancelHeldRuns,
    CustomerInput,
    JourneyResult,
    customer_workflow_id,
)
from trouw.providers import aclose_provider
from trouw.settings import Settings
from trouw.stack.worker import build_worker
from workflows.customer import CustomerWorkflow

JOURNEY = """\
journey: receipt
trigger: {event: purchase, reentry: order}
settings: {category: service}
steps:
  - {id: confirm, send: email, template: order_confirmation, category: transactional, on_error: ON_ERROR}
  - {id: review, send: email, template: review_request}
"""
RUN_ID = "journey:f-1:receipt:o-1"
CONFIRM = f"{RUN_ID}#0:confirm:email"


@dataclass
class Stack:
    env: WorkflowEnvironment
    sendgrid: FakeSendGrid
    settings: Settings


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    with FakeSendGrid() as sendgrid:
        journeys = tmp_path / "journeys"
        journeys.mkdir()
        settings = Settings(
            home=tmp_path / "home",
            database_url=f"sqlite:///{tmp_path / 'sends.db'}",
            journeys_dir=journeys,
            templates_dir=ROOT / "templates",
            signing_keys=["test-key"],
            email_provider="sendgrid",
            sendgrid_api_key=sendgrid.api_key,
            sendgrid_host=sendgrid.url,
            send_rate_per_second=10_000,
            task_queue="send-final-failure",
            sending_hours_email_service="always",
        )
        async with time_skipping() as env:
            yield Stack(env, sendgrid, settings)


@dataclass
class Started:
    customer: WorkflowHandle[Any, Any]
    run: WorkflowHandle[Any, Any] | None  # None: the run is inside the customer workflow


@asynccontextmanager
async def receipt_started(stack: Stack, on_error: str, *, inline: bool) -> AsyncIterator[Started]:
    """One purchase delivered, its run started, a worker running: the handles."""
    settings = stack.settings
    assert settings.journeys_dir is not None
    (settings.journeys_dir / "receipt.yaml").write_text(JOURNEY.replace("ON_ERROR", on_error))
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    services = Services.from_settings(settings, engine=engine)
    client = stack.env.client
    try:
        async with build_worker(client, services, task_queue=settings.task_queue):
            event = ingest_purchase(
                engine,
                id="evt-f1",
                customer="f-1",
                order="o-1",
                lines=[{"sku": "ROSE-01", "unit_price": "14.50"}],
                profile={"id": "f-1", "first_name": "Fien", "email": "f1@example.com"},
            )
            customer = await client.start_workflow(
                CustomerWorkflow.run,
                CustomerInput(customer_id="f-1", search_attributes=False, inline_runs=inline),
                id=customer_workflow_id("f-1"),
                task_queue=settings.task_queue,
                start_signal="record_event",
                start_signal_args=[event],
            )
            if inline:
                yield Started(customer, None)
                return
            handle = client.get_workflow_handle(RUN_ID)
            for _ in range(100):  # the customer workflow starts the run as a child
                try:
                    await handle.describe()
                    break
                except Exception:  # noqa: BLE001 - not started yet
                    await asyncio.sleep(0.1)
            yield Started(customer, handle)
    finally:
        for provider in services._providers.values():
            await aclose_provider(provider)
        engine.dispose()


def ledger_and_record(stack: Stack) -> tuple[Message, JourneyRun]:
    """The confirmation's ledger row and the run's record."""
    engine = make_engine(stack.settings.effective_database_url)
    with session_scope(engine) as session:
        message = session.exec(select(Message).where(Message.message_key == CONFIRM)).one()
        run = session.exec(select(JourneyRun).where(JourneyRun.workflow_id == RUN_ID)).one()
        session.expunge_all()
    engine.dispose()
    return message, run


async def run_receipt(
    stack: Stack, on_error: str, inline: bool
) -> tuple[tuple[str, int], Message, JourneyRun]:
    """One purchase through the journey to the run's end: its outcome and messages sent, its
    ledger row and record."""
    async with receipt_started(stack, on_error, inline=inline) as started:
        # Past the send's day of retries (a result long-poll alone can end before the run).
        await stack.env.sleep(timedelta(days=2))
        if started.run is not None:
            result = JourneyResult.model_validate(await started.run.result())
            outcome = (result.outcome, result.sent)
    confirm, run = ledger_and_record(stack)
    if started.run is None:
        outcome = (run.status, sent_by_run(stack))
    return outcome, confirm, run


def sent_by_run(stack: Stack) -> int:
    engine = make_engine(stack.settings.effective_database_url)
    with session_scope(engine) as session:
        sent = session.exec(
            select(Message).where(Message.workflow_id == RUN_ID, Message.state == "sent")
        ).all()
    engine.dispose()
    return len(sent)


async def at_the_provider(stack: Stack, requests: int) -> None:
    """Until SendGrid holds this many requests (in order, not in time)."""
    for _ in range(600):
        if stack.sendgrid.in_progress == requests:
            break
        await asyncio.sleep(0.1)
    assert stack.sendgrid.in_progress == requests


def review_sent(stack: Stack) -> bool:
    return any(
        mail["custom_args"]["message_key"].endswith(":review:email")
        for mail in stack.sendgrid.mails
    )


ENGINES = pytest.mark.parametrize("inline", [True, False], ids=["inline", "child"])


@ENGINES
@pytest.mark.parametrize("on_error", ["continue", "exit"])
async def test_a_refusal_at_the_local_attempt_fails_the_message_and_the_journey_decides(
    stack: Stack, on_error: str, inline: bool
) -> None:
    stack.sendgrid.fail_next(400, message="Does not contain a valid address.", field="to")
    result, confirm, run = await run_receipt(stack, on_error, inline)
    # Asked once: a refusal is not retried, as the activity would not retry it either.
    assert len([m for m in stack.sendgrid.mails if "confirm" in str(m)]) == 1
    assert confirm.state == "failed" and "valid address" in (confirm.error or "")
    assert confirm.attempts == 1
    if on_error == "continue":
        assert result == ("completed", 1)
        assert (run.status, run.end_reason) == ("completed", None)
        assert review_sent(stack)
    else:
        assert result == ("exited", 0)
        assert run.status == "exited"
        assert run.end_reason is not None and run.end_reason.startswith("step confirm failed:")
        assert "valid address" in run.end_reason
        assert not review_sent(stack)


@ENGINES
@pytest.mark.parametrize("on_error", ["continue", "exit"])
async def test_a_send_whose_retries_run_out_is_failed_in_the_ledger(
    stack: Stack, on_error: str, inline: bool
) -> None:
    # SendGrid rate-limits the confirmation for five hours at every request: the local attempt,
    # then the activity waiting out each reset (at 0, 5, 10, 15 and 20 h) until its day
    # (SEND_OPTIONS' schedule-to-close) is over; the review, asked after, goes out.
    stack.sendgrid.rate_limit_next(reset_in=5 * 3600, count=6)
    result, confirm, run = await run_receipt(stack, on_error, inline)
    assert len(stack.sendgrid.requests) == 6 + (on_error == "continue")
    # The ledger says what became of it: not "claimed", which reads as still on its way.
    assert confirm.state == "failed", confirm.status_history
    assert "too many requests" in (confirm.error or "")
    assert confirm.status_history[-1]["status"] == "failed"
    with session_scope(make_engine(stack.settings.effective_database_url)) as session:
        customer = session.get(Customer, "f-1")
        assert customer is not None and not customer.email_invalid
    if on_error == "continue":
        assert (*result, run.status) == ("completed", 1, "completed")
        assert review_sent(stack)
    else:
        assert (result[0], run.status) == ("exited", "exited")
        assert run.end_reason is not None and run.end_reason.startswith("step confirm failed:")


async def test_a_cancel_while_the_send_is_at_the_provider_sends_nothing_again_and_says_unknown(
    stack: Stack,
) -> None:
    # SendGrid holds the confirmation until the run is cancelled, then takes it: the answer is
    # lost to the cancel, as when an operator cancels a run (trouw.stack.runs.cancel_runs asks
    # Temporal exactly so) while its send's local attempt waits for the provider.
    released = threading.Event()
    stack.sendgrid.script(ScriptedResponse(release=released))
    try:
        async with receipt_started(stack, "continue", inline=False) as started:
            handle = started.run
            assert handle is not None
            await at_the_provider(stack, 1)  # in order, not in time
            await handle.cancel(reason="trouw: cancelled by api:ops: complaint")
            with pytest.raises(WorkflowFailureError) as ended:
                await handle.result()
            assert isinstance(ended.value.cause, CancelledError)
            released.set()
            await at_the_provider(stack, 0)  # the held request is processed (the mail taken)
            await stack.env.sleep(timedelta(days=2))  # nothing retries it, nothing follows
    finally:
        released.set()
    # Taken once (the held request), never asked again, and the review step never asked.
    assert [m["custom_args"]["message_key"] for m in stack.sendgrid.mails] == [CONFIRM]
    assert len(stack.sendgrid.requests) == 1
    confirm, run = ledger_and_record(stack)
    # The provider may have it and nobody asks again: unknown, not failed, not still on its way.
    assert (confirm.state, confirm.reason) == ("unknown", "unknown_outcome_run_cancelled")
    assert run.status == "cancelled"


async def test_a_cancel_of_a_run_inside_the_customer_workflow_lets_its_send_finish(
    stack: Stack,
) -> None:
    """An operator's cancel of a run inside the customer workflow (`cancel_held_runs`, as
    trouw.stack.runs.cancel_runs signals it) ends the run at its next step: a send already at
    the provider finishes and is recorded as what it became, nothing is asked again, and the
    next step is never reached."""
    released = threading.Event()
    stack.sendgrid.script(ScriptedResponse(release=released))
    try:
        async with receipt_started(stack, "continue", inline=True) as started:
            await at_the_provider(stack, 1)  # in order, not in time
            await started.customer.signal(
                "cancel_held_runs",
                CancelHeldRuns(journey="receipt", reason="cancelled by api:ops: complaint"),
            )
            # The signal reaches the workflow with its next task (the one the worker's
            # heartbeat of the task waiting on the local attempt opens): the run is told first.
            status = ""
            for _ in range(300):
                status = await started.customer.query("status", result_type=str)
                if "receipt: ended (cancelled by api:ops: complaint)" in status:
                    break
                await asyncio.sleep(0.1)
            assert "receipt: ended (" in status, status
            released.set()
            await at_the_provider(stack, 0)  # the held request is processed (the mail taken)
            await stack.env.sleep(timedelta(days=2))  # nothing retries it, nothing follows
            held = await started.customer.query("held_runs", result_type=list[str])
    finally:
        released.set()
    assert [m["custom_args"]["message_key"] for m in stack.sendgrid.mails] == [CONFIRM]
    assert len(stack.sendgrid.requests) == 1
    confirm, run = ledger_and_record(stack)
    assert confirm.state == "sent"
    assert (run.status, run.end_reason) == ("cancelled", "cancelled by api:ops: complaint")
    assert held == []


def accepted(stack: Stack) -> list[str]:
    """The message keys SendGrid accepted (not the requests it refused)."""
    return [entry["unique_args"]["message_key"] for entry in stack.sendgrid.activity]


async def until_waiting_to_retry(handle: WorkflowHandle[Any, Any]) -> None:
    """Until the workflow waits on a timer: the delay the local attempt's refusal announced."""
    for _ in range(300):
        history = await handle.fetch_history()
        if any(event.event_type == EventType.EVENT_TYPE_TIMER_STARTED for event in history.events):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the send never waited to retry")


async def test_a_cancel_of_a_run_inside_the_customer_workflow_stops_its_send_retries(
    stack: Stack,
) -> None:
    """The local attempt was rate-limited for five hours: the send waits them out before its
    regular attempt. An operator's cancel meanwhile stops the send (the child engine's cancel
    did too), not five hours later after the message went out: the ledger row ends failed (it
    was never at the provider), the run is recorded cancelled with the operator's reason."""
    stack.sendgrid.rate_limit_next(reset_in=5 * 3600, count=1)
    async with receipt_started(stack, "continue", inline=True) as started:
        await until_waiting_to_retry(started.customer)
        await started.customer.signal(
            "cancel_held_runs",
            CancelHeldRuns(journey="receipt", reason="cancelled by api:ops: complaint"),
        )
        await stack.env.sleep(timedelta(days=2))  # past the announced delay and the send's day
        held = await started.customer.query("held_runs", result_type=list[str])
    assert len(stack.sendgrid.requests) == 1  # the refused local attempt, nothing after it
    assert accepted(stack) == []
    confirm, run = ledger_and_record(stack)
    assert confirm.state == "failed", confirm.status_history
    assert "run cancelled" in (confirm.error or "")
    assert (run.status, run.end_reason) == ("cancelled", "cancelled by api:ops: complaint")
    assert held == []


async def test_a_cancel_of_a_run_inside_the_customer_workflow_during_a_retried_attempt(
    stack: Stack,
) -> None:
    """The regular attempt after a refused local one is at the provider when the operator
    cancels: no attempt follows, the held request is taken once, and the ledger says what the
    attempt made of it (sent: its answer is recorded), never a second copy."""
    stack.sendgrid.fail_next(503, message="service unavailable")
    released = threading.Event()
    stack.sendgrid.script(ScriptedResponse(release=released))
    try:
        async with receipt_started(stack, "continue", inline=True) as started:
            for _ in range(300):  # the retried attempt held, after the refused local one
                if len(stack.sendgrid.requests) == 2 and stack.sendgrid.in_progress == 1:
                    break
                await asyncio.sleep(0.1)
            assert (len(stack.sendgrid.requests), stack.sendgrid.in_progress) == (2, 1)
            await started.customer.signal(
                "cancel_held_runs",
                CancelHeldRuns(journey="receipt", reason="cancelled by api:ops: complaint"),
            )
            for _ in range(300):  # the run ends, and the customer workflow with it
                if (await started.customer.describe()).status != WorkflowExecutionStatus.RUNNING:
                    break
                await asyncio.sleep(0.1)
            # Nothing runs any more: the customer workflow is over, and with it the activity's
            # retries (the time-skipping server cannot skip time past an activity that ends
            # after its workflow closed, so no env.sleep here).
            description = await started.customer.describe()
            assert description.status == WorkflowExecutionStatus.COMPLETED
            released.set()
            await at_the_provider(stack, 0)
            for _ in range(100):  # the attempt records the provider's answer
                confirm, run = ledger_and_record(stack)
                if confirm.state == "sent":
                    break
                await asyncio.sleep(0.1)
    finally:
        released.set()
    assert len(stack.sendgrid.requests) == 2  # the refused local attempt, the retried one
    assert accepted(stack) == [CONFIRM]
    # Ended unknown by the cancel (the provider might have it), then sent by the attempt's own
    # answer: what became of it, and nobody asks again.
    states = [entry["status"] for entry in confirm.status_history]
    assert confirm.state == "sent" and "unknown" in states, confirm.status_history
    assert (run.status, run.end_reason) == ("cancelled", "cancelled by api:ops: complaint")
    assert not review_sent(stack)


async def test_a_cancel_while_the_local_attempt_runs_starts_no_retry_when_it_fails(
    stack: Stack,
) -> None:
    """The operator cancels while the local attempt is at the provider, which then refuses it
    for now (503): no retry follows (it would send after the cancel), the row ends failed."""
    released = threading.Event()
    stack.sendgrid.script(
        ScriptedResponse(
            status=503, body={"errors": [{"message": "service unavailable"}]}, release=released
        )
    )
    try:
        async with receipt_started(stack, "continue", inline=True) as started:
            await at_the_provider(stack, 1)
            await started.customer.signal(
                "cancel_held_runs",
                CancelHeldRuns(journey="receipt", reason="cancelled by api:ops: complaint"),
            )
            status = ""
            for _ in range(300):  # the run is told (the task the local attempt's heartbeat opens)
                status = await started.customer.query("status", result_type=str)
                if "receipt: ended (cancelled by api:ops: complaint)" in status:
                    break
                await asyncio.sleep(0.1)
            assert "receipt: ended (" in status, status
            released.set()
            for _ in range(300):  # the run ends, and the customer workflow with it
                if (await started.customer.describe()).status != WorkflowExecutionStatus.RUNNING:
                    break
                await asyncio.sleep(0.1)
            description = await started.customer.describe()
    finally:
        released.set()
    assert description.status == WorkflowExecutionStatus.COMPLETED
    assert len(stack.sendgrid.requests) == 1 and accepted(stack) == []
    confirm, run = ledger_and_record(stack)
    assert confirm.state == "failed", confirm.status_history
    assert "run cancelled: cancelled by api:ops: complaint" in (confirm.error or "")
    assert (run.status, run.end_reason) == ("cancelled", "cancelled by api:ops: complaint")
