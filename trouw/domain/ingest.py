"""Takes events in: stores each once (by source id), knows orders by their id, queues the hand-off."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from babel.numbers import is_currency
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select

from trouw.domain.consent import record_consent, suppress
from trouw.domain.db.models import (
    Customer,
    InboundEvent,
    Order,
    OrderLine,
    Product,
    ProfileChange,
    Voucher,
)
from trouw.domain.loyalty import intake as loyalty_intake
from trouw.domain.loyalty.vouchers import redeem_on_order
from trouw.language.contracts import CustomerEvent, WithdrawalScope
from trouw.language.journey.plain import jsonable
from trouw.language.locales import LocaleTag
from trouw.language.phones import phone_of_customer
from trouw.language.vocabulary import Channel
from trouw.stack import metrics

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
ConsentChannel = Literal["email", "sms", "all"]

# What str.splitlines() breaks on, and NUL: text that reaches a message header or subject (order
# ids, names) must stay on one line, or it ends the header early or splits the subject.
LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00"
SINGLE_LINE_PATTERN = r"^[^\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029\x00]*$"
# Every IANA zone this machine knows; the schema names the format, validation uses this set.
TIME_ZONES = frozenset(available_timezones())
TIME_ZONE_FORMAT = "iana-time-zone"
CURRENCY_FORMAT = "iso-4217"


def _single_line(value: str) -> str:
    if any(ch in LINE_BREAKS for ch in value):
        raise ValueError("must be a single line: line breaks are not allowed")
    return value


def _known_currency(value: str) -> str:
    if not is_currency(value):
        raise ValueError(f"unknown currency {value!r} (ISO 4217, e.g. EUR)")
    return value


def _known_zone(value: str) -> str:
    if value not in TIME_ZONES:
        raise ValueError(f"unknown time zone {value!r}")
    return value


def _text_on_the_wire(value: Any) -> Any:
    # JSON has no date type: a date travels as ISO 8601 text. A number is refused rather than
    # read as a Unix timestamp, so a wrongly typed field is an error, not a date in 1970.
    if isinstance(value, (int, float)):
        raise ValueError("give the date as ISO 8601 text, e.g. 2026-03-02T09:00:00+01:00")
    return value


SingleLine = Annotated[
    str, AfterValidator(_single_line), Field(json_schema_extra={"pattern": SINGLE_LINE_PATTERN})
]
# Identifiers travel into workflow ids, message keys, URLs, log lines and the operator's
# terminal: each is limited to a documented set of characters (docs/api.md). Customer ids also
# appear as a URL path segment (/v1/customers/{id}), so they leave out # / and +.
IDENTIFIER_CHARACTERS = "letters A-Z and a-z, digits 0-9 and . _ : @ # / + -"
IDENTIFIER_PATTERN = r"^[A-Za-z0-9._:@#/+-]+$"
CUSTOMER_ID_CHARACTERS = "letters A-Z and a-z, digits 0-9 and . _ : @ -"
CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9._:@-]+$"


def _characters(pattern: str, allowed: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            bad = next((ch for ch in value if not compiled.fullmatch(ch)), None)
            shown = f" (found {bad!r})" if bad is not None else ""
            raise ValueError(f"use only {allowed}{shown}")
        return value

    return AfterValidator(check)


_CUSTOMER_ID = (
    _characters(CUSTOMER_ID_PATTERN, CUSTOMER_ID_CHARACTERS),
    Field(json_schema_extra={"pattern": CUSTOMER_ID_PATTERN}),
)
_IDENTIFIER = (
    _characters(IDENTIFIER_PATTERN, IDENTIFIER_CHARACTERS),
    Field(json_schema_extra={"pattern": IDENTIFIER_PATTERN}),
)
CustomerId = Annotated[SingleLine, *_CUSTOMER_ID, StringConstraints(min_length=1, max_length=64)]
OrderId = Annotated[SingleLine, *_IDENTIFIER, StringConstraints(min_length=1, max_length=64)]
TimeZone = Annotated[
    str,
    AfterValidator(_known_zone),
    Field(json_schema_extra={"format": TIME_ZONE_FORMAT}),
]


def _json_integer(value: Any) -> Any:
    # JSON has one number type: 12.0 is the integer 12 (as JSON Schema says), "12" and true are not.
    if isinstance(value, bool) or isinstance(value, str):
        raise ValueError("give a whole number, not text or true/false")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_CENTS = Decimal("0.01")


def _money_pattern(whole_digits: int) -> str:
    return rf"^[0-9]{{1,{whole_digits}}}(\.[0-9]{{1,2}})?$"


def _money_reader(whole_digits: int) -> Any:
    """Reads an amount >= 0 with at most two decimals: "24.95" as text, or 24.95 as a number."""
    pattern = re.compile(_money_pattern(whole_digits))
    limit = 10**whole_digits

    def read(value: Any) -> Any:
        if isinstance(value, Decimal):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError('give an amount as text ("24.95") or a number (24.95)')
        if isinstance(value, str):
            if not pattern.fullmatch(value):
                raise ValueError(
                    f'give an amount such as "24.95": at most {whole_digits} digits, '
                    "a point and two decimals"
                )
            return Decimal(value)
        # A number as written (its shortest form: 24.95, not 24.949999...) has at most two
        # decimals, which is what `multipleOf: 0.01` means to JSON Schema validators too.
        amount = Decimal(str(value))
        if not 0 <= value < limit:  # the bounds (and NaN) are the field's to refuse: quantize
            return amount  # cannot even take huge values
        if amount != amount.quantize(_CENTS):
            raise ValueError("an amount has at most two decimals")
        return amount

    return read


def _money_schema(whole_digits: int) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "string", "pattern": _money_pattern(whole_digits)},
            {
                "type": "number",
                "minimum": 0,
                "exclusiveMaximum": 10**whole_digits,
                "multipleOf": 0.01,
            },
        ]
    }


WireDate = Annotated[date, BeforeValidator(_text_on_the_wire)]
WireDateTime = Annotated[datetime, BeforeValidator(_text_on_the_wire)]
PreferredChannel = Channel
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
    """An event that cannot be applied; the message says why, `field` which field (or "")."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class UnknownRecordError(IngestError):
    """Something the event names does not exist: the customer, order, product or voucher."""


