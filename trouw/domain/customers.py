"""One customer across shop and webshop: match an incoming identity to a known customer."""

from __future__ import annotations

import re

from sqlalchemy import func
from sqlmodel import Session, col, select

from trouw.domain.db.models import Customer
from trouw.language.phones import phone_or_none

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def normalise_email(email: str | None) -> str | None:
    """A trimmed, lower-cased address, or None when it does not look like one."""
    if not email:
        return None
    cleaned = email.strip().lower()
    return cleaned if _EMAIL.fullmatch(cleaned) and len(cleaned) <= 320 else None


def match_customer(
    session: Session, *, customer_id: str | None, email: str | None, phone: str | None
) -> Customer | None:
    """The known customer for this identity: by customer id, then email, then phone.

    Erased customers are never matched, so an old address cannot revive a forgotten profile.
    When several customers share an address the oldest wins: it is the one the shop knew first.
    """
    if customer_id:
        found = session.get(Customer, customer_id)
        if found is not None and not found.erased:
            return found
    address = normalise_email(email)
    if address:
        by_email = session.exec(
            select(Customer)
            .where(func.lower(col(Customer.email)) == address, col(Customer.erased).is_(False))
            .order_by(col(Customer.created_at), col(Customer.id))
        ).first()
        if by_email is not None:
            return by_email
    # Without a country only international numbers match: a national one is ambiguous.
    number = phone_or_none(phone)
    if number:
        return session.exec(
            select(Customer)
            .where(Customer.phone == number, col(Customer.erased).is_(False))
            .order_by(col(Customer.created_at), col(Customer.id))
        ).first()
    return None
