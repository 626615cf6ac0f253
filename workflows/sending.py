"""How a workflow calls the send activity: one local attempt first, durable retries after it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    FailureError,
    RetryState,
)

with workflow.unsafe.imports_passed_through():
    from trouw.language.contracts import (
        GIVE_UP_SEND,
        SEND_MESSAGE,
        GiveUpSendInput,
        SendMessageInput,
        SendMessageResult,
    )
    from trouw.language.vocabulary import GiveUpKind

    from workflows.options import LOCAL_OPTIONS, SEND_LOCAL_OPTIONS, SEND_OPTIONS

# Patch id: a send's first attempt runs as a local activity (one marker in the workflow task
# that asked for it) instead of an activity task (3 history events, a billed action and a
# second workflow task). Runs that sent before this change keep sending as activities.
LOCAL_FIRST_SEND = "local-first-send"
# Patch id: after a local attempt whose error says when to try again (a provider's Retry-After,
# another attempt's lease still running), the regular activity starts after that delay (one
# timer), not at once. Runs that handed over at once before this change replay so.
WAIT_ANNOUNCED_DELAY = "send-waits-announced-delay"
# Patch id: when the activity's retries are over (its day, or its attempts), the ledger row the
# last attempt left on its way (claimed, reconciling) is ended, one local activity: it read as
# "deferred", still on its way, although nothing would send it any more.
GIVE_UP_ENDS_THE_ROW = "send-give-up-ends-the-row"
# Patch id: when the run is cancelled while a send is on its way (its local attempt, the wait
# for an announced delay, the activity or its retries), the ledger row is ended the same way
# before the cancellation goes on: it read as "deferred" forever. Runs cancelled before this
# change ended at once, their row as the last attempt left it.
CANCEL_ENDS_THE_ROW = "send-cancel-ends-the-row"
# Patch id: a run inside its customer workflow that an operator cancelled (workflows/inline.py)
# starts no retry after its local attempt failed, and a cancel while it waits on its retries
# cancels them: the row is ended as for a cancel in Temporal. Before this change the retries went
# on and the message could go out hours after the cancel.
CANCEL_STOPS_SEND_RETRIES = "inline-cancel-stops-send-retries"
# Retries over: no attempt follows. A refusal no retry mends was recorded by its attempt.
_RETRIES_OVER = (RetryState.TIMEOUT, RetryState.MAXIMUM_ATTEMPTS_REACHED)


async def send_message(
    request: SendMessageInput,
    *,
    local_first: bool,
    retries: workflow.ActivityConfig | None = None,
    on_retry: Callable[[], None] | None = None,
    why_cancelled: Callable[[], str | None] | None = None,
) -> SendMessageResult:
    """Send through the ledgered send activity (`_send`); a run cancelled meanwhile ends the row.

    The cancellation reaches the send as an asyncio.CancelledError (a timer) or as the
    activity's failure with a CancelledError cause; either way no attempt will follow, so the
    row is ended (`give_up_send`: claimed -> failed, in flight or reconciling -> unknown) in a
    local activity shielded from a second cancellation, and the run then ends cancelled (it
    does not go on with its next step as after a failed send). `why_cancelled` gives the
    reason of a cancel that is not Temporal's (an operator's cancel of a run inside its customer
    workflow), for the row.
    """
    asked = workflow.now()
    try:
        return await _send(
            request,
            local_first=local_first,
            retries=retries,
            on_retry=on_retry,
            why_cancelled=why_cancelled,
        )
    except (asyncio.CancelledError, FailureError) as exc:
        if not _cancelled(exc) or not workflow.patched(CANCEL_ENDS_THE_ROW):
            raise
        reason = (why_cancelled() if why_cancelled else None) or (
            "in Temporal, while the send was on its way"
        )
        await asyncio.shield(_give_up(request, asked, reason, "cancelled"))
        raise asyncio.CancelledError(str(exc)) from exc


async def _give_up(
    request: SendMessageInput, since: datetime, reason: str, ended_by: GiveUpKind
) -> None:
    """No attempt follows: the ledger row left on its way is ended (`give_up_send`)."""
    given_up = GiveUpSendInput(request=_at(request, since), reason=reason, ended_by=ended_by)
    await workflow.execute_local_activity(GIVE_UP_SEND, given_up, **LOCAL_OPTIONS)


def _at(request: SendMessageInput, since: datetime) -> SendMessageInput:
    """The request as of now, `since` being when its `now` was taken: the policy (quiet hours,
    caps) and the ledger's records judge an attempt or an end at its own time."""
    return request.model_copy(update={"now": request.now + (workflow.now() - since)})