class RecordConflictError(IngestError):
    """The event conflicts with what is stored: another customer's order, an erased customer."""


def erased_error(customer_id: str) -> IngestError:
    """The refusal for anything sent about an erased customer (GDPR art. 17): nothing revives it."""
    return RecordConflictError(
        f"customer {customer_id!r} was erased: its data cannot be stored again; "
        "use a new customer id for this person"
    )


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("give the time zone, e.g. 2026-03-02T09:00:00+01:00")
    return value


# Field types, each declared once and shared by the flat EventIn and the typed wire events.
EventId = Annotated[SingleLine, *_IDENTIFIER, StringConstraints(min_length=1, max_length=200)]
Sku = Annotated[SingleLine, *_IDENTIFIER, StringConstraints(min_length=1, max_length=64)]
Name = Annotated[SingleLine, StringConstraints(min_length=1, max_length=200)]
PersonName = Annotated[SingleLine, StringConstraints(max_length=100)]
StoreName = Annotated[SingleLine, StringConstraints(max_length=100)]
Code = Annotated[SingleLine, StringConstraints(min_length=1, max_length=64)]
Label = Annotated[SingleLine, StringConstraints(min_length=1, max_length=64)]
OrderName = Annotated[SingleLine, StringConstraints(min_length=1, max_length=64)]
# The click id a tracked link hands the webshop (`trouw_click`), carried back on the order.
ClickSession = Annotated[SingleLine, *_IDENTIFIER, StringConstraints(min_length=1, max_length=100)]
Currency = Annotated[
    str, AfterValidator(_known_currency), Field(json_schema_extra={"format": CURRENCY_FORMAT})
]
WordingText = Annotated[str, StringConstraints(max_length=5000)]
# Bounds go before the validators that read the wire form, so the JSON schema shows them.
Price = Annotated[
    Decimal,
    Field(ge=0, lt=10**8, decimal_places=2),
    BeforeValidator(_money_reader(8)),
    WithJsonSchema(_money_schema(8)),
]
Total = Annotated[
    Decimal,
    Field(ge=0, lt=10**10, decimal_places=2),
    BeforeValidator(_money_reader(10)),
    WithJsonSchema(_money_schema(10)),
]
Quantity = Annotated[int, Field(gt=0, le=10000), BeforeValidator(_json_integer)]
Rating = Annotated[int, Field(ge=1, le=5), BeforeValidator(_json_integer)]
Days = Annotated[int, Field(gt=0, le=3650), BeforeValidator(_json_integer)]
Months = Annotated[int, Field(ge=0, le=240), BeforeValidator(_json_integer)]
EventTime = Annotated[WireDateTime, AfterValidator(_aware)]


