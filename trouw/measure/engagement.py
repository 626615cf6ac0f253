"""Engagement kinds, and which message status each provider status counts as."""

from __future__ import annotations

from typing import Literal

EngagementKind = Literal["delivered", "opened", "clicked", "bounced", "complained", "unsubscribed"]
ENGAGEMENT_KINDS: tuple[EngagementKind, ...] = (
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "complained",
    "unsubscribed",
)
# Message statuses (trouw.callbacks.MESSAGE_STATUSES) that are engagement; the rest (queued,
# processed, deferred, dropped, blocked, failed) are the provider's own business.
_BY_STATUS: dict[str, EngagementKind] = {
    "delivered": "delivered",
    "opened": "opened",
    "clicked": "clicked",
    "bounced": "bounced",
    "spam_complaint": "complained",
    "unsubscribed": "unsubscribed",
}


def engagement_kind(status: str | None) -> EngagementKind | None:
    """The engagement a message status records, or None when it records none."""
    return _BY_STATUS.get(status or "")