def _cancelled(exc: BaseException) -> bool:
    """Whether the send ended because the run was cancelled."""
    if isinstance(exc, asyncio.CancelledError | CancelledError):
        return True
    return isinstance(exc, ActivityError) and isinstance(exc.cause, CancelledError)


async def _send(
    request: SendMessageInput,
    *,
    local_first: bool,
    retries: workflow.ActivityConfig | None,
    on_retry: Callable[[], None] | None = None,
    why_cancelled: Callable[[], str | None] | None = None,
) -> SendMessageResult:
    """Send through the ledgered send activity; `retries` is the regular activity's profile.

    With `local_first`, the first attempt is a local activity with no retry of its own. The
    ledger makes every attempt of one message key the same send, local or not (claim, lease,
    stored outcome), so when that attempt fails with a retryable error (a rate limit, a
    connection lost, another attempt's lease still running, an outcome to reconcile) the
    regular activity takes over with the durable retries and backoff of `retries`, visible in
    the Temporal UI as before. A worker lost mid-attempt loses the workflow task: the next
    worker replays it and makes the local attempt again, which the ledger turns into a wait for
    the lease and a reconciliation, as it does for an activity retried after a lost worker.
    When the failure announces a retry delay, the regular activity waits for it, as Temporal's
    retry of an activity does (`next_retry_delay`), and is judged at its own time (`now`).
    Errors that no retry can mend are raised at once, as the activity raised them. When the
    activity's retries are over, the ledger row its last attempt left on its way is ended
    (`give_up_send`: failed, or unknown if the provider may have it) before the error is raised.
    """
    options = retries if retries is not None else SEND_OPTIONS
    if local_first:
        try:
            result: SendMessageResult = await workflow.execute_local_activity(
                SEND_MESSAGE, request, result_type=SendMessageResult, **SEND_LOCAL_OPTIONS
            )
            return result
        except FailureError as exc:
            # A local activity's failure comes as an ActivityError or (temporalio 1.35) as the
            # activity's own error; the caller gets the ActivityError an activity would give.
            cause = exc.cause if isinstance(exc, ActivityError) and exc.cause else exc
            if isinstance(cause, CancelledError):
                raise
            if _final(cause, options):
                if isinstance(exc, ActivityError):
                    raise
                raise ActivityError(
                    "local activity failed",
                    scheduled_event_id=0,
                    started_event_id=0,
                    identity="",
                    activity_type=SEND_MESSAGE,
                    activity_id="",
                    retry_state=RetryState.NON_RETRYABLE_FAILURE,
                ) from cause
            delay = cause.next_retry_delay if isinstance(cause, ApplicationError) else None
            workflow.logger.info(
                "send %s: local attempt failed (%s); retrying as an activity in %s",
                request.message_key,
                cause,
                delay or "no time",
            )
            if (
                why_cancelled is not None
                and why_cancelled()
                and workflow.patched(CANCEL_STOPS_SEND_RETRIES)
            ):
                # Cancelled while the local attempt ran: no retry; the caller ends the row.
                raise asyncio.CancelledError("cancelled while the local attempt ran") from exc
            if on_retry is not None:
                on_retry()  # what follows may outlast this workflow task
            if delay and workflow.patched(WAIT_ANNOUNCED_DELAY):
                since = workflow.now()
                await workflow.sleep(delay)
                # The activity's `at_this_attempt` only counts its own retries.
                request = _at(request, since)
    asked = workflow.now()
    try:
        retried: SendMessageResult = await workflow.execute_activity(
            SEND_MESSAGE, request, result_type=SendMessageResult, **options
        )
    except ActivityError as exc:
        if exc.retry_state in _RETRIES_OVER and workflow.patched(GIVE_UP_ENDS_THE_ROW):
            last = exc.cause or exc
            reason = last.message if isinstance(last, FailureError) else str(last)
            await _give_up(request, asked, reason, "retries_over")
        raise
    return retried


def _final(cause: BaseException, options: workflow.ActivityConfig) -> bool:
    """Whether the regular activity would not retry this failure either."""
    if not isinstance(cause, ApplicationError):
        return False  # a timeout: the activity's retries decide
    policy = options.get("retry_policy")
    refused = (policy.non_retryable_error_types if policy is not None else None) or []
    return cause.non_retryable or (cause.type or "") in refused
