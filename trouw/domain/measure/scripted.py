"""Engagement a simulation scenario scripts (opens, clicks, complaints, bounces, unsubscribes),
written to the engagement ledger as the provider callbacks and the click redirect write it.

A scripted event is about one message: the customer's latest message sent by then, narrowed by
the event's `journey`, `step` and `channel` when given. The outbox stands in for the provider,
so every sent message that no scripted bounce hit counts as delivered when it was sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlmodel import Session, col, select

from trouw.domain.consent import suppress
from trouw.domain.db.models import Customer, Engagement, Message
from trouw.domain.measure.engagement import EngagementKind, engagement_row

# Scenario event types that are engagement only, and the engagement each one records.
ScriptedType = Literal["open", "click", "complaint"]
ENGAGEMENT_ONLY: dict[str, EngagementKind] = {
    "open": "opened",
    "click": "clicked",
    "complaint": "complained",
}
# Scenario event types that keep their own effect (a suppression, a consent change) and, when
# a message was sent before them, also record that engagement on it.
ALSO_ENGAGEMENT: dict[str, EngagementKind] = {"bounce": "bounced", "unsubscribe": "unsubscribed"}
SOURCE = "simulation"


def message_for(
    session: Session,
    *,
    customer_id: str,
    at: datetime,
    journey: str | None = None,
    step: str | None = None,
    channel: str | None = None,
) -> Message | None:
    """The customer's latest message sent by `at` (of this journey, step and channel)."""
    query = select(Message).where(
        Message.customer_id == customer_id,
        Message.state == "sent",
        col(Message.sent_at).is_not(None),
        col(Message.sent_at) <= at,
    )
    if journey is not None:
        query = query.where(Message.journey == journey)
    if step is not None:
        query = query.where(Message.step == step)
    if channel is not None:
        query = query.where(Message.channel == channel)
    return session.exec(query.order_by(col(Message.sent_at).desc(), col(Message.id).desc())).first()


def record_scripted(
    session: Session,
    *,
    event_type: str,
    event_id: str,
    customer_id: str,
    at: datetime,
    journey: str | None = None,
    step: str | None = None,
    channel: str | None = None,
    session_id: str | None = None,
) -> Message | None:
    """Record the engagement a scripted event stands for; returns the message it is about, or
    None when no such message was sent by then (nothing is recorded)."""
    kind = ENGAGEMENT_ONLY.get(event_type) or ALSO_ENGAGEMENT.get(event_type)
    if kind is None:
        return None
    if event_type in ("bounce", "complaint") and channel is None:
        channel = "email"  # only email bounces and spam complaints
    message = message_for(
        session, customer_id=customer_id, at=at, journey=journey, step=step, channel=channel
    )
    if message is None:
        return None
    session.add(
        engagement_row(
            message,
            kind,
            key=f"{SOURCE}:{event_id}",
            at=at,
            source=SOURCE,
            # A click opens a webshop session: the scenario names it so a purchase can carry it.
            session_id=(session_id or f"{SOURCE}-{event_id}") if kind == "clicked" else None,
        )
    )
    if event_type == "complaint":
        # As the SendGrid spam report does: the address is suppressed for good.
        customer = session.get(Customer, customer_id)
        if customer is not None:
            suppress(
                session,
                customer=customer,
                channel="email",
                reason="spam_complaint",
                at=at,
                source=SOURCE,
            )
    return message


def deliver_sent(session: Session, *, until: datetime) -> int:
    """Every message sent by `until` that no scripted bounce hit is delivered at its send time
    (the outbox is the simulation's provider); returns how many were recorded."""
    bounced = set(
        session.exec(select(Engagement.message_key).where(Engagement.kind == "bounced")).all()
    )
    delivered = set(
        session.exec(select(Engagement.message_key).where(Engagement.kind == "delivered")).all()
    )
    sent = session.exec(
        select(Message).where(
            Message.state == "sent",
            col(Message.sent_at).is_not(None),
            col(Message.sent_at) <= until,
        )
    ).all()
    count = 0
    for message in sent:
        if message.message_key in bounced or message.message_key in delivered:
            continue
        assert message.sent_at is not None
        session.add(
            engagement_row(
                message,
                "delivered",
                key=f"{SOURCE}:delivered:{message.message_key}",
                at=message.sent_at,
                source=SOURCE,
            )
        )
        count += 1
    return count
