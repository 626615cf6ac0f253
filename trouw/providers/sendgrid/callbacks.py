"""SendGrid's Event Webhook: its signature, its events, and what each event changes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlmodel import Session, select

from trouw.domain.customers import match_customer
from trouw.domain.db.models import Customer, Message
from trouw.domain.ingest import EventIn
from trouw.language.policy import SuppressionReason
from trouw.providers.callback_effects import CallbackPayloadError, Effect

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


@dataclass(frozen=True)
class ProviderEvent:
    """One SendGrid event, reduced to what Trouw records."""

    event: str  # SendGrid's event type, as sent
    event_id: str | None  # sg_event_id: the dedupe key (SendGrid delivers duplicates)
    message_key: str | None  # our custom_args message_key; bounces may lack it (use smtp_id)
    status: str | None  # the message status this event implies, None when none
    suppression: SuppressionReason | None  # the consent effect, None when none
    occurred_at: datetime | None
    email: str | None
    reason: str | None
    bounce_type: str | None  # "bounce" (hard) or "blocked" (not a hard bounce)
    sg_message_id: str | None
    smtp_id: str | None
    raw: Mapping[str, Any]


_SENDGRID_STATUS: Mapping[str, str] = {
    "processed": "processed",
    "deferred": "deferred",
    "delivered": "delivered",
    "open": "opened",
    "click": "clicked",
    "dropped": "dropped",
    "spamreport": "spam_complaint",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}

# SendGrid drops a message when the address is already on one of its lists; the reason says
# which. We mirror that list so the policy stops the next message before it reaches SendGrid.
_DROPPED_REASON_SUPPRESSION: Mapping[str, SuppressionReason] = {
    "bounced address": "hard_bounce",
    "invalid": "invalid_address",
    "spam reporting address": "spam_complaint",
    "unsubscribed address": "unsubscribe",
}


@lru_cache(maxsize=8)
def _sendgrid_key(public_key: str) -> Any:
    from sendgrid.helpers.eventwebhook import EventWebhook

    return EventWebhook().convert_public_key_to_ecdsa(public_key)


def verify_sendgrid_signature(
    public_key: str, payload: bytes, signature: str, timestamp: str
) -> bool:
    """Whether SendGrid signed `timestamp + payload`; `payload` must be the raw request body.

    Never raises: a malformed key, signature (bad base64) or body is simply not valid.
    """
    from sendgrid.helpers.eventwebhook import EventWebhook

    if not (public_key and signature and timestamp):
        return False
    try:
        key = _sendgrid_key(public_key.strip())
        text = payload.decode("utf-8")
        return bool(EventWebhook().verify_signature(text, signature, timestamp, key))
    except Exception:  # noqa: BLE001 - the library raises binascii/ValueError on bad input
        return False


def parse_sendgrid_events(payload: bytes) -> list[ProviderEvent]:
    """The events of one verified SendGrid webhook body (a JSON array), in order.

    Elements without an event type are skipped rather than failing the batch: SendGrid retries a
    failed batch for 24 hours, and one odd event must not block the others.
    """
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CallbackPayloadError("SendGrid body is not JSON") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise CallbackPayloadError("SendGrid body is not a JSON array of events")
    return [
        _sendgrid_event(item) for item in data if isinstance(item, dict) and _text(item, "event")
    ]


def _sendgrid_event(item: Mapping[str, Any]) -> ProviderEvent:
    event = str(item["event"])
    reason = _text(item, "reason")
    bounce_type = _text(item, "type")
    status = _SENDGRID_STATUS.get(event)
    suppression: SuppressionReason | None = None
    if event == "bounce":
        # "blocked" is a refusal (reputation, content), not proof the address is dead.
        if bounce_type == "blocked":
            status = "blocked"
        else:
            status, suppression = "bounced", "hard_bounce"
    elif event == "dropped":
        suppression = _DROPPED_REASON_SUPPRESSION.get((reason or "").strip().lower())
    elif event == "spamreport":
        suppression = "spam_complaint"
    elif event in ("unsubscribe", "group_unsubscribe"):
        suppression = "unsubscribe"
    timestamp = item.get("timestamp")
    occurred_at = (
        datetime.fromtimestamp(timestamp, UTC)
        if isinstance(timestamp, int | float) and not isinstance(timestamp, bool)
        else None
    )
    return ProviderEvent(
        event=event,
        event_id=_text(item, "sg_event_id"),
        message_key=_message_key(item),
        status=status,
        suppression=suppression,
        occurred_at=occurred_at,
        email=_text(item, "email"),
        reason=reason,
        bounce_type=bounce_type,
        sg_message_id=_text(item, "sg_message_id"),
        smtp_id=_text(item, "smtp-id"),
        raw=item,
    )


def _message_key(item: Mapping[str, Any]) -> str | None:
    # SendGrid flattens custom_args into the event; accept a nested object too, and "mk".
    for source in (item, item.get("custom_args"), item.get("unique_args")):
        if isinstance(source, Mapping):
            for name in ("message_key", "mk"):
                value = source.get(name)
                if isinstance(value, str) and value:
                    return value
    return None


def _text(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return str(value) if value is not None and value != "" else None


def _sendgrid_message(session: Session, event: ProviderEvent) -> Message | None:
    if event.message_key:
        found = session.exec(
            select(Message).where(Message.message_key == event.message_key)
        ).first()
        if found is not None:
            return found
    # Bounces and spam reports can lack custom_args: find the message by SendGrid's own id,
    # sg_message_id ("<X-Message-Id>.filter…") or smtp-id ("<X-Message-Id@ismtpd…>").
    candidates = []
    if event.sg_message_id:
        candidates.append(event.sg_message_id.split(".", 1)[0])
    if event.smtp_id:
        candidates.append(event.smtp_id.strip("<>").split("@", 1)[0])
    for provider_id in candidates:
        if provider_id:
            found = session.exec(select(Message).where(Message.provider_id == provider_id)).first()
            if found is not None:
                return found
    return None


def plan_sendgrid(session: Session, events: Sequence[ProviderEvent]) -> list[Effect]:
    """The effect of each SendGrid event (status, suppression, workflow event)."""
    effects = []
    for event in events:
        fallback = event.sg_message_id or event.smtp_id or event.email or "unknown"
        marker = f"sendgrid:{event.event_id or f'{event.event}:{fallback}'}"[:200]
        effect = Effect(marker=marker)
        message = _sendgrid_message(session, event)
        customer = None
        if message is not None:
            customer = session.get(Customer, message.customer_id)
            effect.message_id = message.id
            effect.status = event.status
            effect.history = {
                "status": event.status or event.event,
                "at": (event.occurred_at or datetime.now(UTC)).isoformat(),
                "detail": event.reason,
                "event": event.event,
                "provider": "sendgrid",
            }
            if event.event == "click" and isinstance(event.raw.get("url"), str):
                effect.history["url"] = event.raw["url"][:2000]
        elif event.email:
            customer = match_customer(session, customer_id=None, email=event.email, phone=None)
        reason = event.suppression
        if reason is not None and event.email:
            effect.suppress = (event.email, "email", reason, customer.id if customer else None)
        if reason is not None and customer is not None:
            kind = {"hard_bounce": "bounce", "invalid_address": None}.get(reason, "unsubscribe")
            # A spam complaint is also an objection: the journeys must stop, not only the mail.
            if kind is not None:
                effect.event = EventIn(
                    id=marker,
                    type=kind,
                    customer=customer.id,
                    at=event.occurred_at,
                    channel="email" if kind == "unsubscribe" else None,
                    source="sendgrid",
                )
            else:
                effect.mark_invalid = (customer.id, "email")
        effects.append(effect)
    return effects
