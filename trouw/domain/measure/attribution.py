"""Which message, if any, earned an order: exact links first, then the last touch in a window.

Pure: orders, touches and issued vouchers in, at most one attribution per order out. The order
of evidence (docs/measurement.md, "Attribution"):
1. a voucher code redeemed on the order that a message issued (`voucher`);
2. a tracked click whose session id reached the webshop order (`click_session`);
3. the customer's last click within the click window before the order (`click`), then, where
   enabled, the last open (`open`) or delivery (`delivery`) within theirs.
Attributed revenue is the order's revenue less what was returned, never below zero and never
above the order's revenue.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

TouchKind = Literal["click", "open", "delivery"]
Method = Literal["voucher", "click_session", "click", "open", "delivery"]

DEFAULT_CLICK_WINDOW = timedelta(days=5)


@dataclass(frozen=True)
class Touch:
    """A customer engaging with one message: a delivery, an open or a tracked click."""

    message_key: str
    customer_id: str
    journey: str
    kind: TouchKind
    at: datetime
    session_id: str | None = None  # clicks through our redirect carry the webshop session


@dataclass(frozen=True)
class IssuedVoucher:
    """A voucher code and the message that carried it to the customer."""

    code: str
    message_key: str
    journey: str
    issued_at: datetime


@dataclass(frozen=True)
class OrderToAttribute:
    order_id: str
    customer_id: str
    placed_at: datetime
    revenue: Decimal
    returned: Decimal = Decimal("0")  # the part of the revenue returned (all of it: a return)
    shop: str | None = None  # the store or webshop the order came through
    vouchers: tuple[str, ...] = ()  # codes redeemed on the order
    session_id: str | None = None  # the webshop session the order was placed in


@dataclass(frozen=True)
class Windows:
    """How long after a touch an order still counts for it; None switches that touch off."""

    click: timedelta | None = DEFAULT_CLICK_WINDOW
    open: timedelta | None = None
    delivery: timedelta | None = None

    def of(self, kind: TouchKind) -> timedelta | None:
        match kind:
            case "click":
                return self.click
            case "open":
                return self.open
            case "delivery":
                return self.delivery


@dataclass(frozen=True)
class AttributionRules:
    """Windows for every order, overridden per shop, and per journey for that journey's touches.

    A journey's own windows win over its shop's: a journey whose messages are meant to be read
    in the shop (a birthday voucher) can count opens while the rest of the shop counts clicks.
    """

    default: Windows = field(default_factory=Windows)
    shops: Mapping[str, Windows] = field(default_factory=dict)
    journeys: Mapping[str, Windows] = field(default_factory=dict)

    def windows(self, order: OrderToAttribute, journey: str) -> Windows:
        if journey in self.journeys:
            return self.journeys[journey]
        if order.shop is not None and order.shop in self.shops:
            return self.shops[order.shop]
        return self.default


@dataclass(frozen=True)
class Attribution:
    order_id: str
    customer_id: str
    message_key: str
    journey: str
    method: Method
    revenue: Decimal  # what the order is worth to the message after returns
    placed_at: datetime
    touched_at: datetime  # the click, open, delivery or voucher issue that earned it


def attributed_revenue(order: OrderToAttribute) -> Decimal:
    """Revenue less returns, clamped to [0, revenue]."""
    kept = order.revenue - order.returned
    return max(Decimal("0"), min(order.revenue, kept))


def attribute(
    order: OrderToAttribute,
    touches: Sequence[Touch],
    vouchers: Mapping[str, IssuedVoucher],
    rules: AttributionRules,
    sessions: Mapping[str, Touch] | None = None,
) -> Attribution | None:
    """The one message that earned `order`, or None. `touches` are the customer's own;
    `sessions` are clicks by their session id, whoever clicked (a guest checkout after a click
    is still that click's order)."""

    def made(key: str, journey: str, method: Method, at: datetime) -> Attribution:
        return Attribution(
            order.order_id,
            order.customer_id,
            key,
            journey,
            method,
            attributed_revenue(order),
            order.placed_at,
            at,
        )

    # 1. A voucher a message issued, redeemed on this order (whoever redeems it): the latest
    # issued if several were used at once.
    issued = [
        vouchers[code]
        for code in order.vouchers
        if code in vouchers and vouchers[code].issued_at <= order.placed_at
    ]
    if issued:
        best = max(issued, key=lambda v: (v.issued_at, v.code))
        return made(best.message_key, best.journey, "voucher", best.issued_at)
    before = [t for t in touches if t.at <= order.placed_at]
    # 2. The click that opened the session the order was placed in.
    if order.session_id:
        clicked = (sessions or {}).get(order.session_id)
        own = [t for t in before if t.kind == "click" and t.session_id == order.session_id]
        if clicked is not None and clicked.at <= order.placed_at:
            own.append(clicked)
        if own:
            last = max(own, key=lambda t: (t.at, t.message_key))
            return made(last.message_key, last.journey, "click_session", last.at)
    # 3. Last touch within its window: clicks outrank opens, opens outrank deliveries.
    kinds: tuple[TouchKind, ...] = ("click", "open", "delivery")
    for kind in kinds:
        eligible = []
        for touch in before:
            if touch.kind != kind:
                continue
            window = rules.windows(order, touch.journey).of(kind)
            if window is not None and order.placed_at - touch.at <= window:
                eligible.append(touch)
        if eligible:
            last = max(eligible, key=lambda t: (t.at, t.message_key))
            return made(last.message_key, last.journey, kind, last.at)
    return None


def attribute_all(
    orders: Iterable[OrderToAttribute],
    touches: Iterable[Touch],
    vouchers: Mapping[str, IssuedVoucher],
    rules: AttributionRules,
) -> list[Attribution]:
    """Every order's attribution (orders that no message earned are left out)."""
    by_customer: dict[str, list[Touch]] = defaultdict(list)
    sessions: dict[str, Touch] = {}
    for touch in touches:
        by_customer[touch.customer_id].append(touch)
        if touch.kind == "click" and touch.session_id:
            sessions[touch.session_id] = touch
    found = []
    for order in orders:
        mine = by_customer.get(order.customer_id, ())
        result = attribute(order, mine, vouchers, rules, sessions)
        if result is not None:
            found.append(result)
    return found
