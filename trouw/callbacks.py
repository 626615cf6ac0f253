"""Pure helpers for provider callbacks: verify signatures, parse events, advance message status."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from trouw.policy import SuppressionReason

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


# --- SendGrid -------------------------------------------------------------------------------


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


# --- Twilio ---------------------------------------------------------------------------------

InboundKeyword = Literal["stop", "start", "help"]

# Twilio's own keywords (Advanced Opt-Out defaults) plus Dutch and French opt-out words for the
# Benelux. Localised words only stop and help, never start: a casual "ja" or "oui" in reply to a
# message must not re-subscribe anyone.
STOP_KEYWORDS: frozenset[str] = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
    | {"STOPPEN", "AFMELDEN", "UITSCHRIJVEN"}
    | {"ARRET", "ARRÊT", "DESABONNER", "DÉSABONNER", "DESINSCRIRE", "DÉSINSCRIRE"}
)
START_KEYWORDS: frozenset[str] = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS: frozenset[str] = frozenset({"HELP", "INFO", "HULP", "AIDE"})

# Twilio error codes that mean the number itself is unusable (or opted out), so later SMS to it
# are suppressed. 30003 (handset off or out of range) and 30007 (carrier filtering) are not
# here: they are temporary or about the content, not the number.
TWILIO_ERROR_SUPPRESSION: Mapping[int, SuppressionReason] = {
    21211: "invalid_address",  # invalid 'To' phone number
    21614: "invalid_address",  # 'To' number is not a valid mobile number
    30005: "invalid_address",  # unknown destination handset
    30006: "invalid_address",  # landline or unreachable carrier
    21610: "sms_stop",  # the recipient replied STOP to this sender
}

_TWILIO_STATUS: Mapping[str, str] = {
    "accepted": "sent",
    "scheduled": "sent",
    "queued": "sent",
    "sending": "processed",
    "sent": "processed",
    "delivered": "delivered",
    "read": "opened",
    "undelivered": "bounced",
    # Twilio refused to send it, like a SendGrid drop; our own "failed" means our call failed.
    "failed": "dropped",
    "canceled": "dropped",
}


@dataclass(frozen=True)
class TwilioStatus:
    """One Twilio message status callback."""

    message_sid: str
    twilio_status: str  # MessageStatus, as sent
    status: str | None  # the message status it implies (see MESSAGE_STATUSES)
    error_code: int | None
    suppression: SuppressionReason | None
    to: str | None


def verify_twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str], signature: str
) -> bool:
    """Whether Twilio signed this request; `url` is the public URL Twilio called, query included."""
    from twilio.request_validator import RequestValidator

    if not (auth_token and signature):
        return False
    try:
        return bool(RequestValidator(auth_token).validate(url, dict(params), signature))
    except Exception:  # noqa: BLE001 - malformed input is simply not valid
        return False


def public_url_for(
    request_url: str,
    forwarded_proto: str | None,
    forwarded_host: str | None,
    public_url: str | None,
) -> str:
    """The URL Twilio called, as seen from outside a proxy; the path and query stay as received.

    A configured public URL wins (it cannot be spoofed); else X-Forwarded-Proto/Host (first value
    when proxies chained several); else the request URL itself.
    """
    request = urlsplit(request_url)
    if public_url:
        base = urlsplit(public_url)
        prefix = base.path.rstrip("/")
        path = request.path
        # A proxy that strips a path prefix (/trouw) hides it from us; put it back once.
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            path = prefix + path
        return urlunsplit((base.scheme, base.netloc, path, request.query, ""))
    scheme = _first_value(forwarded_proto) or request.scheme
    netloc = _first_value(forwarded_host) or request.netloc
    return urlunsplit((scheme, netloc, request.path, request.query, ""))


def _first_value(header: str | None) -> str | None:
    if not header:
        return None
    first = header.split(",")[0].strip()
    return first or None


def parse_twilio_status(params: Mapping[str, str]) -> TwilioStatus:
    """A status callback's form parameters, reduced to status and consent effect."""
    sid = params.get("MessageSid") or params.get("SmsSid")
    if not sid:
        raise CallbackPayloadError("Twilio status callback without MessageSid")
    twilio_status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    raw_code = (params.get("ErrorCode") or "").strip()
    error_code = int(raw_code) if raw_code.isdigit() else None
    suppression = TWILIO_ERROR_SUPPRESSION.get(error_code) if error_code is not None else None
    return TwilioStatus(
        message_sid=sid,
        twilio_status=twilio_status,
        status=_TWILIO_STATUS.get(twilio_status),
        error_code=error_code,
        suppression=suppression,
        to=params.get("To") or None,
    )


def classify_inbound_sms(body: str) -> InboundKeyword | None:
    """STOP, START or HELP when the whole message is one keyword (any case, trimmed), else None.

    Opt-out words are matched a little more loosely ("Stop." counts): honouring a STOP too
    eagerly is safe, missing one is not. START must be exact, like Twilio's own matching.
    """
    word = body.strip().upper()
    if word in START_KEYWORDS:
        return "start"
    loose = word.strip(" .!?,;:'\"")
    if word in STOP_KEYWORDS or loose in STOP_KEYWORDS:
        return "stop"
    if word in HELP_KEYWORDS or loose in HELP_KEYWORDS:
        return "help"
    return None
