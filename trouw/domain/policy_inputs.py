"""What the send policy decides on, read from the database: the recipient and recent sends."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from trouw.domain.consent import ConsentState
from trouw.domain.db.models import Customer, Message
from trouw.language.locales import region_of
from trouw.language.policy import RecentMessage, RecipientState, Suppression
from trouw.language.vocabulary import CHANNELS


def recipient_state(customer: Customer, consent: ConsentState) -> RecipientState:
    suppressions = [
        Suppression(channel=s.channel, reason=s.reason, at=s.at)  # type: ignore[arg-type]
        for s in consent.suppressions
    ]
    if customer.email_invalid:
        suppressions.append(
            Suppression(channel="email", reason="invalid_address", at=customer.updated_at)
        )
    if customer.phone_invalid:
        suppressions.append(
            Suppression(channel="sms", reason="invalid_address", at=customer.updated_at)
        )
    if customer.erased:
        suppressions.append(Suppression(channel="all", reason="erased", at=customer.updated_at))
    if consent.pause is not None:
        suppressions.append(
            Suppression(channel="all", reason="operator_pause", at=consent.pause.at)
        )
    return RecipientState(
        email=customer.email,
        phone=customer.phone,
        timezone=customer.timezone,
        country=region_of(customer.locale),
        promotional_opt_in={ch: consent.promotional(ch) for ch in CHANNELS},
        service_objection={ch: consent.service_objection(ch) for ch in CHANNELS},
        suppressions=suppressions,
    )


# Built once (every send reads it): the columns the policy needs, not whole ledger rows.
_RECENT = select(Message.sent_at, Message.channel, Message.category).where(
    col(Message.customer_id) == bindparam("customer_id"),
    col(Message.state) == "sent",
    col(Message.sent_at) >= bindparam("since"),
    col(Message.sent_at) <= bindparam("now"),
)


def recent_messages(
    session: Session, customer_id: str, now: datetime, *, days: int
) -> list[RecentMessage]:
    rows = session.execute(
        _RECENT, {"customer_id": customer_id, "since": now - timedelta(days=days), "now": now}
    ).all()
    return [
        RecentMessage(at=row.sent_at, channel=row.channel, category=row.category)
        for row in rows
        if row.sent_at is not None
    ]
