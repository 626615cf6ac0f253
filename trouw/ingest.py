"""Takes events in: stores each once (by source id), knows orders by their id, queues the hand-off."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from babel.numbers import is_currency
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from trouw.consent import record_consent, suppress
from trouw.context import jsonable
from trouw.contracts import CustomerEvent, WithdrawalScope
from trouw.db.models import (
    Customer,
    InboundEvent,
    Order,
    OrderLine,
    Product,
    ProfileChange,
    Voucher,
)
from trouw.locales import LocaleTag, region_of
from trouw.phones import PhoneError, normalise_phone

EventType = Literal[
    "register",
    "purchase",
    "delivered",
    "returned",
    "review",
    "opt_in",
    "opt_out",
    "unsubscribe",
    "bounce",
    "sms_stop",
    "voucher_redeemed",
    "custom",
]
PreferredChannel = Literal["email", "sms"]
# The profile fields a customer, an import, the API or a webshop can set (attributes apart).
PROFILE_FIELDS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "locale",
    "timezone",
    "birthday",
    "preferred_channel",
)
# What a customer may remove from their profile (the preference page; the API too).
ClearableField = Literal["first_name", "last_name", "birthday", "preferred_channel"]
EARLIEST_BIRTHDAY = date(1900, 1, 1)
BirthdayProblem = Literal["future", "too_old"]


def latest_birthday(now: datetime | None = None) -> date:
    """Today somewhere on earth: UTC+14 has the earliest calendar, and its today is not future."""
    return ((now or datetime.now(UTC)).astimezone(UTC) + timedelta(hours=14)).date()


def birthday_problem(day: date, *, now: datetime | None = None) -> BirthdayProblem | None:
    """Why a birthday cannot be right, or None: after today anywhere on earth, or before 1900."""
    if day > latest_birthday(now):
        return "future"
    if day < EARLIEST_BIRTHDAY:
        return "too_old"
    return None


log = logging.getLogger("trouw.ingest")


class IngestError(ValueError):
    """An event that cannot be applied (an unknown order, say); the message says why."""


def erased_error(customer_id: str) -> IngestError:
    """The refusal for anything sent about an erased customer (GDPR art. 17): nothing revives it."""
    return IngestError(
        f"customer {customer_id!r} was erased: its data cannot be stored again; "
        "use a new customer id for this person"
    )


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerIn(Strict):
    """A customer registered at the till or online (klantenregistratie)."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:@-]+$")
    email: EmailStr | None = None
    # Before phone: a national phone number is read in the locale's region (nl-BE: 0470...).
    locale: LocaleTag | None = None
    phone: str | None = Field(
        default=None,
        max_length=40,
        description="E.164 (+32470123456), or a national number when locale names the region.",
    )
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    timezone: str | None = None
    birthday: date | None = None
    preferred_channel: PreferredChannel | None = None
    attributes: dict[str, Any] | None = None
    opt_in: dict[Literal["email", "sms"], bool] | None = None
    clear: list[ClearableField] = Field(
        default_factory=list, description="Fields to remove from the profile."
    )

    @model_validator(mode="after")
    def _set_or_clear(self) -> CustomerIn:
        both = [name for name in self.clear if getattr(self, name) is not None]
        if both:
            raise ValueError(f"{both[0]} is both given and cleared")
        return self

    @field_validator("birthday")
    @classmethod
    def _plausible_birthday(cls, value: date | None) -> date | None:
        problem = birthday_problem(value) if value is not None else None
        if problem == "future":
            raise ValueError("a birthday cannot be in the future")
        if problem == "too_old":
            raise ValueError("a birthday before 1900 is not plausible")
        return value

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            return normalise_phone(value, country=region_of(info.data.get("locale")))
        except PhoneError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("first_name", "last_name")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        if value is not None and any(ch in value for ch in "\r\n\x00"):
            raise ValueError("must be a single line")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class ProductIn(Strict):
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    category: str = "general"
    price: Decimal = Field(default=Decimal("0"), ge=0, max_digits=10, decimal_places=2)
    consumption_days: int | None = Field(default=None, gt=0, le=3650)
    care: dict[str, Any] | None = None
    warranty_months: int | None = Field(default=None, ge=0, le=240)


