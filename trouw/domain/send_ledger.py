"""The send ledger: one Message row per message key, and every state change a send makes to it.

States: claimed → in_flight (leased to one attempt) → sent | failed | claimed (released for a
retry) | reconciling (the outcome is unknown) → sent | claimed (resent) | unknown; a policy
decision may end a claim as suppressed, or leave it claimed (deferred); when no retry follows
(retries over, or the run cancelled), claimed ends failed and in_flight or reconciling unknown
(`give_up`). sent, suppressed, failed and unknown are final: a retry or a replay that meets them
sends nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, assert_never

from sqlalchemy import bindparam
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from trouw.domain.consent import ConsentState, suppress
from trouw.domain.control import HELD, JOURNEY_PAUSED, hold_decision
from trouw.domain.db.engine import insert_new, session_scope
from trouw.domain.db.models import Customer, JourneyControl, Message
from trouw.language.contracts import SendMessageInput, SendMessageResult
from trouw.language.policy import Decision
from trouw.language.vocabulary import FINAL_STATES, GiveUpKind, send_outcome
from trouw.providers.base import LookupAnswer, LookupQuery, PermanentDeliveryError
from trouw.settings import Settings
from trouw.stack import metrics

log = logging.getLogger("trouw.send")
# How often a message whose outcome is unknown asks its provider again (at most).
RECONCILE_POLL = timedelta(seconds=60)


@dataclass(frozen=True)
class Reconcile:
    """A message whose last attempt's outcome is unknown: ask the provider before anything."""

    query: LookupQuery
    answer_by: datetime  # wall clock: when the category rule decides without an answer


@dataclass(frozen=True)
class Lease:
    """One attempt's hold on an in_flight row: the row's attempt count when it leased, and
    until when (wall clock) it may be sending. A write after the call is fenced by it."""

    attempt: int
    until: datetime


@dataclass(frozen=True)
class InProgress:
    """Another attempt holds the lease and may be talking to the provider right now."""

    retry_in: timedelta


@dataclass(frozen=True)
class Resend:
    """The unknown outcome is settled as not sent: the row is claimed again for a new send."""

    why: str


@dataclass(frozen=True)
class Wait:
    """Nothing learnt about the unknown outcome yet: ask again later; the row is unchanged."""

    heard: str
    retry_in: timedelta


ReconcileAction = Literal["accepted", "resend", "wait", "give_up"]


def reconcile_verdict(
    answer: LookupAnswer | None, *, now: datetime, answer_by: datetime, resend: bool
) -> ReconcileAction:
    """What to do about an unknown outcome, given the provider's answer (None: none came).

    The provider has it: accepted, never resent. The provider is sure it does not: it was not
    accepted, so resending makes no duplicate, whatever the category. No sure answer yet: wait
    until `answer_by`; then the category's resend setting decides (at least once, or at most
    once with the outcome recorded as unknown).
    """
    if answer is not None and answer.found:
        return "accepted"
    if answer is not None and answer.settled:
        return "resend"
    if now < answer_by:
        return "wait"
    return "resend" if resend else "give_up"