class CustomerIn(Strict):
    """A customer registered at the till or online (klantenregistratie)."""

    id: CustomerId
    email: EmailStr | None = None
    # Before phone: a national phone number is read in the locale's region (nl-BE: 0470...).
    locale: LocaleTag | None = None
    phone: str | None = Field(
        default=None,
        max_length=40,
        description="E.164 (+32470123456), or a national number when locale names the region.",
    )
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    timezone: TimeZone | None = Field(
        default=None, description="An IANA time zone name, such as Europe/Brussels."
    )
    birthday: WireDate | None = Field(
        default=None, description="From 1900-01-01 up to today (422 otherwise)."
    )
    preferred_channel: PreferredChannel | None = None
    attributes: dict[str, Any] | None = None
    opt_in: dict[Channel, StrictBool] | None = None
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
        return phone_of_customer(value, info.data.get("locale"))


class ProductIn(Strict):
    sku: Sku
    name: Name
    category: Label = "general"
    price: Price = Decimal("0")
    consumption_days: Days | None = None
    care: dict[str, Any] | None = None
    warranty_months: Months | None = None


class LineIn(Strict):
    sku: Sku
    qty: Quantity = 1
    unit_price: Price | None = None
    name: Name | None = None


class EventFacts(Strict):
    """What an event says about a customer, whoever reports it and whenever it happened.

    The fields `EventIn` and a simulation scenario's events (`trouw.commands.simulate.ScenarioEvent`)
    share, declared once; each adds its own id, type and time.
    """

    customer: CustomerId
    order: OrderId | None = None
    # What the customer calls the order ("#1001"); without it, customers see `order`.
    order_name: OrderName | None = None
    currency: Currency | None = None
    channel: Label | None = None  # pos|web for purchases; email|sms|all for consent events
    scope: WithdrawalScope | None = None  # unsubscribe: promotional, service or all (default)
    store: StoreName | None = None
    lines: list[LineIn] = Field(default_factory=list)
    total: Total | None = None
    code: Code | None = None
    name: Label | None = None  # custom event name
    rating: Rating | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    # Voucher codes redeemed on this purchase (each is marked redeemed on the order).
    vouchers: list[Code] = Field(default_factory=list, max_length=50)
    # The referral code the customer came with (register or purchase): member-get-member.
    referral: Code | None = None
    # The tracked click the order's webshop session came from (purchase): an exact link.
    session_id: ClickSession | None = None


class EventIn(EventFacts):
    """One event from any source, flat; `id` is the source's own id and makes re-sending harmless.

    Trouw's own sources (webshops, callbacks, pages, imports) build this directly; the API
    takes the typed events below (`WireEvent`), which say per type what is required.
    """

    id: EventId
    type: EventType
    at: EventTime | None = None
    profile: CustomerIn | None = None
    source: Label = "api"
    wording_version: Label | None = None
    wording_text: WordingText | None = None


# --- the API's typed events: one model per type, so the schema says what each type needs ------


class _WireEventBase(Strict):
    id: EventId = Field(description="The source's own id for the event: a repeat is harmless.")
    customer: CustomerId = Field(
        description="The customer id; register and purchase create the customer when unknown, "
        "every other type needs a known customer (404 otherwise)."
    )
    at: EventTime | None = Field(
        default=None, description="When it happened, with its offset; default: when received."
    )
    source: Label = "api"
    profile: CustomerIn | None = Field(
        default=None,
        description="Customer data to store with the event. Its `id` must equal `customer` "
        "(a rule JSON Schema cannot state: 422 otherwise).",
    )

    def as_event(self) -> EventIn:
        """The flat event ingest applies."""
        return EventIn.model_validate(self.model_dump())


class RegisterEvent(_WireEventBase):
    """A customer was created or updated (give the data in `profile`)."""

    type: Literal["register"]
    referral: Code | None = Field(
        default=None, description="The referral code of the member who invited this customer."
    )


class PurchaseEvent(_WireEventBase):
    """An order at the till (`pos`) or online (`web`); an order id is stored once."""

    type: Literal["purchase"]
    order: OrderId
    order_name: OrderName | None = Field(
        default=None, description='What the customer calls the order ("#1001").'
    )
    currency: Currency | None = Field(
        default=None, description="ISO 4217 code of the order's amounts, such as EUR."
    )
    channel: Literal["pos", "web"]
    store: StoreName | None = None
    lines: list[LineIn] = Field(min_length=1, max_length=1000)
    total: Total | None = None
    vouchers: list[Code] = Field(
        default_factory=list,
        max_length=50,
        description="Voucher codes redeemed on this order (redeemed now if not yet).",
    )
    referral: Code | None = Field(
        default=None, description="The referral code of the member who invited this customer."
    )
    session_id: ClickSession | None = Field(
        default=None,
        description="The click id (`trouw_click`) a tracked link added to the landing URL, "
        "kept by the webshop or till for this order: attributes the order to that click's "
        "message (docs/measurement.md).",
    )