class LineIn(Strict):
    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(default=1, gt=0, le=10000)
    unit_price: Decimal | None = Field(default=None, ge=0, max_digits=10, decimal_places=2)
    name: str | None = Field(default=None, max_length=200)


class EventIn(Strict):
    """One event from any source; `id` is the source's own id and makes re-sending harmless."""

    id: str = Field(min_length=1, max_length=200)
    type: EventType
    customer: str = Field(min_length=1, max_length=64)
    at: datetime | None = None
    order: str | None = Field(default=None, max_length=64)
    # What the customer calls the order ("#1001"); without it, customers see `order`.
    order_name: str | None = Field(default=None, min_length=1, max_length=64)
    currency: str | None = Field(
        default=None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code of the order's amounts."
    )
    channel: str | None = None  # pos|web for purchases; email|sms|all for consent events
    scope: WithdrawalScope | None = None  # unsubscribe: promotional, service or all (default)
    store: str | None = Field(default=None, max_length=100)
    lines: list[LineIn] = Field(default_factory=list)
    total: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=2)
    profile: CustomerIn | None = None
    code: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=64)  # custom event name
    rating: int | None = Field(default=None, ge=1, le=5)
    source: str = "api"
    wording_version: str | None = None
    wording_text: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str | None) -> str | None:
        if value is not None and not is_currency(value):
            raise ValueError(f"unknown currency {value!r} (ISO 4217, e.g. EUR)")
        return value

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give the time zone, e.g. 2026-03-02T09:00:00+01:00")
        return value


def profile_changes(existing: Customer | None, incoming: CustomerIn) -> list[str]:
    """The fields (and `attributes.<name>`) incoming would change; ["new"] for a new customer."""
    if existing is None:
        return ["new"]
    changed = []
    for name in PROFILE_FIELDS:
        value = getattr(incoming, name)
        if value is not None and getattr(existing, name) != (
            str(value) if name == "email" else value
        ):
            changed.append(name)
    changed += [name for name in incoming.clear if getattr(existing, name) is not None]
    for key, value in (incoming.attributes or {}).items():
        if (existing.attributes or {}).get(key) != value:
            changed.append(f"attributes.{key}")
    return changed


def apply_profile(
    session: Session, data: CustomerIn, *, at: datetime, source: str
) -> tuple[Customer, list[str]]:
    """Create or update a customer; returns it and the fields that changed (none when new).

    Every change is appended to the profile_change ledger with its source and time.
    """
    customer = session.get(Customer, data.id)
    if customer is not None and customer.erased:
        raise erased_error(data.id)
    changed = [] if customer is None else profile_changes(customer, data)
    if customer is None:
        customer = Customer(id=data.id, created_at=at)
        recorded = [name for name in PROFILE_FIELDS if getattr(data, name) is not None]
        recorded += [f"attributes.{key}" for key in data.attributes or {}]
    else:
        recorded = changed
    for name in PROFILE_FIELDS:
        value = getattr(data, name)
        if value is not None:
            setattr(customer, name, str(value) if name == "email" else value)
    for name in data.clear:
        setattr(customer, name, None)
    if data.attributes:
        customer.attributes = {**(customer.attributes or {}), **data.attributes}
    customer.updated_at = at
    session.add(customer)
    session.add_all(
        ProfileChange(customer_id=customer.id, field=name, at=at, source=source)
        for name in recorded
    )
    for channel, granted in (data.opt_in or {}).items():
        record_consent(
            session,
            customer_id=customer.id,
            channel=channel,
            scope="promotional",
            granted=granted,
            at=at,
            source=source,
        )
    return customer, changed


