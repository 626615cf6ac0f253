"""The send activity under an operator's pauses: a paused journey holds, then drops; a paused
customer gets only transactional messages."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine

from activities.services import Services
from tests.activities import test_send_message as base
from tests.fakes import FakeSendGrid
from trouw.domain.control import JOURNEY_PAUSED, set_contact_paused, set_journey_paused
from trouw.domain.db.engine import session_scope

# The send activity's fixtures, shared with its own tests.
sendgrid, twilio, services = base.sendgrid, base.twilio, base.services
CUSTOMER, MORNING, ledger, request, send = (
    base.CUSTOMER,
    base.MORNING,
    base.ledger,
    base.request,
    base.send,
)
CONFIRMATION = "journey:k-2001:post_purchase:W-2001#0:confirmation:email"
REVIEW = "journey:k-2001:post_purchase:W-2001#0:review:email"


def pause_journey(engine: Engine, *, paused: bool = True, minutes: int = 10) -> None:
    with session_scope(engine) as session:
        set_journey_paused(
            session,
            journey="post_purchase",
            paused=paused,
            by="cli:ann",
            at=MORNING - timedelta(minutes=minutes),
            reason="broken template" if paused else None,
        )


async def test_a_paused_journey_holds_its_message_then_sends_it_after_resume(
    services: Services, engine: Engine, sendgrid: FakeSendGrid
) -> None:
    pause_journey(engine)
    recheck = timedelta(seconds=services.settings.journey_hold_recheck_seconds)
    held = await send(services, request(CONFIRMATION))
    assert (held.outcome, held.reason) == ("deferred", JOURNEY_PAUSED)
    assert held.until == MORNING + recheck
    assert held.reason_text is not None
    assert "journey post_purchase paused since" in held.reason_text
    assert "by cli:ann (broken template)" in held.reason_text
    row = ledger(engine, CONFIRMATION)
    assert (row.state, row.decision, row.reason) == ("claimed", "defer", JOURNEY_PAUSED)
    assert [entry["status"] for entry in row.status_history] == ["held", "defer"]

    again = await send(services, request(CONFIRMATION, now=MORNING + recheck))
    assert (again.outcome, again.until) == ("deferred", MORNING + 2 * recheck)
    # Every recheck of a held message adds nothing to its ledger row.
    assert len(ledger(engine, CONFIRMATION).status_history) == 2
    assert not sendgrid.mails

    pause_journey(engine, paused=False, minutes=0)
    sent = await send(services, request(CONFIRMATION, now=MORNING + 2 * recheck))
    assert sent.outcome == "sent"
    assert len(sendgrid.mails) == 1


async def test_a_message_held_past_the_hold_limit_is_dropped_with_its_reason(
    services: Services, engine: Engine, sendgrid: FakeSendGrid
) -> None:
    pause_journey(engine)
    limit = timedelta(hours=services.settings.journey_hold_hours)
    first = await send(services, request(CONFIRMATION))
    assert first.outcome == "deferred"
    # The last recheck lands on the limit, never past it.
    near = await send(services, request(CONFIRMATION, now=MORNING + limit - timedelta(minutes=1)))
    assert near.until == MORNING + limit
    dropped = await send(services, request(CONFIRMATION, now=MORNING + limit))
    assert (dropped.outcome, dropped.reason) == ("suppressed", JOURNEY_PAUSED)
    assert dropped.reason_text is not None
    assert "longer than the hold limit of 24 h: dropped" in dropped.reason_text
    row = ledger(engine, CONFIRMATION)
    assert (row.state, row.decision) == ("suppressed", "suppress")
    # A retry after the drop stays dropped, even once the journey runs again.
    pause_journey(engine, paused=False, minutes=0)
    assert (await send(services, request(CONFIRMATION, now=MORNING + limit))).outcome == (
        "suppressed"
    )
    assert not sendgrid.mails


async def test_a_second_pause_counts_the_hold_from_its_own_start(
    services: Services, engine: Engine
) -> None:
    pause_journey(engine)
    await send(services, request(CONFIRMATION))
    pause_journey(engine, paused=False, minutes=-1)  # resumed at 10:01...
    limit = timedelta(hours=services.settings.journey_hold_hours)
    with session_scope(engine) as session:  # ...and paused again a day later
        set_journey_paused(
            session, journey="post_purchase", paused=True, by="cli:bob", at=MORNING + limit
        )
    later = await send(services, request(CONFIRMATION, now=MORNING + limit + timedelta(hours=1)))
    assert (later.outcome, later.reason) == ("deferred", JOURNEY_PAUSED)
    assert later.until is not None and later.until > MORNING + limit + timedelta(hours=1)


async def test_a_paused_customer_gets_receipts_but_no_service_mail(
    services: Services, engine: Engine, sendgrid: FakeSendGrid
) -> None:
    with session_scope(engine) as session:
        set_contact_paused(
            session,
            customer_id=CUSTOMER,
            paused=True,
            by="api:support",
            at=MORNING - timedelta(hours=1),
            reason="complaint by phone",
        )
    review = await send(services, request(REVIEW, template="review_request", category="service"))
    assert (review.outcome, review.reason) == ("suppressed", "suppressed_operator_pause")
    snapshot = ledger(engine, REVIEW).consent_snapshot
    assert {
        "channel": "all",
        "reason": "operator_pause",
        "at": (MORNING - timedelta(hours=1)).isoformat(),
        "by": "api:support",
        "detail": "complaint by phone",
    } in snapshot["suppressions"]
    receipt = await send(services, request(CONFIRMATION))
    assert receipt.outcome == "sent"
    assert len(sendgrid.mails) == 1

    with session_scope(engine) as session:
        set_contact_paused(
            session, customer_id=CUSTOMER, paused=False, by="api:support", at=MORNING
        )
    later = REVIEW.replace("review:", "review2:")
    resumed = await send(services, request(later, template="review_request", category="service"))
    assert resumed.outcome == "sent"
