"""WooCommerce order webhooks (order.created, order.updated): purchase, delivered, returned."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlmodel import Session

from trouw.domain.measure.links import CLICK_PARAM
from trouw.ways_in.webshops.mapping import (
    Identity,
    Mapped,
    ShopOrder,
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

NAME = "woocommerce"
SECRET_SETTING = "woocommerce_webhook_secret"
SIGNATURE_HEADER = "x-wc-webhook-signature"
TOPIC_HEADER = "x-wc-webhook-topic"
# WooCommerce makes a new delivery id per attempt: only business ids dedupe.
DELIVERY_HEADER: str | None = None
# Paid orders start journeys; pending, on-hold (awaiting payment), failed and cancelled do not.
_PAID = ("processing", "completed")
_ORDER_KEYS = ("id", "status", "line_items")


def _order(order: Mapping[str, Any]) -> ShopOrder:
    lines = []
    for item in order.get("line_items") or []:
        if isinstance(item, Mapping):
            mapped = line(item, unit_price=money(item.get("price")))
            if mapped is not None:
                lines.append(mapped)
    number = order.get("number")
    return ShopOrder(
        key=id_part(order.get("id")),
        name=text(number if number not in (None, "") else order.get("id"), 64),
        currency=currency(order.get("currency")),
        total=money(order.get("total")),
        lines=lines,
        at=when(order.get("date_paid_gmt"), naive_is_utc=True)
        or when(order.get("date_created_gmt"), naive_is_utc=True),
        session_id=_click(order),
    )


# Order meta a plugin or theme sets from the landing URL; the underscore hides it in wp-admin.
_CLICK_META = (f"_{CLICK_PARAM}", CLICK_PARAM)


def _click(order: Mapping[str, Any]) -> str | None:
    """The tracked click behind the order, from the order's meta_data (`_trouw_click`)."""
    for meta in order.get("meta_data") or []:
        if isinstance(meta, Mapping) and meta.get("key") in _CLICK_META:
            found = click_session(meta.get("value"))
            if found:
                return found
    return None


def _identity(order: Mapping[str, Any]) -> Identity:
    billing = mapping(order.get("billing"))
    shipping = mapping(order.get("shipping"))
    customer_id = order.get("customer_id")
    return Identity(
        external_id=str(customer_id) if customer_id not in (None, 0, "0", "") else None,
        email=billing.get("email"),
        phone=billing.get("phone") or shipping.get("phone"),
        country=billing.get("country") or shipping.get("country"),
        first_name=text(billing.get("first_name"), 100),
        last_name=text(billing.get("last_name"), 100),
    )


def map_webhook(session: Session, topic: str, payload: Mapping[str, Any]) -> Mapped:
    """Our events for one WooCommerce order webhook, and why anything was left out."""
    if topic not in ("order.created", "order.updated"):
        return Mapped.nothing(f"topic {topic!r} means nothing to Trouw")
    # Only an order body counts under an order topic (a product or coupon body has no lines).
    if missing := [key for key in _ORDER_KEYS if key not in payload]:
        return Mapped.nothing(
            f"topic {topic!r} carries an order, but the body has no {', '.join(missing)}"
        )
    status = payload.get("status")
    order_key = id_part(payload.get("id"))
    order_id = f"{NAME}:{order_key}"
    result = Mapped()
    if status in _PAID:
        order = _order(payload)
        result.events.append(purchase_event(session, NAME, order, _identity(payload), result.notes))
    known = known_order(session, NAME, order_key)
    customer = (
        known.customer_id if known else (result.events[0].customer if result.events else None)
    )
    refunds = [r for r in payload.get("refunds") or [] if isinstance(r, Mapping) and r.get("id")]
    refund_ids = [id_part(r["id"]) for r in refunds] or (["full"] if status == "refunded" else [])
    if customer is None:
        if refund_ids:
            result.ignored.append(f"refund of unknown order {order_id} (never paid in Trouw)")
        else:
            result.ignored.append(f"order {order_id} is {status!r}: only paid orders count")
        return result
    if status == "completed":
        # WooCommerce marks an order completed when it is shipped or picked up.
        at = when(payload.get("date_completed_gmt"), naive_is_utc=True)
        event_id = f"{NAME}:delivered:{order_key}"
        result.events.append(
            follow_up(NAME, "delivered", event_id, customer=customer, order=order_id, at=at)
        )
    for refund_id in refund_ids:
        at = when(payload.get("date_modified_gmt"), naive_is_utc=True)
        event_id = f"{NAME}:refund:{order_key}:{refund_id}"
        result.events.append(
            follow_up(NAME, "returned", event_id, customer=customer, order=order_id, at=at)
        )
    if not result.events:
        result.ignored.append(f"order {order_id} is {status!r}: nothing new for Trouw")
    return result
