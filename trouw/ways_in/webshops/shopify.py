"""Shopify order webhooks (orders/create, orders/fulfilled, fulfillments/*, refunds/create)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

from sqlmodel import Session

from trouw.domain.measure.links import CLICK_PARAM
from trouw.language.vocabulary import Channel
from trouw.ways_in.webshops.mapping import (
    Identity,
    Mapped,
    ShopOrder,
    click_in_url,
    click_session,
    currency,
    follow_up,
    id_part,
    known_order,
    line,
    mapping,
    money,
    purchase_event,
    text,
    when,
)

NAME = "shopify"
SECRET_SETTING = "shopify_webhook_secret"
SIGNATURE_HEADER = "x-shopify-hmac-sha256"
TOPIC_HEADER = "x-shopify-topic"
# Shopify keeps X-Shopify-Webhook-Id across retries of one delivery: a cheap repeat check.
DELIVERY_HEADER: str | None = "x-shopify-webhook-id"
# A fulfilment in any other state has not left the shop (pending, open) or never will.
_SHIPPED = ("success",)


def _presentment(value: Any) -> tuple[Decimal | None, str | None]:
    """The amount and currency the customer saw, from a Shopify *_set field (MoneyBag)."""
    bag = mapping(mapping(value).get("presentment_money"))
    return money(bag.get("amount")), currency(bag.get("currency_code"))


def _order(order: Mapping[str, Any]) -> ShopOrder:
    # Plain amounts are in the shop's currency; *_set fields also carry the customer's own
    # (presentment) currency, which is what their confirmation must show.
    total, shown_in = _presentment(order.get("total_price_set"))
    use_presentment = total is not None and shown_in is not None
    lines = []
    for item in order.get("line_items") or []:
        if not isinstance(item, Mapping):
            continue
        price = _presentment(item.get("price_set"))[0] if use_presentment else None
        mapped = line(item, unit_price=price if price is not None else money(item.get("price")))
        if mapped is not None:
            lines.append(mapped)
    return ShopOrder(
        key=id_part(order.get("id")),
        name=text(order.get("name"), 64),
        currency=shown_in if use_presentment else currency(order.get("currency")),
        total=total if use_presentment else money(order.get("total_price")),
        lines=lines,
        at=when(order.get("created_at")),
        session_id=_click(order),
    )


def _click(order: Mapping[str, Any]) -> str | None:
    """The tracked click behind the order: a cart attribute `trouw_click` (note_attributes,
    set by the theme from the landing URL), else the landing URL's own `trouw_click`."""
    for attribute in order.get("note_attributes") or []:
        if isinstance(attribute, Mapping) and attribute.get("name") == CLICK_PARAM:
            found = click_session(attribute.get("value"))
            if found:
                return found
    return click_in_url(order.get("landing_site"))


def _identity(order: Mapping[str, Any]) -> Identity:
    customer = mapping(order.get("customer"))
    billing = mapping(order.get("billing_address"))
    shipping = mapping(order.get("shipping_address"))
    default = mapping(customer.get("default_address"))
    opt_in: dict[Channel, bool] = {}
    for channel, key in (("email", "email_marketing_consent"), ("sms", "sms_marketing_consent")):
        state = mapping(customer.get(key)).get("state")
        if state in ("subscribed", "unsubscribed"):
            opt_in[channel] = state == "subscribed"  # type: ignore[index]
    return Identity(
        external_id=str(customer["id"]) if customer.get("id") else None,
        email=customer.get("email") or order.get("email") or order.get("contact_email"),
        phone=(
            customer.get("phone")
            or order.get("phone")
            or billing.get("phone")
            or shipping.get("phone")
            or default.get("phone")
        ),
        country=billing.get("country_code")
        or shipping.get("country_code")
        or default.get("country_code"),
        first_name=text(customer.get("first_name") or billing.get("first_name"), 100),
        last_name=text(customer.get("last_name") or billing.get("last_name"), 100),
        locale=order.get("customer_locale") or customer.get("locale"),
        opt_in=opt_in,
    )


Shape = Literal["order", "fulfillment", "refund"]
# The body each topic carries: a signed body re-sent under another topic (a fulfilment as a
# refund) must not mark an order returned or delivered.
_TOPIC_SHAPES: dict[str, Shape] = {
    "orders/create": "order",
    "orders/fulfilled": "order",
    "fulfillments/create": "fulfillment",
    "fulfillments/update": "fulfillment",
    "refunds/create": "refund",
}
_A: dict[Shape, str] = {"order": "an order", "fulfillment": "a fulfillment", "refund": "a refund"}


def body_shape(payload: Mapping[str, Any]) -> Shape | None:
    """What a Shopify webhook body is, by the keys only that resource has."""
    if "order_id" in payload:
        if "refund_line_items" in payload:
            return "refund"
        return "fulfillment" if "status" in payload else None
    if "line_items" in payload and "refund_line_items" not in payload:
        return "order"
    return None


def map_webhook(session: Session, topic: str, payload: Mapping[str, Any]) -> Mapped:
    """Our events for one Shopify webhook, and why anything was left out."""
    expected = _TOPIC_SHAPES.get(topic)
    shape = body_shape(payload)
    if expected is not None and shape != expected:
        found = _A[shape] if shape else "not a Shopify order, fulfillment or refund"
        return Mapped.nothing(f"topic {topic!r} carries {_A[expected]}, but the body is {found}")
    if topic == "orders/create":
        result = Mapped()
        order = _order(payload)
        result.events.append(purchase_event(session, NAME, order, _identity(payload), result.notes))
        return result
    if topic == "orders/fulfilled":
        return _delivered(session, payload.get("id"), when(payload.get("updated_at")))
    if topic in ("fulfillments/create", "fulfillments/update"):
        status, shipment = payload.get("status"), payload.get("shipment_status")
        if topic == "fulfillments/update" and shipment != "delivered":
            return Mapped.nothing(f"fulfillment shipment_status {shipment!r} is not delivered")
        if topic == "fulfillments/create" and status not in _SHIPPED:
            return Mapped.nothing(f"fulfillment {payload.get('id')} is {status!r}, not shipped")
        at = when(payload.get("updated_at") or payload.get("created_at"))
        return _delivered(session, payload.get("order_id"), at)
    if topic == "refunds/create":
        refunded = known_order(session, NAME, payload.get("order_id"))
        if refunded is None:
            return Mapped.nothing(_unknown(payload.get("order_id"), "refund"))
        event_id = f"{NAME}:refund:{id_part(payload.get('id'))}"
        at = when(payload.get("created_at"))
        return Mapped(
            [
                follow_up(
                    NAME,
                    "returned",
                    event_id,
                    customer=refunded.customer_id,
                    order=refunded.id,
                    at=at,
                )
            ]
        )
    return Mapped.nothing(f"topic {topic!r} means nothing to Trouw")


def _delivered(session: Session, order_key: Any, at: Any) -> Mapped:
    # One delivered event per order, whichever of the topics reports it first.
    order = known_order(session, NAME, order_key)
    if order is None:
        return Mapped.nothing(_unknown(order_key, "fulfilment"))
    event_id = f"{NAME}:delivered:{id_part(order_key)}"
    return Mapped(
        [follow_up(NAME, "delivered", event_id, customer=order.customer_id, order=order.id, at=at)]
    )


def _unknown(order_key: Any, what: str) -> str:
    return f"{what} of unknown order {NAME}:{id_part(order_key)} (its orders/create never came)"