class OrderEvent(_WireEventBase):
    """A known order of this customer was delivered or returned (returned: `lines` names the
    units that came back by sku and qty; without lines, the whole order)."""

    type: Literal["delivered", "returned"]
    order: OrderId
    lines: list[LineIn] = Field(default_factory=list, max_length=1000)


class ReviewEvent(_WireEventBase):
    """The customer reviewed a purchase."""

    type: Literal["review"]
    order: OrderId | None = None
    rating: Rating | None = None


class ConsentEvent(_WireEventBase):
    """Promotional consent given or withdrawn on a channel (default: email)."""

    type: Literal["opt_in", "opt_out"]
    channel: ConsentChannel | None = None
    wording_version: Label | None = None
    wording_text: WordingText | None = None


class UnsubscribeEvent(_WireEventBase):
    """An unsubscribe on a channel (default: all), of promotional, service or both (default)."""

    type: Literal["unsubscribe"]
    channel: ConsentChannel | None = None
    scope: WithdrawalScope | None = None
    wording_version: Label | None = None
    wording_text: WordingText | None = None


class SuppressionEvent(_WireEventBase):
    """A hard bounce (email) or an SMS STOP: that channel is suppressed for good."""

    type: Literal["bounce", "sms_stop"]


class VoucherRedeemedEvent(_WireEventBase):
    """A voucher of this customer was redeemed (404 for an unknown code)."""

    type: Literal["voucher_redeemed"]
    code: Code


class CustomEvent(_WireEventBase):
    """Anything else a journey may wait for: a name and free properties."""

    type: Literal["custom"]
    name: Label
    properties: dict[str, Any] = Field(default_factory=dict)