class SendLedger:
    """The ledger's state machine over the Message rows of one database.

    `answer_within(channel)` is how long the channel's provider may take to answer a lookup
    (0: it cannot be asked, the category rule decides at once).
    """

    def __init__(
        self, engine: Engine, settings: Settings, *, answer_within: Callable[[str], float]
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.answer_within = answer_within

    # --- phase 1, in the caller's transaction: claim, look at earlier attempts, decide, lease -
    def claim(self, session: Session, input: SendMessageInput) -> Message:
        """The row of this message key, locked; made (claimed) if no attempt made it before.

        Two statements whether the row is new or not: an INSERT that skips a key already
        there, then the row FOR UPDATE (two attempts at once, a timed-out one still running,
        take turns here; on PostgreSQL the second one's INSERT waits for the first's
        transaction). Before: a look-up, then a savepoint around the insert of a new row."""
        table = Message.__table__  # type: ignore[attr-defined]
        session.execute(
            insert_new(session, table, key=["message_key"]),
            {
                **_NEW_ROW,
                "message_key": input.message_key,
                "customer_id": input.customer_id,
                "journey": input.journey,
                "journey_version": input.journey_version,
                "workflow_id": input.workflow_id,
                "step": input.step,
                "channel": input.channel,
                "category": input.category,
                "template": input.template,
                "created_at": input.now,
            },
        )
        message = _row(session, input.message_key, lock=True)
        assert message is not None, "inserted or already there"
        return message

    def earlier_attempt(
        self, session: Session, message: Message, input: SendMessageInput
    ) -> SendMessageResult | Reconcile | InProgress | None:
        """What an earlier attempt left on the row; None: nothing, decide and send now."""
        if message.state in FINAL_STATES:
            return result(message)  # a retry or replay: never a second send
        if message.state == "in_flight":
            held = _lease_left(message)
            if held is not None:
                return InProgress(retry_in=held)
            # The attempt ended without recording an answer (its worker was lost).
            self._mark_unknown(message, input, "the attempt ended without an answer")
        if message.state == "reconciling":
            if message.status is not None:
                return _accepted(session, message, input, f"the provider reported {message.status}")
            customer = session.get(Customer, input.customer_id) or Customer(id=input.customer_id)
            return _reconcile_request(message, customer)
        return None

    def decided(
        self,
        session: Session,
        message: Message,
        input: SendMessageInput,
        decision: Decision,
        consent: ConsentState,
    ) -> SendMessageResult | None:
        """Record the policy's decision; a suppression or a deferral is the attempt's result."""
        record_decision(message, decision, consent, input.now)
        if decision.action == "suppress":
            message.state = "suppressed"
            _count(session, input, "suppressed", decision.reason)
            return result(message)
        if decision.action == "defer":
            _count(session, input, "deferred", decision.reason)
            return result(message, until=decision.until)
        return None

    def hold(
        self,
        session: Session,
        message: Message,
        input: SendMessageInput,
        pause: JourneyControl,
        consent: ConsentState,
    ) -> SendMessageResult:
        """The journey is paused: hold the message (deferred) or, past the hold limit, drop it."""
        first = _last_entry(message, HELD)
        held_since = input.now
        if first is not None and datetime.fromisoformat(first["at"]) >= pause.at:
            held_since = datetime.fromisoformat(first["at"])
        decision = hold_decision(
            pause=pause,
            held_since=held_since,
            now=input.now,
            limit=timedelta(hours=self.settings.journey_hold_hours),
            recheck=timedelta(seconds=self.settings.journey_hold_recheck_seconds),
        )
        if held_since == input.now:
            _push_status(message, HELD, input.now, decision.text)
        if (
            decision.action == "defer"
            and message.decision == "defer"
            and message.reason == JOURNEY_PAUSED
        ):
            return result(message, until=decision.until)  # still held: one history entry
        decided = self.decided(session, message, input, decision, consent)
        assert decided is not None, "a hold only defers or suppresses"
        if decision.action == "defer":
            metrics.on_commit(session, metrics.CONTROL_ACTIONS.labels(action="hold").inc)
        return decided

    def failed(
        self, session: Session, message: Message, input: SendMessageInput, error: str
    ) -> None:
        """The message cannot be sent (a template that does not render, a permanent refusal)."""
        message.state = "failed"
        message.error = error
        _push_status(message, "failed", input.now, error)
        session.add(message)
        _count(session, input, "failed", None)

    def ended_unknown(
        self, session: Session, message: Message, input: SendMessageInput, reason: str, why: str
    ) -> None:
        """The provider may have the message and nobody will send or ask again: final unknown."""
        message.state = "unknown"
        message.reason = reason
        message.reason_text = f"the provider may have sent it; {why}"
        _push_status(message, "unknown", input.now, message.reason_text)
        session.add(message)
        _count(session, input, "unknown", reason)

    def lease(self, message: Message, input: SendMessageInput, *, length: timedelta) -> Lease:
        """Mark the row in flight for this attempt; the lease that its later writes carry.

        The lease says until when this attempt may still be sending: no other attempt sends
        before then (workflows/options.py derives `length` from the provider call's budget).
        """
        message.state = "in_flight"
        message.attempts += 1
        started = datetime.now(UTC)
        lease_until = started + length
        message.status_history = [
            *(message.status_history or []),
            {
                "status": "sending",
                "at": input.now.isoformat(),
                "detail": None,
                "started": started.isoformat(),
                "lease_until": lease_until.isoformat(),
            },
        ]
        return Lease(attempt=message.attempts, until=lease_until)

    # --- unknown outcomes: the provider's answer, then the category rule ----------------------
    def settle(
        self, input: SendMessageInput, answer: LookupAnswer | None, problem: str | None
    ) -> SendMessageResult | Resend | Wait:
        """Apply what the provider answered (None: no answer; `problem`: why) to the row."""
        with session_scope(self.engine) as session:
            message = _row(session, input.message_key, lock=True)
            assert message is not None
            if message.state != "reconciling":
                return result(message)  # another attempt settled it meanwhile
            if message.status is not None:  # a webhook arrived while we asked
                return _accepted(session, message, input, f"the provider reported {message.status}")
            unknown = _last_entry(message, "outcome_unknown") or {}
            answer_by = datetime.fromisoformat(unknown.get("answer_by") or input.now.isoformat())
            now = datetime.now(UTC)
            verdict = reconcile_verdict(
                answer, now=now, answer_by=answer_by, resend=self._resends(message.category)
            )
            heard = answer.detail if answer is not None else (problem or "no answer")
            log.info("reconciling an unknown outcome: %s (%s)", verdict, heard)
            match verdict:
                case "accepted":
                    assert answer is not None
                    message.provider_id = message.provider_id or answer.provider_id
                    return _accepted(session, message, input, heard)
                case "resend":
                    why = (
                        "the provider does not have it: it was not accepted"
                        if answer is not None and answer.settled
                        else f"no answer by the deadline; a {message.category} message is resent"
                    )
                    message.state = "claimed"
                    _push_status(message, "resending", input.now, f"{why} ({heard})")
                    return Resend(why=why)
                case "wait":
                    session.rollback()  # nothing learnt: the row stays as it was
                    delay = min(RECONCILE_POLL, answer_by - now)
                    if answer is not None and answer.settles_at is not None:
                        delay = min(delay, answer.settles_at - now)
                    return Wait(heard=heard, retry_in=max(delay, timedelta(seconds=1)))
                case "give_up":
                    self.ended_unknown(
                        session,
                        message,
                        input,
                        "unknown_outcome_not_resent",
                        f"a {message.category} message is not resent ({heard})",
                    )
                    return result(message)
                case _:
                    assert_never(verdict)

    def _resends(self, category: str) -> bool:
        settings = self.settings
        return {
            "transactional": settings.resend_unknown_transactional,
            "service": settings.resend_unknown_service,
            "promotional": settings.resend_unknown_promotional,
        }[category]

    def _mark_unknown(self, message: Message, input: SendMessageInput, detail: str) -> None:
        """The attempt is over and the provider may have the message: wait for an answer."""
        answer_by = datetime.now(UTC) + timedelta(seconds=self.answer_within(input.channel))
        log.warning(
            "outcome unknown (%s): the provider is asked until %s before anything is resent",
            detail,
            answer_by.isoformat(timespec="seconds"),
        )
        message.state = "reconciling"
        message.status_history = [
            *(message.status_history or []),
            {
                "status": "outcome_unknown",
                "at": input.now.isoformat(),
                "detail": detail,
                "answer_by": answer_by.isoformat(),
            },
        ]

    # --- the workflow stopped retrying -------------------------------------------------------
    def give_up(
        self, input: SendMessageInput, reason: str, *, ended_by: GiveUpKind = "retries_over"
    ) -> SendMessageResult | None:
        """No attempt will follow (the activity's retries are over, or the run was cancelled
        while the send went on): end a row left on its way.

        Claimed (the last attempt was refused for now: a rate limit, a transient error): failed.
        In flight or reconciling (the provider may have it; nobody will ask again): unknown,
        not resent. A final row is left as it is; None: no attempt ever made the row.
        """
        match ended_by:
            case "retries_over":
                why, unknown_reason = f"retries over: {reason}", "unknown_outcome_retries_over"
            case "cancelled":
                why, unknown_reason = f"run cancelled: {reason}", "unknown_outcome_run_cancelled"
            case _:
                assert_never(ended_by)
        with session_scope(self.engine) as session:
            message = _row(session, input.message_key, lock=True)
            if message is None:
                return None
            if message.state in FINAL_STATES:
                return result(message)
            if message.state == "claimed":
                self.failed(session, message, input, why)
                return result(message)
            self.ended_unknown(session, message, input, unknown_reason, f"not resent ({why})")
            return result(message)

    # --- phase 2: what the provider call came to, each in a transaction of its own -----------
    def sent(
        self, input: SendMessageInput, provider: str, provider_id: str | None
    ) -> SendMessageResult:
        with session_scope(self.engine) as session:
            message = _one(session, input.message_key)
            message.state = "sent"
            message.provider = provider
            message.provider_id = provider_id
            message.sent_at = input.now
            message.status = "sent"
            _push_status(message, "sent", input.now, provider)
            session.add(message)
            _count(session, input, "sent", None)
            return result(message)

    def release(self, input: SendMessageInput, lease: Lease, detail: str) -> bool:
        """The provider surely did not take it (rate limited, a transient error): claim again.

        False: the lease was over and a later attempt had moved the row on (see `_leased`).
        """
        with session_scope(self.engine) as session:
            message = _leased(session, input, lease, "released")
            if message is None:
                return False
            message.state = "claimed"
            message.error = detail
            session.add(message)
            return True

    def unknown(self, input: SendMessageInput, lease: Lease, detail: str) -> bool:
        """This attempt is over (no lease left) but the provider may have sent the message.

        False: the lease was over and a later attempt had moved the row on (see `_leased`).
        """
        with session_scope(self.engine) as session:
            message = _leased(session, input, lease, "outcome unknown")
            if message is None:
                return False
            message.error = detail
            self._mark_unknown(message, input, detail)
            session.add(message)
            return True

    def fail(self, input: SendMessageInput, lease: Lease, exc: PermanentDeliveryError) -> bool:
        """The provider refused for good; what it said about the recipient is kept too.

        False: the lease was over and a later attempt had moved the row on (see `_leased`);
        what the provider said about the recipient is kept all the same: it is about the
        address or the number, not about this attempt.
        """
        with session_scope(self.engine) as session:
            message = _leased(session, input, lease, "failed")
            if message is not None:
                self.failed(session, message, input, str(exc))
            customer = session.get(Customer, input.customer_id)
            if customer is not None:
                if exc.invalid_recipient:
                    if input.channel == "email":
                        customer.email_invalid = True
                    else:
                        customer.phone_invalid = True
                    session.add(customer)
                if exc.opted_out:
                    suppress(
                        session,
                        customer=customer,
                        channel="sms",
                        reason="sms_stop",
                        at=input.now,
                        source="provider",
                    )
            return message is not None


def _leased(session: Session, input: SendMessageInput, lease: Lease, what: str) -> Message | None:
    """The row, locked, while `lease` still holds it; None (logged) when it no longer does.

    An attempt records what its provider call came to after the call. Its lease may have ended
    by then (a slow database, a paused process): a later attempt then found the row in_flight
    without a lease and marked its outcome unknown, or has claimed and leased it itself (one
    more attempt on the row), or has settled it. That attempt's state stands: this write would
    set the row back (a resend without reconciliation, a sent message marked failed). The row
    lock (FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE transaction) makes the check and the
    write one step.
    """
    message = _one(session, input.message_key, lock=True)
    if message.state == "in_flight" and message.attempts == lease.attempt:
        return message
    log.warning(
        "attempt %d's lease ended before its answer was recorded (%s): the row is now %s after "
        "%d attempts and is left so; the next attempt reads it",
        lease.attempt,
        what,
        message.state,
        message.attempts,
    )
    return None


def result(message: Message, *, until: datetime | None = None) -> SendMessageResult:
    """The attempt's result as the workflow sees it, from the row's state."""
    return SendMessageResult(
        message_key=message.message_key,
        outcome=send_outcome(message.state),
        reason=message.reason,
        reason_text=message.reason_text,
        until=until,
    )


def _row(session: Session, message_key: str, *, lock: bool = False) -> Message | None:
    """The one lookup of a ledger row by its message key."""
    query = _ROW_LOCKED if lock else _ROW
    return session.exec(query, params={"message_key": message_key}).first()


# A new ledger row's columns that the claim does not set: the model's defaults (what
# Message(...) would give them), for the claim's INSERT, which does not go through the model.
_NEW_ROW = {
    name: field.get_default(call_default_factory=True)
    for name, field in Message.model_fields.items()
    if name != "id" and not field.is_required()
}

# Built once (each attempt looks its row up a few times); the key is bound.
_ROW = select(Message).where(col(Message.message_key) == bindparam("message_key"))
_ROW_LOCKED = _ROW.with_for_update()


def _one(session: Session, message_key: str, *, lock: bool = False) -> Message:
    """A row this attempt claimed: it is there."""
    message = _row(session, message_key, lock=lock)
    if message is None:
        raise LookupError(f"no ledger row for {message_key!r}")
    return message


def _accepted(
    session: Session, message: Message, input: SendMessageInput, heard: str
) -> SendMessageResult:
    message.state = "sent"
    message.sent_at = message.sent_at or input.now
    _push_status(message, "reconciled", input.now, f"outcome was unknown; {heard}: not resent")
    # The attempt that sent it recorded nothing: this is the send's one count.
    _count(session, input, "sent", None)
    return result(message)


def _reconcile_request(message: Message, customer: Customer) -> Reconcile:
    sending = _last_entry(message, "sending") or {}
    unknown = _last_entry(message, "outcome_unknown") or {}
    since = sending.get("started") or sending.get("lease_until") or unknown.get("at")
    to = (customer.email if message.channel == "email" else customer.phone) or ""
    return Reconcile(
        query=LookupQuery(
            message_key=message.message_key,
            to=to,
            since=datetime.fromisoformat(since) if since else datetime.now(UTC),
            body=message.subject if message.channel == "sms" else None,
        ),
        answer_by=datetime.fromisoformat(unknown["answer_by"])
        if unknown.get("answer_by")
        else datetime.now(UTC),
    )


def _count(session: Session, input: SendMessageInput, outcome: str, reason: str | None) -> None:
    """A message's decision in the metrics, once its transaction commits."""

    def count() -> None:
        metrics.SENDS.labels(channel=input.channel, category=input.category, outcome=outcome).inc()
        if outcome == "suppressed":
            metrics.SUPPRESSIONS.labels(channel=input.channel, reason=reason or "none").inc()
        elif outcome == "deferred":
            metrics.DEFERRALS.labels(channel=input.channel, reason=reason or "none").inc()

    metrics.on_commit(session, count)


def record_decision(
    message: Message, decision: Decision, consent: ConsentState, now: datetime
) -> None:
    """The decision, its reason and the consent it was taken on, in the row and its history."""
    message.decision = decision.action
    message.reason = decision.reason
    message.reason_text = decision.text
    message.consent_snapshot = consent.snapshot()
    message.decided_at = now
    label = decision.action if decision.action != "send" else "allowed"
    _push_status(message, label, now, decision.text)
    if decision.action == "defer":  # the reason code outlives the final decision that follows
        message.status_history[-1]["reason"] = decision.reason


def _last_entry(message: Message, status: str) -> dict[str, Any] | None:
    entries: list[dict[str, Any]] = message.status_history or []
    return next((entry for entry in reversed(entries) if entry.get("status") == status), None)


def _lease_left(message: Message) -> timedelta | None:
    """How long the attempt that marked this row in_flight may still be running, if at all.

    That attempt's "sending" entry holds its lease; an "outcome_unknown" entry after it means
    the attempt ended (webhook entries may come in between). Rows marked before leases: none.
    """
    for entry in reversed(message.status_history or []):
        if entry.get("status") == "outcome_unknown":
            return None
        if entry.get("status") == "sending":
            if not entry.get("lease_until"):
                return None
            left = datetime.fromisoformat(entry["lease_until"]) - datetime.now(UTC)
            return left if left > timedelta(0) else None
    return None


def _push_status(message: Message, status: str, at: datetime, detail: str | None) -> None:
    message.status_history = [
        *(message.status_history or []),
        {"status": status, "at": at.isoformat(), "detail": detail},
    ]
