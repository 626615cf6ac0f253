"""JourneyWorkflow's control flow against scripted fake activities: no database, no templates.

In the shape of temporalio/samples-python tests/hello/hello_activity_test.py: the real workflow,
fakes registered under the real activity names with the real contracts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from tests.time_skipping import time_skipping
from trouw.language.contracts import (
    JOURNEY_WORKFLOW,
    RECORD_EVENT_SIGNAL,
    SEND_MESSAGE,
    STATUS_QUERY,
    ContextResult,
    CustomerEvent,
    JourneyInput,
    JourneyResult,
    LoadContextInput,
    RecordRunEventsInput,
    RecordRunInput,
    SendMessageInput,
    SendMessageResult,
)
from trouw.language.journey.model import Journey
from trouw.stack.worker import workflow_runner
from workflows.journey import JourneyWorkflow

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Fakes:
    """The activities a journey run calls, scripted: each send answers the next scripted reply."""

    def __init__(self, replies: list[Callable[[SendMessageInput], SendMessageResult]]) -> None:
        self.replies = replies
        self.sends: list[SendMessageInput] = []
        self.records: list[RecordRunInput] = []
        self.notes: list[RecordRunEventsInput] = []
        self.loads: list[LoadContextInput] = []
        self.sent_once = asyncio.Event()

    @activity.defn(name="send_message")
    async def send_message(self, input: SendMessageInput) -> SendMessageResult:
        self.sends.append(input)
        self.sent_once.set()
        return self.replies[len(self.sends) - 1](input)

    @activity.defn(name="record_run")
    async def record_run(self, input: RecordRunInput) -> None:
        self.records.append(input)

    @activity.defn(name="record_run_events")
    async def record_run_events(self, input: RecordRunEventsInput) -> None:
        self.notes.append(input)

    @activity.defn(name="load_context")
    async def load_context(self, input: LoadContextInput) -> ContextResult:
        self.loads.append(input)
        return ContextResult(context={"customer": {"id": input.customer_id}})

    def activities(self) -> list[Callable[..., Any]]:
        return [self.send_message, self.record_run, self.record_run_events, self.load_context]


def sent(input: SendMessageInput) -> SendMessageResult:
    return SendMessageResult(message_key=input.message_key, outcome="sent")


def busy_for_two_hours(input: SendMessageInput) -> SendMessageResult:
    return SendMessageResult(
        message_key=input.message_key,
        outcome="deferred",
        reason="busy",
        reason_text="another message went out today",
        until=input.now + timedelta(hours=2),
    )


def rejected(input: SendMessageInput) -> SendMessageResult:
    raise ApplicationError("mailbox does not exist", type="PermanentDeliveryError")


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with time_skipping() as env:
        yield env.client


def journey_input(definition: dict[str, Any]) -> JourneyInput:
    journey = Journey.model_validate(definition)
    trigger = CustomerEvent(
        id="evt-1", type="purchase", customer_id="c1", at=START, order_id="o-1", skus=["ROSE-01"]
    )
    return JourneyInput(
        customer_id="c1",
        journey=journey.name,
        version=journey.version,
        definition=journey.model_dump(mode="json", by_alias=True),
        trigger=trigger,
        context={"customer": {"id": "c1", "timezone": "Europe/Brussels"}},
        order_id="o-1",
        skus=["ROSE-01"],
        search_attributes=False,
    )


def worker(client: Client, fakes: Fakes, queue: str) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=[JourneyWorkflow],
        activities=fakes.activities(),
        workflow_runner=workflow_runner(),
    )


async def start_run(
    client: Client, definition: dict[str, Any], queue: str
) -> WorkflowHandle[Any, JourneyResult]:
    return await client.start_workflow(
        JOURNEY_WORKFLOW,
        journey_input(definition),
        id=f"run-{queue}",
        task_queue=queue,
        result_type=JourneyResult,
    )


async def run(client: Client, fakes: Fakes, definition: dict[str, Any]) -> JourneyResult:
    """One run to its end, on a worker of its own."""
    queue = str(uuid.uuid4())
    async with worker(client, fakes, queue):
        return await (await start_run(client, definition, queue)).result()


async def test_a_deferred_send_is_sent_once_the_deferral_ends(client: Client) -> None:
    fakes = Fakes([busy_for_two_hours, sent])
    definition = {
        "journey": "deferred_promo",
        "trigger": {"event": "purchase"},
        "settings": {"category": "promotional", "promotional_when_busy": "defer"},
        "steps": [{"id": "promo", "send": "email", "template": "spring_sale"}],
    }
    result = await run(client, fakes, definition)
    assert result == JourneyResult(outcome="completed", sent=1)
    first, second = fakes.sends
    # The same message is asked for again (same idempotency key), after the deferral ended.
    assert first.message_key == second.message_key
    assert (first.step, first.category, first.promotional_when_busy) == (
        "promo",
        "promotional",
        "defer",
    )
    assert first.defer_deadline is not None
    assert second.defer_deadline == first.defer_deadline
    assert second.now >= first.now + timedelta(hours=2)
    assert [(r.status, r.reason) for r in fakes.records] == [("completed", None)]
    assert [e.kind for e in fakes.records[0].events] == ["completed"]


async def test_a_failed_step_with_on_error_exit_ends_the_run(client: Client) -> None:
    fakes = Fakes([rejected, sent])
    definition = {
        "journey": "failing_step",
        "trigger": {"event": "purchase"},
        "steps": [
            {"id": "tips", "send": "email", "template": "care_tips", "on_error": "exit"},
            {"id": "review", "send": "email", "template": "review_request"},
        ],
    }
    result = await run(client, fakes, definition)
    assert result.outcome == "exited"
    assert result.sent == 0
    assert result.reason is not None
    assert result.reason.startswith("step tips failed:")
    assert "mailbox does not exist" in result.reason
    # Non-retryable: asked once, and the step after it never ran.
    assert [s.step for s in fakes.sends] == ["tips"]
    assert [(r.status, r.reason) for r in fakes.records] == [("exited", result.reason)]


async def test_an_exit_event_during_a_wait_ends_the_run_before_the_next_step(
    client: Client,
) -> None:
    fakes = Fakes([sent, sent])
    queue = str(uuid.uuid4())
    definition = {
        "journey": "exit_mid_wait",
        "trigger": {"event": "purchase"},
        "settings": {"exit_on": [{"event": "order_cancelled", "match": "order"}]},
        "steps": [
            {"id": "thanks", "send": "email", "template": "order_thanks"},
            {"id": "pause", "wait": "3d"},
            {"id": "review", "send": "email", "template": "review_request"},
        ],
    }
    async with worker(client, fakes, queue):
        handle = await start_run(client, definition, queue)
        await fakes.sent_once.wait()
        # Signal once the run is in its wait (each query is one round trip to the worker).
        status = ""
        while "waiting" not in status:
            status = await handle.query(STATUS_QUERY, result_type=str)
            assert "ended" not in status, status
        await handle.signal(
            RECORD_EVENT_SIGNAL,
            CustomerEvent(
                id="evt-cancel", type="order_cancelled", customer_id="c1", at=START, order_id="o-1"
            ),
        )
        result = await handle.result()
    assert result == JourneyResult(outcome="exited", reason="exit on order_cancelled", sent=1)
    assert [s.step for s in fakes.sends] == ["thanks"]
    assert [(r.status, r.reason) for r in fakes.records] == [("exited", "exit on order_cancelled")]


RECEIPT = {
    "journey": "receipt",
    "trigger": {"event": "purchase"},
    "steps": [{"id": "confirm", "send": "email", "template": "order_confirmation"}],
}


def rate_limited(input: SendMessageInput) -> SendMessageResult:
    raise ApplicationError("429 too many requests", type="ProviderUnavailableError")


async def run_with_history(
    client: Client, fakes: Fakes, definition: dict[str, Any]
) -> tuple[JourneyResult, list[str]]:
    """One run to its end, and how each of its sends was asked for: "local" or "activity"."""
    queue = str(uuid.uuid4())
    async with worker(client, fakes, queue):
        handle = await start_run(client, definition, queue)
        result = await handle.result()
        history = await handle.fetch_history()
    asked = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == SEND_MESSAGE:
                asked.append("activity")
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            if b'"send_message"' in b"".join(p.data for p in details["data"].payloads):
                asked.append("local")
    return result, asked


async def test_a_send_goes_out_as_a_local_activity(client: Client) -> None:
    fakes = Fakes([sent])
    result, asked = await run_with_history(client, fakes, RECEIPT)
    assert result == JourneyResult(outcome="completed", sent=1)
    assert asked == ["local"]


async def test_a_local_send_attempt_that_can_be_retried_goes_on_as_an_activity(
    client: Client,
) -> None:
    fakes = Fakes([rate_limited, sent])
    result, asked = await run_with_history(client, fakes, RECEIPT)
    assert result == JourneyResult(outcome="completed", sent=1)
    first, second = fakes.sends
    # The same message (one ledger key): the activity is the local attempt's retry.
    assert first.message_key == second.message_key
    assert asked == ["local", "activity"]
