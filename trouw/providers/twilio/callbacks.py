"""Twilio's callbacks: their signature, status callbacks, inbound keywords, and their effects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from sqlmodel import Session, select

from trouw.domain.customers import match_customer
from trouw.domain.db.models import Customer, Message
from trouw.domain.ingest import EventIn
from trouw.language.locales import pick_language
from trouw.language.phones import phone_or_none
from trouw.language.policy import SuppressionReason
from trouw.providers.callback_effects import CallbackPayloadError, Effect

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


def plan_twilio_status(
    session: Session, status: TwilioStatus, message_key: str | None, idempotency: str | None
) -> list[Effect]:
    marker = (
        f"twilio:{idempotency}"
        if idempotency
        else f"twilio:{status.message_sid}:{status.twilio_status}"
    )
    effect = Effect(marker=marker[:200])
    message = None
    if message_key:
        message = session.exec(select(Message).where(Message.message_key == message_key)).first()
    if message is None:
        message = session.exec(
            select(Message).where(Message.provider_id == status.message_sid)
        ).first()
    customer = session.get(Customer, message.customer_id) if message is not None else None
    if message is not None:
        effect.message_id = message.id
        effect.status = status.status
        effect.history = {
            "status": status.status or status.twilio_status,
            "at": datetime.now(UTC).isoformat(),
            "detail": f"error {status.error_code}" if status.error_code else None,
            "event": status.twilio_status,
            "provider": "twilio",
        }
    if status.suppression is not None:
        address = status.to or (customer.phone if customer else None)
        if address:
            effect.suppress = (
                address,
                "sms",
                status.suppression,
                customer.id if customer else None,
            )
        if customer is not None and status.suppression == "sms_stop":
            effect.event = EventIn(
                id=f"twilio:{status.message_sid}:{status.error_code}",
                type="sms_stop",
                customer=customer.id,
                source="twilio",
            )
        elif customer is not None:
            effect.mark_invalid = (customer.id, "phone")
    return [effect]


HELP_TEXTS = {
    "nl": "{shop}: antwoord STOP om geen sms'jes meer te krijgen. Vragen? {url}",
    "fr": "{shop} : répondez STOP pour ne plus recevoir de SMS. Des questions ? {url}",
    "en": "{shop}: reply STOP to stop receiving texts. Questions? {url}",
}


def help_text(locale: str | None, *, shop: str, url: str) -> str:
    """The HELP reply in the customer's language (Dutch by default: most of our customers)."""
    language = pick_language(locale, tuple(HELP_TEXTS), "nl")
    return HELP_TEXTS[language].format(shop=shop, url=url)


def inbound_keyword(params: Mapping[str, str]) -> str | None:
    # Advanced Opt-Out tells us what Twilio itself understood; fall back to our own keywords.
    opt_out_type = (params.get("OptOutType") or "").strip().lower()
    if opt_out_type in ("stop", "start", "help"):
        return opt_out_type
    return classify_inbound_sms(params.get("Body") or "")


def plan_inbound(session: Session, params: Mapping[str, str], keyword: str) -> list[Effect]:
    """STOP: suppress, withdraw SMS consent, tell the workflow. START: grant service SMS again."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    sender = params.get("From") or ""
    number = phone_or_none(sender) or sender
    marker = f"twilio:inbound:{sid}" if sid else None
    effect = Effect(marker=marker)
    customer = (
        match_customer(session, customer_id=None, email=None, phone=number) if number else None
    )
    if keyword == "stop" and number:
        effect.suppress = (number, "sms", "sms_stop", customer.id if customer else None)
        if customer is not None:
            effect.event = EventIn(
                id=f"twilio:inbound:{sid or number}",
                type="sms_stop",
                customer=customer.id,
                source="sms",
            )
            effect.consents = [
                (customer.id, "sms", "promotional", False),
                (customer.id, "sms", "service", False),
            ]
    elif keyword == "start" and number:
        # START re-subscribes the number at Twilio. We grant service SMS again and lift our STOP,
        # but never promotional SMS: that needs an explicit opt-in with its wording.
        effect.lift_sms_stop = number
        if customer is not None:
            effect.consents = [(customer.id, "sms", "service", True)]
    return [effect]