WireEvent = Annotated[
    RegisterEvent
    | PurchaseEvent
    | OrderEvent
    | ReviewEvent
    | ConsentEvent
    | UnsubscribeEvent
    | SuppressionEvent
    | VoucherRedeemedEvent
    | CustomEvent,
    Field(discriminator="type"),
]


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
    session: Session,
    data: CustomerIn,
    *,
    at: datetime,
    source: str,
    wording_version: str | None = None,
) -> tuple[Customer, list[str]]:
    """Create or update a customer; returns it and the fields that changed (none when new).

    Every change is appended to the profile_change ledger with its source and time; its opt-ins
    to the consent ledger with `wording_version` (the consent text the customer agreed to).
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
            wording_version=wording_version,
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
    session: Session,
    data: CustomerIn,
    *,
    at: datetime,
    source: str,
    announce: bool = True,
    wording_version: str | None = None,
) -> Customer:
    """Create or update a customer; changes to a known one reach its workflow (`announce`)."""
    customer, changed = apply_profile(
        session, data, at=at, source=source, wording_version=wording_version
    )
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


def _apply_purchase(
    session: Session, event: EventIn, at: datetime, now: datetime | None = None
) -> dict[str, Any]:
    """A new order, or the changes to one already known by its id (its business identity)."""
    if not event.order:
        raise IngestError("a purchase needs `order`, the order id", field="order")
    if not event.lines:
        raise IngestError("a purchase needs at least one line", field="lines")
    if event.channel not in ("pos", "web"):
        raise IngestError("a purchase's channel is pos or web", field="channel")
    skus = [line.sku for line in event.lines]
    data: dict[str, Any] = {"channel": event.channel, "store": event.store}
    existing = session.get(Order, event.order)
    if existing is not None:
        if existing.customer_id != event.customer:
            raise RecordConflictError(
                f"order {event.order} belongs to another customer", field="order"
            )
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
    order_total = event.total if event.total is not None else total
    session.add(
        order := Order(
            id=event.order,
            customer_id=event.customer,
            channel=event.channel,
            store=event.store,
            placed_at=at,
            total=order_total,
            currency=event.currency or Order.model_fields["currency"].default,
            name=event.order_name,
            session_id=event.session_id,
        )
    )
    session.add_all(lines)
    if event.vouchers:
        session.flush()
        # The simulator's clock in a simulation.
        redeem_order_vouchers(
            session, order, event.vouchers, data, at=at, now=now or datetime.now(UTC)
        )
    return {"order_id": event.order, "skus": skus, "data": data}


def redeem_order_vouchers(
    session: Session,
    order: Order,
    codes: list[str],
    data: dict[str, Any],
    *,
    at: datetime,
    now: datetime,
) -> None:
    """Redeem the voucher codes a purchase carries on its order, and note in the event's `data`
    which took (`vouchers`, what its journeys are told) and which were refused (`vouchers_refused`)."""
    accepted, refused = redeem_on_order(
        session,
        codes,
        customer_id=order.customer_id,
        order_id=order.id,
        channel=order.channel,
        store=order.store,
        at=at,
        now=now,
        total=Decimal(order.total),
    )
    data["vouchers"] = accepted
    data.pop("vouchers_refused", None)
    if refused:
        data["vouchers_refused"] = refused


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
            raise UnknownRecordError(
                f"line {number}: unknown product {line.sku} and no unit_price",
                field=f"lines.{number - 1}.sku",
            )
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
        # A shop may learn the click session only after the order (an order edit).
        ("session_id", event.session_id),
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
    session: Session,
    event: EventIn,
    customer: Customer,
    at: datetime,
    changed: list[str],
    now: datetime | None = None,
) -> dict[str, Any]:
    """Apply the event to the data; returns what the customer workflow gets to know."""
    facts: dict[str, Any] = {"order_id": event.order, "skus": []}
    kind = event.type
    if event.scope is not None and kind != "unsubscribe":
        raise IngestError(
            "`scope` belongs to unsubscribe events: promotional, service or all", field="scope"
        )
    if kind == "purchase":
        facts = _apply_purchase(session, event, at, now)
    elif kind in ("delivered", "returned"):
        order = session.get(Order, event.order) if event.order else None
        if order is None or order.customer_id != customer.id:
            raise UnknownRecordError(
                f"{kind}: unknown order {event.order!r} for this customer", field="order"
            )
        if kind == "delivered" and order.delivered_at is None:
            order.delivered_at = at
        if kind == "returned" and order.returned_at is None and not event.lines:
            # Lines name a partial return: the order stays in the history (its points shrink).
            order.returned_at = at
        session.add(order)
        facts["skus"] = _order_skus(session, order.id)
    elif kind in ("opt_in", "opt_out"):
        channel = event.channel or "email"
        if channel not in ("email", "sms", "all"):
            raise IngestError("opt_in/opt_out channel is email, sms or all", field="channel")
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
            raise IngestError("unsubscribe channel is email, sms or all", field="channel")
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
            raise UnknownRecordError(
                f"voucher_redeemed: unknown voucher code {event.code!r}", field="code"
            )
        if voucher.redeemed_at is None:
            voucher.redeemed_at = at
            voucher.redeemed_receipt = event.id
            voucher.redeemed_recorded_at = datetime.now(UTC)
            session.add(voucher)
        facts["data"] = {"code": voucher.code}
    elif kind == "review":
        facts["data"] = {"rating": event.rating}
    elif kind == "register":
        facts["data"] = {"changed": changed}
    elif kind == "custom":
        if not event.name:
            raise IngestError("a custom event needs `name`", field="name")
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
            metrics.on_commit(
                session, metrics.EVENTS_ACCEPTED.labels(type=event.type, source=event.source).inc
            )
            return row, True
        except IntegrityError:
            # Another transaction stored the same event or customer first; look again.
            savepoint.rollback()
    raise RecordConflictError(
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
            raise IngestError("profile.id differs from customer", field="profile.id")
        customer, changed = apply_profile(session, event.profile, at=at, source=event.source)
        if event.type != "register":
            announce_changes(session, customer.id, changed, at=at)
    if customer is None:
        if event.type in ("register", "purchase"):
            customer = upsert_customer(
                session, CustomerIn(id=event.customer), at=at, source=event.source
            )
        else:
            raise UnknownRecordError(
                f"unknown customer {event.customer!r}: register the customer first",
                field="customer",
            )
    session.flush()
    facts = _apply(session, event, customer, at, changed, now)
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
    loyalty_intake.on_event(session, event, row, at=at)
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


def pending_events(
    session: Session, *, limit: int = 500, now: datetime | None = None
) -> list[InboundEvent]:
    """Events to hand off: not relayed, not parked, and not waiting out a retry backoff."""
    now = now or datetime.now(UTC)
    return list(
        session.exec(
            select(InboundEvent)
            .where(col(InboundEvent.relayed_at).is_(None))
            .where(col(InboundEvent.parked_at).is_(None))
            .where(
                or_(
                    col(InboundEvent.relay_next_at).is_(None),
                    col(InboundEvent.relay_next_at) <= now,
                )
            )
            .order_by(col(InboundEvent.id))
            .limit(limit)
        ).all()
    )


def _plain(value: Any) -> Any:
    """Exact plain data: money as strings, never floats."""
    return jsonable(value, money=str)