def announce_changes(
    session: Session, customer_id: str, changed: list[str], *, at: datetime
) -> None:
    """A `register` event naming the changed fields (never their values), for running journeys.

    Whatever path a birthday arrives by (import, API, webshop, preference page), the customer's
    workflow hears of it: the enrichment journey ends, the birthday journey can start.
    """
    if not changed:
        return
    session.add(
        InboundEvent(
            source_id=f"profile:{customer_id}:{uuid.uuid4().hex}",
            type="register",
            customer_id=customer_id,
            occurred_at=at,
            received_at=at,
            payload={"order_id": None, "skus": [], "data": {"changed": changed}},
        )
    )


def upsert_customer(
    session: Session, data: CustomerIn, *, at: datetime, source: str, announce: bool = True
) -> Customer:
    """Create or update a customer; changes to a known one reach its workflow (`announce`)."""
    customer, changed = apply_profile(session, data, at=at, source=source)
    if announce:
        announce_changes(session, customer.id, changed, at=at)
    return customer


def upsert_product(session: Session, data: ProductIn) -> Product:
    product = session.get(Product, data.sku) or Product(sku=data.sku, name=data.name)
    for name, value in data.model_dump().items():
        setattr(product, name, value)
    session.add(product)
    return product


# What a purchase for an order already known is stored as: the same order sent again (a till or
# an export re-sending it under its own event id). No journey starts or ends on it.
ORDER_UPDATE = "order_update"


def _apply_purchase(session: Session, event: EventIn, at: datetime) -> dict[str, Any]:
    """A new order, or the changes to one already known by its id (its business identity)."""
    if not event.order:
        raise IngestError("a purchase needs `order`, the order id")
    if not event.lines:
        raise IngestError("a purchase needs at least one line")
    if event.channel not in ("pos", "web"):
        raise IngestError("a purchase's channel is pos or web")
    skus = [line.sku for line in event.lines]
    data = {"channel": event.channel, "store": event.store}
    existing = session.get(Order, event.order)
    if existing is not None:
        if existing.customer_id != event.customer:
            raise IngestError(f"order {event.order} belongs to another customer")
        decision = _update_known_order(session, event, existing)
        log.info("event %s: %s", event.id, decision)
        return {
            "type": ORDER_UPDATE,
            "order_id": existing.id,
            "skus": skus,
            "data": data,
            "decision": decision,
        }
    lines, total = _order_lines(session, event)
    session.add(
        Order(
            id=event.order,
            customer_id=event.customer,
            channel=event.channel,
            store=event.store,
            placed_at=at,
            total=event.total if event.total is not None else total,
            currency=event.currency or Order.model_fields["currency"].default,
            name=event.order_name,
        )
    )
    session.add_all(lines)
    return {"order_id": event.order, "skus": skus, "data": data}


def _order_lines(session: Session, event: EventIn) -> tuple[list[OrderLine], Decimal]:
    assert event.order is not None
    total = Decimal("0")
    lines = []
    for number, line in enumerate(event.lines, start=1):
        product = session.get(Product, line.sku)
        price = (
            line.unit_price if line.unit_price is not None else (product.price if product else None)
        )
        if price is None:
            raise IngestError(f"line {number}: unknown product {line.sku} and no unit_price")
        name = line.name or (product.name if product else line.sku)
        lines.append(
            OrderLine(
                order_id=event.order,
                line_no=number,
                sku=line.sku,
                name=name,
                qty=line.qty,
                unit_price=price,
            )
        )
        total += price * line.qty
    return lines, total


def _update_known_order(session: Session, event: EventIn, order: Order) -> str:
    """Apply what changed in a re-sent order; returns the decision, with its reason, in words.

    The order keeps its first placed_at: the re-send is news about the same purchase.
    """
    lines, total = _order_lines(session, event)
    old = list(
        session.exec(
            select(OrderLine).where(OrderLine.order_id == order.id).order_by(col(OrderLine.line_no))
        ).all()
    )
    changed = []
    if _line_facts(old) != _line_facts(lines):
        changed.append("lines")
        for line in old:
            session.delete(line)
        session.flush()  # the (order_id, line_no) pairs are unique: old lines go first
        session.add_all(lines)
    new_total = event.total if event.total is not None else total
    updates = (
        ("channel", event.channel),
        ("store", event.store),
        ("total", new_total),
        ("name", event.order_name),
        ("currency", event.currency),
    )
    for name, value in updates:
        if value is not None and getattr(order, name) != value:
            changed.append(name)
            setattr(order, name, value)
    session.add(order)
    first = _first_purchase_event(session, order)
    known = f"order {order.id} is already known" + (
        f" (first stored as event {first})" if first else ""
    )
    outcome = f"changes applied: {', '.join(changed)}" if changed else "no changes"
    return f"{known}: a re-send under a new event id, not a new purchase; {outcome}"


