"""A customer with a history: registration, consent given and withdrawn, an order, messages, runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from trouw.domain.consent import current_consent
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Customer, JourneyRun, Message, Voucher
from trouw.domain.ingest import CustomerIn, EventIn, LineIn, ingest_event
from trouw.domain.policy_inputs import recent_messages, recipient_state
from trouw.domain.send_ledger import record_decision
from trouw.language.policy import MessageFacts, PolicyConfig, decide

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WORDING_V1 = "Ja, stuur mij per e-mail nieuws en aanbiedingen van Tuincentrum De Linde."
WORDING_V2 = "Ik wil geen nieuws en aanbiedingen meer ontvangen."


@dataclass(frozen=True)
class Seeded:
    customer_id: str
    email: str
    phone: str
    running_workflow: str
    finished_workflow: str


def send(
    session: Session,
    *,
    customer_id: str,
    journey: str,
    step: str,
    category: str,
    channel: str = "email",
    template: str = "welcome",
    at: datetime,
    subject: str | None = None,
    provider_statuses: tuple[str, ...] = (),
) -> Message:
    """A ledger row decided exactly as the send activity decides and records it."""
    customer = session.get(Customer, customer_id)
    assert customer is not None
    consent = current_consent(session, customer_id)
    decision = decide(
        MessageFacts(
            category=category,  # type: ignore[arg-type]
            channel=channel,  # type: ignore[arg-type]
            journey=journey,
            triggered_at=at,
        ),
        recipient_state(customer, consent),
        recent_messages(session, customer_id, at, days=7),
        at,
        PolicyConfig(),
    )
    message = Message(
        message_key=f"{journey}:{customer_id}:{step}:{at.isoformat()}",
        customer_id=customer_id,
        journey=journey,
        journey_version="1",
        workflow_id=f"journey:{journey}:{customer_id}",
        step=step,
        channel=channel,
        category=category,
        template=template,
        created_at=at,
    )
    record_decision(message, decision, consent, at)
    if decision.action == "suppress":
        message.state = "suppressed"
    elif decision.action == "send":
        message.state = "sent"
        message.sent_at = at
        message.subject = subject
        message.provider = "outbox"
        history = list(message.status_history)
        history.append({"status": "sent", "at": at.isoformat(), "detail": "outbox"})
        for number, status in enumerate(provider_statuses, start=1):
            when = at + timedelta(minutes=number)
            history.append({"status": status, "at": when.isoformat(), "detail": None})
            message.status = status
        message.status_history = history
    session.add(message)
    session.flush()
    return message


def seed(engine: Engine, customer_id: str = "c1", email: str = "x@example.com") -> Seeded:
    """Bart registers with an email opt-in (wording v1), buys, then withdraws (wording v2)."""
    phone = "+32470000001"
    with session_scope(engine) as session:
        ingest_event(
            session,
            EventIn(
                id=f"{customer_id}-register",
                type="register",
                customer=customer_id,
                at=T0,
                source="web",
                profile=CustomerIn(
                    id=customer_id,
                    email=email,
                    phone=phone,
                    first_name="Bart",
                    last_name="Peeters",
                    birthday=datetime(1979, 4, 24).date(),
                    attributes={"favourite_store": "Gent"},
                ),
            ),
            now=T0,
        )
        ingest_event(
            session,
            EventIn(
                id=f"{customer_id}-optin",
                type="opt_in",
                customer=customer_id,
                at=T0 + timedelta(minutes=1),
                channel="email",
                source="web",
                wording_version="newsletter-v1",
                wording_text=WORDING_V1,
            ),
            now=T0,
        )
        ingest_event(
            session,
            EventIn(
                id=f"{customer_id}-o1",
                type="purchase",
                customer=customer_id,
                at=T0 + timedelta(hours=1),
                order=f"{customer_id}-o1",
                channel="pos",
                store="Gent",
                lines=[LineIn(sku="LAWN-10", qty=2, unit_price="24.95", name="Gazonmest 10 kg")],
            ),
            now=T0,
        )
        customer = session.get(Customer, customer_id)
        assert customer is not None
        customer.tags = ["garden"]
        session.add(customer)
        send(
            session,
            customer_id=customer_id,
            journey="post_purchase",
            step="receipt",
            category="transactional",
            template="receipt",
            at=T0 + timedelta(hours=1, minutes=1),
            subject="Bedankt voor je aankoop, Bart",
            provider_statuses=("delivered", "opened"),
        )
        ingest_event(
            session,
            EventIn(
                id=f"{customer_id}-optout",
                type="opt_out",
                customer=customer_id,
                at=T0 + timedelta(days=3),
                channel="email",
                source="web",
                wording_version="newsletter-v2",
                wording_text=WORDING_V2,
            ),
            now=T0,
        )
        send(
            session,
            customer_id=customer_id,
            journey="spring_promo",
            step="offer",
            category="promotional",
            template="spring_offer",
            at=T0 + timedelta(days=10),
        )
        running = f"journey:post_purchase:{customer_id}:o1"
        finished = f"journey:spring_promo:{customer_id}:1"
        session.add(
            JourneyRun(
                workflow_id=running,
                customer_id=customer_id,
                journey="post_purchase",
                version="1",
                reentry_key="o1",
                event_source_id=f"{customer_id}-o1",
                started_at=T0 + timedelta(hours=1),
            )
        )
        session.add(
            JourneyRun(
                workflow_id=finished,
                customer_id=customer_id,
                journey="spring_promo",
                version="1",
                reentry_key="1",
                event_source_id=f"{customer_id}-register",
                started_at=T0 + timedelta(days=10),
                status="exited",
                ended_at=T0 + timedelta(days=10, minutes=1),
                end_reason="exit on unsubscribe",
            )
        )
        session.add(
            Voucher(
                code="TROUW-ABC123",
                customer_id=customer_id,
                value="5.00",  # type: ignore[arg-type]
                issued_at=T0 + timedelta(days=1),
                expires_at=T0 + timedelta(days=31),
                journey="post_purchase",
            )
        )
    return Seeded(customer_id, email, phone, running, finished)


@pytest.fixture
def seeded(engine: Engine) -> Iterator[Seeded]:
    yield seed(engine)
