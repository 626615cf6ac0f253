"""workflows/sending.py on the time-skipping server: the local first attempt and what follows it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.exceptions import ApplicationError, CancelledError

from tests.workflows.test_journey_control_flow import Fakes, sent, start_run, worker
from tests.workflows.test_journey_control_flow import client as client  # noqa: F401 (a fixture)
from trouw.language.contracts import (
    GIVE_UP_SEND,
    SEND_MESSAGE,
    GiveUpSendInput,
    JourneyResult,
    SendMessageInput,
    SendMessageResult,
)

# What a provider's 429 with Retry-After comes to: activities/messaging.py raises this.
ANNOUNCED = timedelta(minutes=7)

TWO_SENDS = {
    "journey": "receipt_and_tips",
    "trigger": {"event": "purchase"},
    "steps": [
        {"id": "confirm", "send": "email", "template": "order_confirmation"},
        {"id": "tips", "send": "email", "template": "care_tips"},
    ],
}


def rate_limited(input: SendMessageInput) -> SendMessageResult:
    raise ApplicationError(
        "429 too many requests (retry in 420 s)",
        type="RateLimitedError",
        next_retry_delay=ANNOUNCED,
    )


def rate_limited_for_hours(input: SendMessageInput) -> SendMessageResult:
    raise ApplicationError(
        "429 too many requests (retry in 5 h)",
        type="RateLimitedError",
        next_retry_delay=timedelta(hours=5),
    )


# A day of retries 5 h apart (SEND_OPTIONS' schedule-to-close): the local attempt, then the
# activity at 0, 5, 10, 15 and 20 h; the second send goes out.
RETRIES_RUN_OUT = [rate_limited_for_hours] * 6 + [sent]


def transient(input: SendMessageInput) -> SendMessageResult:
    raise ApplicationError("connection reset before the request went out", type="TransientError")


# The local attempt fails at once (no delay announced), the activity's first attempt is
# rate-limited for 5 h: the run is cancelled while the activity waits for its next attempt.
CANCELLED_BETWEEN_RETRIES = [transient, rate_limited_for_hours, sent]
# The local attempt announces 7 min: the run is cancelled during that wait (a timer).
CANCELLED_IN_ANNOUNCED_WAIT = [rate_limited, sent, sent]


class GivingUpFakes(Fakes):
    """The run's activities, with the ledger's end of a send whose retries are over."""

    def __init__(self, replies: list[Callable[[SendMessageInput], SendMessageResult]]) -> None:
        super().__init__(replies)
        self.given_up: list[GiveUpSendInput] = []

    @activity.defn(name=GIVE_UP_SEND)
    async def give_up_send(self, input: GiveUpSendInput) -> SendMessageResult:
        self.given_up.append(input)
        return SendMessageResult(message_key=input.request.message_key, outcome="failed")

    def activities(self) -> list[Callable[..., Any]]:
        return [*super().activities(), self.give_up_send]


async def run_to_history(
    client: Client, fakes: Fakes, definition: dict[str, Any]
) -> tuple[JourneyResult, WorkflowHistory]:
    """One run to its end on a worker of its own, and its history."""
    queue = str(uuid.uuid4())
    async with worker(client, fakes, queue):
        handle = await start_run(client, definition, queue)
        result = await handle.result()
        history = await handle.fetch_history()
    return result, history


async def retry_pending(handle: WorkflowHandle[Any, JourneyResult]) -> bool:
    """The send activity failed once and waits for its next attempt (its retry backoff)."""
    pending = (await handle.describe()).raw_description.pending_activities
    return any(activity.attempt >= 2 for activity in pending)


async def waiting_on_a_timer(handle: WorkflowHandle[Any, JourneyResult]) -> bool:
    history = await handle.fetch_history()
    return any(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in history.events)


async def cancel_to_history(
    client: Client,
    fakes: Fakes,
    definition: dict[str, Any],
    ready: Callable[[WorkflowHandle[Any, JourneyResult]], Awaitable[bool]],
) -> tuple[BaseException, WorkflowHistory]:
    """One run cancelled once `ready` says so, on a worker of its own: how it ended, its history.

    The test server skips time only while a result is awaited: the run stays where it waits.
    """
    queue = str(uuid.uuid4())
    async with worker(client, fakes, queue):
        handle = await start_run(client, definition, queue)
        for _ in range(600):  # a bound, not a measure: the run gets there in a few tasks
            if await ready(handle):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the run never reached the state to cancel it in")
        await handle.cancel()
        try:
            await handle.result()
        except WorkflowFailureError as exc:
            ended: BaseException = exc.cause
        else:
            ended = AssertionError("the cancelled run completed")
        history = await handle.fetch_history()
    return ended, history


def send_times(history: WorkflowHistory) -> list[tuple[str, datetime]]:
    """Each send attempt the workflow asked for, "local" or "activity", at its server time.

    A local attempt's time is that of its marker: the workflow task in which it ended.
    """
    asked = []
    for event in history.events:
        at = event.event_time.ToDatetime()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == SEND_MESSAGE:
                asked.append(("activity", at))
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            if b'"send_message"' in b"".join(p.data for p in details["data"].payloads):
                asked.append(("local", at))
    return asked


async def test_the_regular_attempt_waits_the_delay_the_local_attempt_announced(
    client: Client,
) -> None:
    fakes = Fakes([rate_limited, sent, sent])
    result, history = await run_to_history(client, fakes, TWO_SENDS)
    assert result == JourneyResult(outcome="completed", sent=2)
    (first, failed_at), (second, retried_at), (third, _) = send_times(history)
    assert (first, second, third) == ("local", "activity", "local")
    # The provider said when it would take the message again: not a moment before.
    assert retried_at - failed_at >= ANNOUNCED
    confirm_local, confirm_retry, tips = fakes.sends
    assert confirm_local.message_key == confirm_retry.message_key != tips.message_key
    # The activity judges quiet hours and caps at its own time, not the local attempt's.
    assert confirm_retry.now - confirm_local.now >= ANNOUNCED


async def test_when_the_retries_run_out_the_ledger_row_is_ended_and_the_run_goes_on(
    client: Client,
) -> None:
    fakes = GivingUpFakes(list(RETRIES_RUN_OUT))
    result, history = await run_to_history(client, fakes, TWO_SENDS)
    # on_error: continue (the default): the step is over, the next one runs.
    assert result == JourneyResult(outcome="completed", sent=1)
    assert [how for how, _at in send_times(history)] == ["local", "activity", "local"]
    assert [s.step for s in fakes.sends] == ["confirm"] * 6 + ["tips"]
    (given_up,) = fakes.given_up
    confirm = fakes.sends[0]
    assert given_up.request.message_key == confirm.message_key
    assert "429 too many requests" in given_up.reason
    # Recorded at the time the retries ended: a day after the send was asked for.
    assert given_up.request.now - confirm.now >= timedelta(days=1)


async def test_a_run_cancelled_while_its_send_waits_to_retry_ends_the_row_and_stops(
    client: Client,
) -> None:
    fakes = GivingUpFakes(list(CANCELLED_BETWEEN_RETRIES))
    ended, _history = await cancel_to_history(client, fakes, TWO_SENDS, retry_pending)
    assert isinstance(ended, CancelledError)
    (given_up,) = fakes.given_up
    confirm = fakes.sends[0]
    assert given_up.ended_by == "cancelled"
    assert given_up.request.message_key == confirm.message_key
    # Cancelled means no further step: the second send is never asked for.
    assert [s.step for s in fakes.sends] == ["confirm", "confirm"]


async def test_a_run_cancelled_while_its_send_waits_an_announced_delay_ends_the_row(
    client: Client,
) -> None:
    fakes = GivingUpFakes(list(CANCELLED_IN_ANNOUNCED_WAIT))
    ended, _history = await cancel_to_history(client, fakes, TWO_SENDS, waiting_on_a_timer)
    assert isinstance(ended, CancelledError)
    (given_up,) = fakes.given_up
    assert (given_up.ended_by, given_up.request.step) == ("cancelled", "confirm")
    assert [s.step for s in fakes.sends] == ["confirm"]
