"""What journeys and templates can read: a typed description of the context, and event types.

`trouw validate` and `trouw templates check` check every name and attribute against this
description before anything runs; `trouw/domain/render/samples.py` fills every field of it. The
context itself is built in trouw/domain/context.py (customer, order, history) and by the engine
(trigger, events, call results): a field added there is described here too (a test compares).

Customer attributes are typed by their declaration (name -> type name, see `attribute_shapes`);
an attribute nobody declared is unknown, so a typo cannot slip through to a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import get_args


@dataclass(frozen=True)
class Shape:
    """The type of one value in the context."""

    kind: str  # text | number | bool | date | datetime | duration | record | list | any
    fields: Mapping[str, Shape] = field(default_factory=dict)  # a record's fields
    item: Shape | None = None  # a list's items

    def __repr__(self) -> str:
        return self.kind


TEXT = Shape("text")
NUMBER = Shape("number")
BOOL = Shape("bool")
DATE = Shape("date")
DATETIME = Shape("datetime")
DURATION = Shape("duration")
ANY = Shape("any")  # not described further: its attributes are not checked


def record(**fields: Shape) -> Shape:
    return Shape("record", fields=fields)


def list_of(item: Shape) -> Shape:
    return Shape("list", item=item)


# Type names a declaration may use (custom event properties, customer attributes).
TYPE_NAMES: dict[str, Shape] = {
    "text": TEXT,
    "number": NUMBER,
    "bool": BOOL,
    "date": DATE,
    "datetime": DATETIME,
    "any": ANY,
}

PRODUCT = record(
    sku=TEXT,
    name=TEXT,
    category=TEXT,
    price=NUMBER,
    consumption_days=NUMBER,
    care=record(summary=TEXT, tips=list_of(TEXT)),
    warranty_months=NUMBER,
)
LINE = record(
    sku=TEXT, name=TEXT, qty=NUMBER, unit_price=NUMBER, line_total=NUMBER, product=PRODUCT
)
ORDER = record(
    id=TEXT,
    name=TEXT,
    channel=TEXT,
    store=TEXT,
    placed_at=DATETIME,
    delivered_at=DATETIME,
    returned_at=DATETIME,
    total=NUMBER,
    currency=TEXT,
    lines=list_of(LINE),
)
HISTORY = record(
    orders=NUMBER,
    first_order_at=DATETIME,
    last_order_at=DATETIME,
    days_since_last_order=NUMBER,
    total_spent=NUMBER,
    average_basket=NUMBER,
    skus=list_of(TEXT),
    categories=list_of(TEXT),
    rfm=TEXT,
)
# The customer's insight from the last refresh (trouw.domain.context.INSIGHT_FIELDS, docs/insight.md);
# every field is None until a refresh has scored the customer.
INSIGHT = record(
    segment=TEXT,
    segment_since=DATETIME,
    r=NUMBER,
    f=NUMBER,
    m=NUMBER,
    orders=NUMBER,
    first_order_at=DATETIME,
    last_order_at=DATETIME,
    recency_days=NUMBER,
    frequency=NUMBER,
    monetary_total=NUMBER,
    monetary_avg=NUMBER,
    p_active=NUMBER,
    p_order=NUMBER,
    expected_orders=NUMBER,
    expected_next_order_at=DATETIME,
    expected_value=NUMBER,
    horizon_days=NUMBER,
    weekday=NUMBER,
    hour=NUMBER,
    season=TEXT,
    sale_buyer=BOOL,
    favourite_category=TEXT,
    breadth=TEXT,
    model=TEXT,
    as_of=DATETIME,
)
VOUCHER = record(code=TEXT, value=NUMBER, currency=TEXT, expires_at=DATETIME)
# The customer's loyalty account (trouw/domain/loyalty/ledger.py loyalty_dict).
LOYALTY = record(
    member=BOOL,
    points=NUMBER,
    level=TEXT,
    next_level=TEXT,
    next_level_at=NUMBER,
    points_to_next_level=NUMBER,
    expiring_points=NUMBER,
    expiring_at=DATETIME,
    referral_code=TEXT,
    referral_link=TEXT,
)

# The data each built-in event type carries besides type, at and order_id (see trouw/domain/ingest.py,
# which declares the types, and activities that emit events).
EVENT_DATA: dict[str, dict[str, Shape]] = {
    "register": {"changed": list_of(TEXT)},
    "purchase": {"channel": TEXT, "store": TEXT},
    "delivered": {},
    "returned": {},
    "review": {"rating": NUMBER},
    "opt_in": {"channel": TEXT, "scope": TEXT},
    "opt_out": {"channel": TEXT, "scope": TEXT},
    "unsubscribe": {"channel": TEXT, "scope": TEXT},
    "bounce": {},
    "sms_stop": {"channel": TEXT, "scope": TEXT},
    "voucher_redeemed": {"code": TEXT},
    "voucher_issued": {"code": TEXT, "value": NUMBER, "currency": TEXT, "expires_at": DATETIME},
    # Derived by the insight refresh (trouw/domain/insight/store.py); they carry no order.
    "segment_entered": {"segment": TEXT, "previous_segment": TEXT},
    "next_order_expected": {"expected_next_order_at": DATETIME},
    # Derived by Trouw from the loyalty ledgers (trouw/domain/loyalty/).
    "points_changed": {
        "delta": NUMBER,
        "points": NUMBER,
        "level": TEXT,
        "kinds": list_of(TEXT),
        "joined": BOOL,
        "next_expiry_at": DATETIME,
    },
    "level_reached": {"level": TEXT, "points": NUMBER},
    "voucher_expiring": {"code": TEXT, "value": NUMBER, "currency": TEXT, "expires_at": DATETIME},
    "referral_converted": {"role": TEXT, "friend": TEXT},
}
# Event types Trouw derives itself (insight refresh, loyalty ledgers); they carry no order: a
# journey they start needs another re-entry rule than `order`.
DERIVED_EVENTS = (
    "segment_entered",
    "next_order_expected",
    "points_changed",
    "level_reached",
    "voucher_expiring",
    "referral_converted",
)
# Results of the activities journeys can `call`, by name (`as: voucher` keeps one).
CALL_RESULTS: dict[str, Shape] = {"issue_voucher": VOUCHER, "issue_level_voucher": VOUCHER}
ANY_EVENT = "any"
CUSTOM_PREFIX = "custom:"


def builtin_event_types() -> list[str]:
    """The event types Trouw itself knows: ingest's types and those activities emit."""
    from trouw.domain.ingest import EventType

    declared = [name for name in get_args(EventType) if name != "custom"]
    return sorted(set(declared) | {"voucher_issued", *DERIVED_EVENTS})