def _line_facts(lines: list[OrderLine]) -> list[tuple[str, int, Decimal, str]]:
    return [(line.sku, line.qty, Decimal(line.unit_price), line.name) for line in lines]


def _first_purchase_event(session: Session, order: Order) -> str | None:
    """The source id of the event that first brought this order (None when it came otherwise)."""
    rows = session.exec(
        select(InboundEvent)
        .where(InboundEvent.customer_id == order.customer_id, InboundEvent.type == "purchase")
        .order_by(col(InboundEvent.id))
    ).all()
    return next((row.source_id for row in rows if row.payload.get("order_id") == order.id), None)


def _order_skus(session: Session, order_id: str) -> list[str]:
    return list(session.exec(select(OrderLine.sku).where(OrderLine.order_id == order_id)).all())


def _apply(
    session: Session, event: EventIn, customer: Customer, at: datetime, changed: list[str]
) -> dict[str, Any]:
    """Apply the event to the data; returns what the customer workflow gets to know."""
    facts: dict[str, Any] = {"order_id": event.order, "skus": []}
    kind = event.type
    if event.scope is not None and kind != "unsubscribe":
        raise IngestError("`scope` belongs to unsubscribe events: promotional, service or all")
    if kind == "purchase":
        facts = _apply_purchase(session, event, at)
    elif kind in ("delivered", "returned"):
        order = session.get(Order, event.order) if event.order else None
        if order is None or order.customer_id != customer.id:
            raise IngestError(f"{kind}: unknown order {event.order!r} for this customer")
        if kind == "delivered" and order.delivered_at is None:
            order.delivered_at = at
        if kind == "returned" and order.returned_at is None:
            order.returned_at = at
        session.add(order)
        facts["skus"] = _order_skus(session, order.id)
    elif kind in ("opt_in", "opt_out"):
        channel = event.channel or "email"
        if channel not in ("email", "sms", "all"):
            raise IngestError("opt_in/opt_out channel is email, sms or all")
        record_consent(
            session,
            customer_id=customer.id,
            channel=channel,
            scope="promotional",
            granted=kind == "opt_in",
            at=at,
            source=event.source,
            wording_version=event.wording_version,
            wording_text=event.wording_text,
        )
        facts["data"] = {"channel": channel, "scope": "promotional"}
    elif kind == "unsubscribe":
        channel = event.channel or "all"
        if channel not in ("email", "sms", "all"):
            raise IngestError("unsubscribe channel is email, sms or all")
        scope = event.scope or "all"
        for each in ("promotional", "service") if scope == "all" else (scope,):
            record_consent(
                session,
                customer_id=customer.id,
                channel=channel,
                scope=each,
                granted=False,
                at=at,
                source=event.source,
                wording_version=event.wording_version,
                wording_text=event.wording_text,
            )
        if scope == "all":
            # Everything but receipts stops on the channel, also for an address shared later.
            suppress(
                session,
                customer=customer,
                channel=channel,
                reason="unsubscribe",
                at=at,
                source=event.source,
            )
        facts["data"] = {"channel": channel, "scope": scope}
    elif kind == "bounce":
        suppress(
            session,
            customer=customer,
            channel="email",
            reason="hard_bounce",
            at=at,
            source=event.source,
        )
    elif kind == "sms_stop":
        suppress(
            session, customer=customer, channel="sms", reason="sms_stop", at=at, source=event.source
        )
        facts["data"] = {"channel": "sms", "scope": "all"}
    elif kind == "voucher_redeemed":
        voucher = session.get(Voucher, event.code) if event.code else None
        if voucher is None or voucher.customer_id != customer.id:
            raise IngestError(f"voucher_redeemed: unknown voucher code {event.code!r}")
        if voucher.redeemed_at is None:
            voucher.redeemed_at = at
            session.add(voucher)
        facts["data"] = {"code": voucher.code}
    elif kind == "review":
        facts["data"] = {"rating": event.rating}
    elif kind == "register":
        facts["data"] = {"changed": changed}
    elif kind == "custom":
        if not event.name:
            raise IngestError("a custom event needs `name`")
        facts["data"] = {"name": event.name, **event.properties}
    return facts


