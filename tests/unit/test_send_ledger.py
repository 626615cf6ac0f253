"""The send ledger's state machine on its own: claim, lease, the records, and unknown outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from trouw.domain.consent import ConsentState
from trouw.domain.db.engine import make_engine, migrate, session_scope
from trouw.domain.db.models import Customer, JourneyControl, Message
from trouw.domain.send_ledger import InProgress, Lease, Reconcile, Resend, SendLedger, Wait
from trouw.language.contracts import SendMessageInput, SendMessageResult
from trouw.language.policy import Decision
from trouw.providers.base import LookupAnswer, PermanentDeliveryError
from trouw.settings import Settings

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
KEY = "journey:c1:welcome:e1#0:hello:email"


def send_input(**changes: object) -> SendMessageInput:
    fields: dict[str, object] = {
        "message_key": KEY,
        "customer_id": "c1",
        "journey": "welcome",
        "journey_version": "1",
        "workflow_id": "journey:c1:welcome:e1",
        "step": "hello",
        "channel": "email",
        "template": "welcome",
        "category": "service",
        "triggered_at": NOW,
        "service_cutoff_days": 180,
        "now": NOW,
    }
    fields.update(changes)
    return SendMessageInput.model_validate(fields)


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    migrate(engine)
    with session_scope(engine) as session:
        session.add(Customer(id="c1", email="c1@example.com", phone="+32470000001"))
    return engine


def ledger(db: Engine, *, answer_within: float = 0.0, **settings: object) -> SendLedger:
    return SendLedger(
        db,
        Settings(signing_keys=["k"], **settings),  # type: ignore[arg-type]
        answer_within=lambda channel: answer_within,
    )


def row(db: Engine) -> Message:
    with session_scope(db) as session:
        message = session.exec(select(Message).where(Message.message_key == KEY)).one()
        return message


def claim_and_lease(book: SendLedger, db: Engine, *, length: timedelta) -> Lease:
    with session_scope(db) as session:
        message = book.claim(session, send_input())
        assert book.earlier_attempt(session, message, send_input()) is None
        return book.lease(message, send_input(), length=length)


def test_a_claim_makes_one_row_and_a_second_claim_finds_it(db: Engine) -> None:
    book = ledger(db)
    with session_scope(db) as session:
        first = book.claim(session, send_input())
    with session_scope(db) as session:
        again = book.claim(session, send_input())
        assert again.id == first.id
        assert again.state == "claimed"
        assert book.earlier_attempt(session, again, send_input()) is None


def test_a_leased_row_is_in_progress_until_its_lease_ends(db: Engine) -> None:
    book = ledger(db)
    claim_and_lease(book, db, length=timedelta(minutes=5))
    with session_scope(db) as session:
        message = book.claim(session, send_input())
        earlier = book.earlier_attempt(session, message, send_input())
    assert isinstance(earlier, InProgress)
    assert timedelta(minutes=4) < earlier.retry_in <= timedelta(minutes=5)
    assert row(db).attempts == 1


def test_an_expired_lease_makes_the_outcome_unknown_and_asks_the_provider(db: Engine) -> None:
    book = ledger(db, answer_within=600)
    claim_and_lease(book, db, length=timedelta(seconds=-1))
    with session_scope(db) as session:
        message = book.claim(session, send_input())
        earlier = book.earlier_attempt(session, message, send_input())
    assert isinstance(earlier, Reconcile)
    assert earlier.query.to == "c1@example.com"
    assert earlier.answer_by > datetime.now(UTC) + timedelta(seconds=500)
    assert row(db).state == "reconciling"


@pytest.mark.parametrize(
    ("answer", "state", "settled_as"),
    [
        (LookupAnswer(found=True, settled=True, provider_id="p1"), "sent", SendMessageResult),
        (LookupAnswer(found=False, settled=True), "claimed", Resend),
        (LookupAnswer(found=False, settled=False), "reconciling", Wait),
    ],
)
def test_the_providers_answer_settles_an_unknown_outcome(
    db: Engine, answer: LookupAnswer, state: str, settled_as: type
) -> None:
    book = ledger(db, answer_within=600)
    lease = claim_and_lease(book, db, length=timedelta(seconds=30))
    book.unknown(send_input(), lease, "connection reset after the request")
    settled = book.settle(send_input(), answer, None)
    assert isinstance(settled, settled_as)
    assert row(db).state == state
    if isinstance(settled, SendMessageResult):
        assert settled.outcome == "sent"
        assert row(db).provider_id == "p1"


def test_without_an_answer_by_the_deadline_the_category_rule_decides(db: Engine) -> None:
    book = ledger(db, answer_within=0, resend_unknown_service=False)
    lease = claim_and_lease(book, db, length=timedelta(seconds=30))
    book.unknown(send_input(), lease, "timed out")
    settled = book.settle(send_input(), None, "lookup unavailable")
    assert isinstance(settled, SendMessageResult)
    # An unknown outcome not resent ends the message: the workflow sees no send.
    assert settled.outcome == "suppressed"
    assert (row(db).state, row(db).reason) == ("unknown", "unknown_outcome_not_resent")
    with session_scope(db) as session:
        message = book.claim(session, send_input())
        assert isinstance(book.earlier_attempt(session, message, send_input()), SendMessageResult)


def test_sent_release_and_fail_record_what_the_call_came_to(db: Engine) -> None:
    book = ledger(db)
    lease = claim_and_lease(book, db, length=timedelta(seconds=30))
    assert book.release(send_input(), lease, "429 from the provider")
    assert (row(db).state, row(db).error) == ("claimed", "429 from the provider")
    claim_and_lease(book, db, length=timedelta(seconds=30))
    result = book.sent(send_input(), "sendgrid", "sg-1")
    assert result.outcome == "sent"
    assert (row(db).state, row(db).provider_id, row(db).attempts) == ("sent", "sg-1", 2)
    assert [entry["status"] for entry in row(db).status_history] == ["sending", "sending", "sent"]


def test_a_permanent_refusal_fails_the_message_and_marks_the_address(db: Engine) -> None:
    book = ledger(db)
    lease = claim_and_lease(book, db, length=timedelta(seconds=30))
    book.fail(
        send_input(),
        lease,
        PermanentDeliveryError("no such mailbox", provider="sendgrid", invalid_recipient=True),
    )
    assert row(db).state == "failed"
    with session_scope(db) as session:
        customer = session.get(Customer, "c1")
        assert customer is not None and customer.email_invalid


def test_a_paused_journey_holds_with_one_history_entry_then_drops(db: Engine) -> None:
    book = ledger(db, journey_hold_hours=2, journey_hold_recheck_seconds=600)
    pause = JourneyControl(journey="welcome", paused=True, at=NOW, by="cli:test")
    consent = ConsentState()
    for minutes in (0, 10, 20):
        with session_scope(db) as session:
            message = book.claim(session, send_input())
            held = book.hold(
                session, message, send_input(now=NOW + timedelta(minutes=minutes)), pause, consent
            )
        assert held.outcome == "deferred"
    statuses = [entry["status"] for entry in row(db).status_history]
    assert statuses.count("defer") == 1
    with session_scope(db) as session:
        message = book.claim(session, send_input())
        dropped = book.hold(
            session, message, send_input(now=NOW + timedelta(hours=3)), pause, consent
        )
    assert (dropped.outcome, row(db).state) == ("suppressed", "suppressed")


def test_a_policy_decision_ends_or_defers_the_claim(db: Engine) -> None:
    book = ledger(db)
    consent = ConsentState()
    later = NOW + timedelta(hours=8)
    with session_scope(db) as session:
        message = book.claim(session, send_input())
        deferred = book.decided(
            session,
            message,
            send_input(),
            Decision("defer", "quiet_hours", later, "quiet"),
            consent,
        )
        assert deferred is not None and deferred.until == later
        assert (
            book.decided(
                session, message, send_input(), Decision("send", None, None, "ok"), consent
            )
            is None
        )
        suppressed = book.decided(
            session, message, send_input(), Decision("suppress", "no_consent", None, "no"), consent
        )
        assert suppressed is not None and suppressed.outcome == "suppressed"
    assert row(db).state == "suppressed"


@pytest.mark.parametrize(
    ("left_by_the_last_attempt", "ends_as", "outcome"),
    [
        ("released", "failed", "failed"),  # refused for now (429, a 5xx): surely not sent
        ("in_flight", "unknown", "suppressed"),  # cut mid-call: the provider may have it
        ("reconciling", "unknown", "suppressed"),  # nobody will ask the provider again
        ("sent", "sent", "sent"),  # a final row stays as it is
    ],
)
def test_a_send_given_up_ends_the_row_its_last_attempt_left(
    db: Engine, left_by_the_last_attempt: str, ends_as: str, outcome: str
) -> None:
    book = ledger(db)
    lease = claim_and_lease(book, db, length=timedelta(seconds=30))
    match left_by_the_last_attempt:
        case "released":
            book.release(send_input(), lease, "429 from the provider")
        case "reconciling":
            book.unknown(send_input(), lease, "connection lost after the request")
        case "sent":
            book.sent(send_input(), "sendgrid", "sg-1")
    given_up = book.give_up(send_input(now=NOW + timedelta(days=1)), "429 from the provider")
    assert given_up is not None and given_up.outcome == outcome
    message = row(db)
    assert message.state == ends_as
    if ends_as != "sent":
        assert message.status_history[-1]["status"] == ends_as
        assert "retries over: 429 from the provider" in message.status_history[-1]["detail"]
        assert message.status_history[-1]["at"] == (NOW + timedelta(days=1)).isoformat()
    # Whatever comes later (a late answer of the cut attempt) cannot reopen it.
    assert book.release(send_input(), lease, "late") is False


@pytest.mark.parametrize(
    ("released", "ends_as", "reason"),
    [(True, "failed", None), (False, "unknown", "unknown_outcome_run_cancelled")],
)
def test_a_send_whose_run_is_cancelled_ends_the_row_saying_so(
    db: Engine, released: bool, ends_as: str, reason: str | None
) -> None:
    book = ledger(db)
    lease = claim_and_lease(book, db, length=timedelta(seconds=30))
    if released:
        book.release(send_input(), lease, "429 from the provider")
    book.give_up(send_input(), "in Temporal", ended_by="cancelled")
    message = row(db)
    assert (message.state, message.reason) == (ends_as, reason)
    assert "run cancelled: in Temporal" in message.status_history[-1]["detail"]


def test_a_send_given_up_before_any_attempt_made_its_row_records_nothing(db: Engine) -> None:
    assert ledger(db).give_up(send_input(), "the database was down all day") is None
