"""What provider callbacks share: message statuses in their order, and the effect of one event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trouw.domain.ingest import EventIn

# A message's status moves only forward along this order (docs/policy.md, "Message status").
# Delivery knowledge first; then delivery failures, which outrank "delivered" (an asynchronous
# bounce can follow a delivery); then engagement, which proves the message arrived; then the
# customer's own verdicts, which matter most.
MESSAGE_STATUSES: tuple[str, ...] = (
    "queued",
    "sent",
    "failed",
    "processed",
    "deferred",
    "delivered",
    "dropped",
    "blocked",
    "bounced",
    "opened",
    "clicked",
    "unsubscribed",
    "spam_complaint",
)
_RANK = {status: rank for rank, status in enumerate(MESSAGE_STATUSES)}


class CallbackPayloadError(ValueError):
    """The callback body is not what the provider sends (not JSON, not a list of events)."""


def advance_status(current: str | None, new: str) -> str:
    """The status after `new` arrives: never backwards, whatever order events come in."""
    if new not in _RANK:
        raise ValueError(f"unknown message status {new!r}")
    if current is None:
        return new
    if current not in _RANK:
        raise ValueError(f"unknown message status {current!r}")
    return new if _RANK[new] > _RANK[current] else current


@dataclass
class Effect:
    """What one provider event does, worked out before anything is written.

    `event` goes through ingest (idempotent by id, and the customer's workflow hears of it);
    the rest is written with the dedupe marker in one transaction, after the event is stored.
    """

    marker: str | None
    message_id: int | None = None
    status: str | None = None
    history: dict[str, Any] | None = None
    event: EventIn | None = None
    suppress: tuple[str, str, str, str | None] | None = None  # address, channel, reason, customer
    mark_invalid: tuple[str, str] | None = None  # (customer id, channel)
    consents: list[tuple[str, str, str, bool]] = field(default_factory=list)  # id, ch, scope, yes
    lift_sms_stop: str | None = None  # phone number whose sms_stop suppression a START lifts
