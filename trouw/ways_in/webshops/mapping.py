"""What every webshop mapping shares: plain values, the customer behind an order, the order."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError
from sqlmodel import Session

from trouw.domain.consent import current_consent
from trouw.domain.customers import match_customer, normalise_email
from trouw.domain.db.models import Customer, Order
from trouw.domain.ingest import CustomerIn, EventIn, LineIn
from trouw.domain.measure.links import CLICK_PARAM
from trouw.language.locales import LocaleError, parse_locale_tag
from trouw.language.phones import PhoneError, normalise_phone
from trouw.language.vocabulary import Channel

_CENT = Decimal("0.01")
_ID_SAFE = re.compile(r"[^A-Za-z0-9._:@-]")
_CURRENCY = re.compile(r"[A-Z]{3}")


class WebhookPayloadError(ValueError):
    """A verified webhook whose payload cannot be mapped; the message says what is missing."""


@dataclass
class Mapped:
    """A webhook's events, and in one line each what was left out and why (all logged)."""

    events: list[EventIn] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # kept the event, dropped a field

    @classmethod
    def nothing(cls, reason: str) -> Mapped:
        return cls(ignored=[reason])


# --- plain values ---------------------------------------------------------------------------


def id_part(value: Any) -> str:
    return _ID_SAFE.sub("-", str(value))[:40]


def when(value: Any, *, naive_is_utc: bool = False) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        # WooCommerce's *_gmt fields are UTC without an offset; anything else naive is unusable.
        return parsed.replace(tzinfo=UTC) if naive_is_utc else None
    return parsed


