"""Engagement kinds, and which message status each provider status counts as."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from trouw.domain.db.models import Engagement, Message

EngagementKind = Literal["delivered", "opened", "clicked", "bounced", "complained", "unsubscribed"]
ENGAGEMENT_KINDS: tuple[EngagementKind, ...] = (
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "complained",
    "unsubscribed",
)
# Message statuses (trouw.providers.callback_effects.MESSAGE_STATUSES) that are engagement; the rest (queued,
# processed, deferred, dropped, blocked, failed) are the provider's own business.
_BY_STATUS: dict[str, EngagementKind] = {
    "delivered": "delivered",
    "opened": "opened",
    "clicked": "clicked",
    "bounced": "bounced",
    "spam_complaint": "complained",
    "unsubscribed": "unsubscribed",
}


def engagement_row(
    message: Message,
    kind: EngagementKind,
    *,
    key: str,
    at: datetime,
    source: str,
    link: str | None = None,
    session_id: str | None = None,
) -> Engagement:
    """One ledger row about this message, carrying its journey, version, step and channel
    (the report counts from these, never joining the message table)."""
    return Engagement(
        key=key,
        message_key=message.message_key,
        customer_id=message.customer_id,
        journey=message.journey,
        journey_version=message.journey_version,
        step=message.step,
        channel=message.channel,
        kind=kind,
        at=at,
        source=source,
        link=link,
        session_id=session_id,
    )


def engagement_kind(status: str | None) -> EngagementKind | None:
    """The engagement a message status records, or None when it records none."""
    return _BY_STATUS.get(status or "")
