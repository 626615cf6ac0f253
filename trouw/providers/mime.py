"""The RFC 5322 message that the SMTP provider sends and the outbox keeps as .eml."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from trouw.providers.base import ONE_CLICK_POST, OutgoingEmail, message_id_for


def parse_sender(value: str) -> tuple[str | None, str]:
    """Split "Name <addr>" (or a bare address) into (name or None, address)."""
    name, address = parseaddr(value)
    if not address or "@" not in address:
        raise ValueError(f"not an email address: {value!r}")
    return (name or None), address


def _address(name: str | None, address: str) -> Address:
    username, _, domain = address.rpartition("@")
    return Address(display_name=name or "", username=username, domain=domain)


def build_email_message(
    email: OutgoingEmail, *, sender: str, reply_to: str | None, date: datetime
) -> EmailMessage:
    """multipart/alternative (text, then html: clients show the last part they can render),
    with the List-Unsubscribe headers and a Message-ID derived from the message key."""
    msg = EmailMessage()
    sender_name, sender_address = parse_sender(sender)
    msg["From"] = _address(sender_name, sender_address)
    msg["To"] = _address(email.to_name, email.to)
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = email.subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id_for(email.message_key)
    if email.unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{email.unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = ONE_CLICK_POST
    msg.set_content(email.text, subtype="plain", charset="utf-8")
    msg.add_alternative(email.html, subtype="html", charset="utf-8")
    return msg