def money(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        amount = Decimal(str(value)).quantize(_CENT)
    except (InvalidOperation, ValueError):
        return None
    return amount if amount >= 0 and amount.is_finite() else None


def currency(value: Any) -> str | None:
    return value if isinstance(value, str) and _CURRENCY.fullmatch(value) else None


def text(value: Any, limit: int) -> str | None:
    """One line of display text; shops send names HTML-escaped ('Ship Your Idea &ndash; ...')."""
    if value is None:
        return None
    cleaned = " ".join(html.unescape(str(value)).split())[:limit]
    return cleaned or None


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# --- the customer ---------------------------------------------------------------------------


@dataclass
class Identity:
    """Who placed an order, as the webshop knows them; phone and locale still as the shop sent."""

    external_id: str | None
    email: str | None
    phone: str | None
    country: str | None = None  # ISO 3166 of the billing (or shipping) address: reads phones
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    opt_in: dict[Channel, bool] = field(default_factory=dict)


def _phone(identity: Identity, notes: list[str]) -> str | None:
    if not identity.phone or not str(identity.phone).strip():
        return None
    try:
        return normalise_phone(identity.phone, country=identity.country)
    except PhoneError as exc:
        notes.append(f"phone not stored: {exc}")
        return None


def _locale(identity: Identity, notes: list[str]) -> str | None:
    if not identity.locale:
        return None
    try:
        # Shops write POSIX-style tags now and then (en_US): the meaning is not in doubt.
        return parse_locale_tag(str(identity.locale).replace("_", "-"))
    except LocaleError as exc:
        notes.append(f"locale not stored: {exc}")
        return None


def resolve_customer(
    session: Session, shop: str, identity: Identity, *, fallback_id: str, notes: list[str]
) -> tuple[str, CustomerIn | None]:
    """Our customer id for this identity, and the profile fields worth storing (None: nothing).

    A known customer keeps what the shop already had (the till and the webshop may disagree on a
    phone number); only missing fields are filled in. Unknown customers get `<shop>:<id>`.
    """
    candidate = f"{shop}:{id_part(identity.external_id)}" if identity.external_id else None
    email, phone = normalise_email(identity.email), _phone(identity, notes)
    found = match_customer(session, customer_id=candidate, email=email, phone=phone)
    customer_id = found.id if found is not None else _fresh_id(session, candidate or fallback_id)
    fields: dict[str, Any] = {
        "email": email,
        "phone": phone,
        "first_name": identity.first_name,
        "last_name": identity.last_name,
        "locale": _locale(identity, notes),
    }
    if found is not None:
        fields = {k: v for k, v in fields.items() if v is not None and getattr(found, k) is None}
    fields = {k: v for k, v in fields.items() if v is not None}
    opt_in = _consent_changes(session, found, identity.opt_in)
    if not fields and not opt_in and found is not None:
        return customer_id, None
    try:
        profile = CustomerIn(id=customer_id, opt_in=opt_in or None, **fields)
    except ValidationError as exc:
        # A field the shop accepts and we do not (a name with a line break): keep the customer.
        notes.append(f"profile not stored: {exc.errors()[0]['msg']}")
        profile = CustomerIn(id=customer_id, opt_in=opt_in or None)
    return customer_id, profile


def _fresh_id(session: Session, base: str) -> str:
    """`base`, or when that is an erased customer's tombstone the first `base:N` that is not.

    A forgotten customer who orders again is a new customer: the tombstone stays empty.
    """
    customer_id, number = base, 1
    while (existing := session.get(Customer, customer_id)) is not None and existing.erased:
        number += 1
        customer_id = f"{base}:{number}"
    return customer_id


def _consent_changes(
    session: Session, found: Customer | None, wanted: Mapping[Channel, bool]
) -> dict[Channel, bool]:
    # Record the shop's marketing consent only when it changes what we know: every order repeats
    # it, and the ledger should show decisions, not echoes.
    if not wanted:
        return {}
    if found is None:
        return {channel: granted for channel, granted in wanted.items() if granted}
    state = current_consent(session, found.id)
    return {
        channel: granted
        for channel, granted in wanted.items()
        if state.promotional(channel) != granted
    }


# --- the order ------------------------------------------------------------------------------


@dataclass
class ShopOrder:
    """One order as a shop sent it, reduced to what a purchase event needs."""

    key: str  # the shop's order id, made safe for our ids
    name: str | None  # what the customer calls it: "#1001"
    currency: str | None
    total: Decimal | None
    lines: list[LineIn]
    at: datetime | None
    session_id: str | None = None  # the tracked click the shop session came from


# The click id the redirect adds to a landing URL, as a shop hands it back: a query
# parameter, a cart attribute or an order meta field named CLICK_PARAM.
_CLICK_ID = re.compile(r"[A-Za-z0-9._:@#/+-]{1,100}")


def click_session(value: Any) -> str | None:
    """A click id as the shop passed it back, or None when it is missing or malformed."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if _CLICK_ID.fullmatch(value) else None


def click_in_url(url: Any) -> str | None:
    """The click id in a landing URL's query (`?trouw_click=...`), if there is one."""
    if not isinstance(url, str) or not url:
        return None
    found = parse_qs(urlsplit(url).query).get(CLICK_PARAM)
    return click_session(found[-1]) if found else None


def line(item: Mapping[str, Any], *, unit_price: Decimal | None) -> LineIn | None:
    """One order line, or None for a removed one (quantity 0)."""
    qty = item.get("quantity")
    if not isinstance(qty, int) or isinstance(qty, bool) or not 0 < qty <= 10000:
        return None
    sku = text(item.get("sku"), 64)
    if not sku:
        variant = item.get("variant_id") or item.get("variation_id") or item.get("product_id")
        sku = f"item-{id_part(variant or item.get('id'))}"
    # "name" carries the variant ("IPod Nano - 8gb - green"); "title" is the product alone.
    name = text(item.get("name") or item.get("title"), 200)
    return LineIn(sku=sku, qty=qty, unit_price=unit_price, name=name)


def purchase_event(
    session: Session, shop: str, order: ShopOrder, identity: Identity, notes: list[str]
) -> EventIn:
    customer_id, profile = resolve_customer(
        session, shop, identity, fallback_id=f"{shop}:order-{order.key}", notes=notes
    )
    if not order.lines:
        raise WebhookPayloadError(f"{shop} order {order.key} has no line items")
    return EventIn(
        id=f"{shop}:order:{order.key}",
        type="purchase",
        customer=customer_id,
        at=order.at,
        order=f"{shop}:{order.key}",
        order_name=order.name,
        currency=order.currency,
        channel="web",
        lines=order.lines,
        total=order.total,
        profile=profile,
        source=shop,
        session_id=order.session_id,
    )


def known_order(session: Session, shop: str, order_key: Any) -> Order | None:
    return session.get(Order, f"{shop}:{id_part(order_key)}")


def follow_up(
    shop: str,
    kind: Literal["delivered", "returned"],
    event_id: str,
    *,
    customer: str,
    order: str,
    at: datetime | None,
) -> EventIn:
    """A delivered or returned event about an order we know (or learn in the same webhook)."""
    return EventIn(id=event_id, type=kind, customer=customer, at=at, order=order, source=shop)
