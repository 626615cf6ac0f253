"""The RFC 5322 message that the SMTP provider sends and the outbox keeps as .eml."""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr
from typing import Any, cast

from trouw.providers.base import ONE_CLICK_POST, OutgoingEmail, list_unsubscribe


class _VerbatimHeader(UnstructuredHeader):
    """An ASCII header that reaches the wire exactly as given: never folded, never RFC 2047.

    The standard policy folds any header line over 78 characters, and a URL has no spaces to
    fold at, so it encodes the whole value as `=?utf-8?q?=3Chttps...?=`. RFC 2369 forbids
    that: clients look for `<https://...>` in the raw header and find nothing. Python's own
    parser decodes the encoded words again, so only the bytes on the wire show the defect.
    """

    name: str  # provided by BaseHeader, which the registry mixes in

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        super().parse(value, kwds)
        kwds["decoded"] = value  # no RFC 2047 decoding on the way in either

    def fold(self, *, policy: Any) -> str:
        return f"{self.name}: {self}{policy.linesep}"


_VERBATIM_HEADERS = ("list-unsubscribe", "list-unsubscribe-post")


def _header_registry() -> HeaderRegistry:
    registry = HeaderRegistry()
    for name in _VERBATIM_HEADERS:
        registry.map_to_type(name, cast("type[BaseHeader]", _VerbatimHeader))
    return registry


# The header objects carry their own folding, so any policy the message is later written with
# (the SMTP provider's CRLF policy, bytes() for the outbox) keeps these headers verbatim.
_POLICY = EmailPolicy(header_factory=_header_registry())


def parse_sender(value: str) -> tuple[str | None, str]:
    """Split "Name <addr>" (or a bare address) into (name or None, address)."""
    name, address = parseaddr(value)
    if not address or "@" not in address:
        raise ValueError(f"not an email address: {value!r}")
    return (name or None), address


def sender_domain(sender: str) -> str:
    """The domain of the From address, in ASCII (IDNA) as headers need it."""
    domain = parse_sender(sender)[1].rpartition("@")[2].strip().lower()
    return domain.encode("idna").decode("ascii") if not domain.isascii() else domain


def message_id_for(message_key: str, *, sender: str) -> str:
    """The RFC 5322 Message-ID of a message key, on the sending domain (RFC 5322 3.6.4).

    The same key always gives the same id, so a resend of one ledger message is recognisable
    downstream as a duplicate; the hash keeps personal data out of headers.
    """
    digest = hashlib.sha256(message_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{sender_domain(sender)}>"


def _address(name: str | None, address: str) -> Address:
    username, _, domain = address.rpartition("@")
    return Address(display_name=name or "", username=username, domain=domain)


def build_email_message(
    email: OutgoingEmail, *, sender: str, reply_to: str | None, date: datetime
) -> EmailMessage:
    """multipart/alternative (text, then html: clients show the last part they can render),
    with the List-Unsubscribe headers and a Message-ID derived from the message key."""
    msg = EmailMessage(policy=_POLICY)
    sender_name, sender_address = parse_sender(sender)
    msg["From"] = _address(sender_name, sender_address)
    msg["To"] = _address(email.to_name, email.to)
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = email.subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id_for(email.message_key, sender=sender)
    if email.unsubscribe_url:
        msg["List-Unsubscribe"] = list_unsubscribe(email.unsubscribe_url)
        msg["List-Unsubscribe-Post"] = ONE_CLICK_POST
    msg.set_content(email.text, subtype="plain", charset="utf-8")
    msg.add_alternative(email.html, subtype="html", charset="utf-8")
    return msg