@dataclass(frozen=True)
class Declarations:
    """What a journey set declares beyond the built-ins: custom events and customer attributes."""

    custom_events: Mapping[str, Mapping[str, Shape]] = field(default_factory=dict)
    attributes: Mapping[str, Shape] = field(default_factory=dict)

    def event_types(self) -> list[str]:
        return builtin_event_types() + [CUSTOM_PREFIX + name for name in self.custom_events]

    def event_data(self, event_type: str) -> Mapping[str, Shape] | None:
        """The data fields of an event type; None when the type is unknown."""
        if event_type.startswith(CUSTOM_PREFIX):
            props = self.custom_events.get(event_type.removeprefix(CUSTOM_PREFIX))
            return None if props is None else {"name": TEXT, **props}
        return EVENT_DATA.get(event_type)


def attribute_shapes(declared: Mapping[str, str]) -> dict[str, Shape]:
    """Declared customer attributes (name -> text, number, bool, date, datetime or any)."""
    return {name: TYPE_NAMES[kind] for name, kind in declared.items()}


def event_shape(declarations: Declarations, types: Iterable[str], *, full: bool = True) -> Shape:
    """An event as expressions see it: its type, time and order, and the data of its type(s).

    `full=False` is the event a trigger condition looks at: its type and data only."""
    fields: dict[str, Shape] = {"type": TEXT}
    if full:
        fields.update(at=DATETIME, order_id=TEXT)
    for name in types:
        if name == ANY_EVENT:
            return ANY  # any event: its data is not known in advance
        fields.update(declarations.event_data(name) or {})
    return Shape("record", fields=fields)


def customer_shape(declarations: Declarations) -> Shape:
    return record(
        id=TEXT,
        first_name=TEXT,
        last_name=TEXT,
        email=TEXT,
        phone=TEXT,
        locale=TEXT,
        timezone=TEXT,
        birthday=DATE,
        preferred_channel=TEXT,
        attributes=Shape("record", fields=dict(declarations.attributes)),
        tags=list_of(TEXT),
        opt_in=record(email=BOOL, sms=BOOL),
    )


def base_scope(declarations: Declarations) -> dict[str, Shape]:
    """What every expression and template can read about the customer and the order."""
    return {
        "customer": customer_shape(declarations),
        "history": HISTORY,
        "insight": INSIGHT,
        "loyalty": LOYALTY,
        "order": ORDER,
        "products": list_of(PRODUCT),
        "product": PRODUCT,
    }


def template_scope(declarations: Declarations) -> dict[str, Shape]:
    """Everything a journey can pass to a template: the base, trigger, events, call results,
    and what the send adds (refill date, recommendations, links, shop, locale)."""
    every = declarations.event_types()
    return {
        **base_scope(declarations),
        "trigger": event_shape(declarations, every),
        "events": Shape("record", fields={n: event_shape(declarations, [n]) for n in every}),
        "voucher": VOUCHER,
        "refill": record(expected_empty_at=DATETIME),
        "recommendations": list_of(PRODUCT),
        "links": record(
            unsubscribe=TEXT,
            preferences=TEXT,
            loyalty=TEXT,
            view_in_browser=TEXT,
            review=TEXT,
            reorder=TEXT,
            shop=TEXT,
        ),
        "shop": record(name=TEXT, url=TEXT, address=TEXT),
        "locale": TEXT,
    }


def uncovered(shape: Shape, value: object, path: str) -> list[str]:
    """Described fields a value lacks (recursing into records and a list's first item): so a
    sample or a real context can be held against the description."""
    if shape.kind == "record":
        if not isinstance(value, Mapping):
            return [path] if value is None else []
        missing = []
        for name, inner in shape.fields.items():
            where = f"{path}.{name}" if path else name
            if name not in value:
                missing.append(where)
            else:
                missing.extend(uncovered(inner, value[name], where))
        return missing
    if shape.kind == "list" and shape.item is not None and isinstance(value, list) and value:
        return uncovered(shape.item, value[0], f"{path}[]")
    return []


def undescribed(shape: Shape, value: object, path: str) -> list[str]:
    """Fields a value has that the description lacks (the other direction of `uncovered`)."""
    if shape.kind == "record" and isinstance(value, Mapping):
        extra = []
        for name, inner in value.items():
            where = f"{path}.{name}" if path else str(name)
            if name not in shape.fields:
                extra.append(where)
            else:
                extra.extend(undescribed(shape.fields[name], inner, where))
        return extra
    if shape.kind == "list" and shape.item is not None and isinstance(value, list) and value:
        return undescribed(shape.item, value[0], f"{path}[]")
    return []
