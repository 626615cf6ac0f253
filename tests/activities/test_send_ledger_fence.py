"""An attempt whose lease ended before it recorded its answer cannot set the row back.

SQLite and PostgreSQL (the `engine` fixture): the write after the provider call is fenced by the
attempt's lease (the row's attempt count when it leased) under the row lock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from tests.activities.test_send_message import expire_lease
from tests.unit.test_send_ledger import KEY, send_input
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Customer, Message
from trouw.domain.send_ledger import Lease, Reconcile, Resend, SendLedger
from trouw.providers.base import PermanentDeliveryError
from trouw.settings import Settings

LEASE = timedelta(seconds=40)


@pytest.fixture
def book(engine: Engine) -> SendLedger:
    with session_scope(engine) as session:
        session.add(Customer(id="c1", email="c1@example.com", phone="+32470000001"))
    # SMTP-like: the provider cannot be asked, so an unknown service message is resent.
    return SendLedger(
        engine,
        Settings(signing_keys=["k"], resend_unknown_service=True),
        answer_within=lambda channel: 0.0,
    )


def row(engine: Engine) -> Message:
    with session_scope(engine) as session:
        message = session.exec(select(Message).where(Message.message_key == KEY)).one()
        session.expunge(message)
        return message


def lease(book: SendLedger) -> Lease:
    """An attempt claims the row and leases it, as the send activity does before its call."""
    with session_scope(book.engine) as session:
        message = book.claim(session, send_input())
        assert book.earlier_attempt(session, message, send_input()) is None
        return book.lease(message, send_input(), length=LEASE)


def next_attempt_finds_it_unknown(book: SendLedger) -> None:
    """The next attempt meets the row in_flight with no lease: its outcome is unknown."""
    with session_scope(book.engine) as session:
        message = book.claim(session, send_input())
        assert isinstance(book.earlier_attempt(session, message, send_input()), Reconcile)


def next_attempt_resends(book: SendLedger) -> Lease:
    """... and, SMTP cannot be asked, the category resends: the row is leased again."""
    next_attempt_finds_it_unknown(book)
    assert isinstance(book.settle(send_input(), None, "nobody to ask"), Resend)
    return lease(book)


def refusal() -> PermanentDeliveryError:
    return PermanentDeliveryError("550 no such user", provider="smtp", invalid_recipient=True)


# What the first attempt's call came to, written late: each must leave the later state alone.
LATE_WRITES: dict[str, Callable[[SendLedger, Lease], bool]] = {
    "release": lambda book, old: book.release(send_input(), old, "421 try again later"),
    "unknown": lambda book, old: book.unknown(send_input(), old, "connection lost after the dot"),
    "fail": lambda book, old: book.fail(send_input(), old, refusal()),
}


@pytest.mark.parametrize("write", LATE_WRITES)
def test_a_late_write_leaves_a_row_the_next_attempt_marked_unknown(
    write: str, book: SendLedger, engine: Engine
) -> None:
    old = lease(book)
    expire_lease(engine, KEY)  # its process paused, its database write slow
    next_attempt_finds_it_unknown(book)
    history = row(engine).status_history
    assert LATE_WRITES[write](book, old) is False
    # Still reconciling: a release would have let the next attempt resend without asking.
    assert row(engine).state == "reconciling"
    assert row(engine).status_history == history


@pytest.mark.parametrize("write", LATE_WRITES)
def test_a_late_write_leaves_the_next_attempts_lease_and_answer(
    write: str, book: SendLedger, engine: Engine
) -> None:
    old = lease(book)
    expire_lease(engine, KEY)  # its process paused, its database write slow
    new = next_attempt_resends(book)
    assert new.attempt == old.attempt + 1
    assert LATE_WRITES[write](book, old) is False
    assert (row(engine).state, row(engine).attempts) == ("in_flight", 2)
    # The newer attempt's own answer is written: the lease it holds is the row's.
    assert book.release(send_input(), new, "421 try again later")
    assert row(engine).state == "claimed"
    newest = lease(book)
    book.sent(send_input(), "smtp", None)
    assert LATE_WRITES[write](book, new) is False
    assert LATE_WRITES[write](book, newest) is False  # an answer is recorded once
    assert row(engine).state == "sent"


def test_a_late_refusal_still_marks_the_address(book: SendLedger, engine: Engine) -> None:
    old = lease(book)
    expire_lease(engine, KEY)  # its process paused, its database write slow
    next_attempt_resends(book)
    book.sent(send_input(), "smtp", None)
    assert book.fail(send_input(), old, refusal()) is False
    assert row(engine).state == "sent"
    # What the provider said of the address holds whichever attempt heard it.
    with session_scope(engine) as session:
        customer = session.get(Customer, "c1")
        assert customer is not None and customer.email_invalid