def ingest_event(
    session: Session, event: EventIn, *, now: datetime | None = None
) -> tuple[InboundEvent, bool]:
    """Store and apply an event once. Returns the stored row and whether it is new.

    The caller commits; the row's relayed_at stays empty until the relay hands it to Temporal.
    Two requests racing on one event (or one new customer) meet a unique constraint: the loser
    rolls back to its savepoint and answers with the winner's row, or retries once the customer
    the winner created exists.
    """
    for _attempt in range(3):
        existing = session.exec(
            select(InboundEvent).where(InboundEvent.source_id == event.id)
        ).first()
        if existing is not None:
            return existing, False
        savepoint = session.begin_nested()
        try:
            row = _ingest_once(session, event, now)
            savepoint.commit()
            return row, True
        except IntegrityError:
            # Another transaction stored the same event or customer first; look again.
            savepoint.rollback()
    raise IngestError(
        f"event {event.id!r} could not be stored: concurrent writers kept conflicting"
    )


def _ingest_once(session: Session, event: EventIn, now: datetime | None) -> InboundEvent:
    at = event.at or now or datetime.now(UTC)
    customer = session.get(Customer, event.customer)
    if customer is not None and customer.erased:
        raise erased_error(event.customer)
    changed: list[str] = []
    if event.profile is not None:
        if event.profile.id != event.customer:
            raise IngestError("profile.id differs from customer")
        customer, changed = apply_profile(session, event.profile, at=at, source=event.source)
        if event.type != "register":
            announce_changes(session, customer.id, changed, at=at)
    if customer is None:
        if event.type in ("register", "purchase"):
            customer = upsert_customer(
                session, CustomerIn(id=event.customer), at=at, source=event.source
            )
        else:
            raise IngestError(f"unknown customer {event.customer!r}: register the customer first")
    session.flush()
    facts = _apply(session, event, customer, at, changed)
    kind = facts.get("type") or (event.type if event.type != "custom" else f"custom:{event.name}")
    payload = {
        "order_id": facts.get("order_id"),
        "skus": facts.get("skus", []),
        "data": _plain(facts.get("data", {})),
    }
    if "decision" in facts:
        payload["decision"] = facts["decision"]
    row = InboundEvent(
        source_id=event.id,
        type=kind,
        customer_id=customer.id,
        occurred_at=at,
        received_at=now or datetime.now(UTC),
        payload=payload,
    )
    session.add(row)
    session.flush()
    return row


def wire_event(row: InboundEvent) -> CustomerEvent:
    payload = row.payload or {}
    return CustomerEvent(
        id=row.source_id,
        type=row.type,
        customer_id=row.customer_id,
        at=row.occurred_at,
        order_id=payload.get("order_id"),
        skus=list(payload.get("skus") or []),
        data=dict(payload.get("data") or {}),
    )


def pending_events(session: Session, *, limit: int = 500) -> list[InboundEvent]:
    return list(
        session.exec(
            select(InboundEvent)
            .where(col(InboundEvent.relayed_at).is_(None))
            .order_by(col(InboundEvent.id))
            .limit(limit)
        ).all()
    )


def _plain(value: Any) -> Any:
    """Exact plain data: money as strings, never floats."""
    return jsonable(value, money=str)
