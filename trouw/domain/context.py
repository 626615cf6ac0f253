"""Builds what journeys and templates know about a customer: profile, consent, history, order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from trouw.domain.consent import ConsentState, current_consent
from trouw.domain.db.models import (
    Customer,
    CustomerInsightRecord,
    InsightRefresh,
    Order,
    OrderLine,
    Product,
)
from trouw.domain.loyalty.ledger import loyalty_dict
from trouw.language.attributes import Declared, context_attributes
from trouw.language.vocabulary import CHANNELS


def product_dict(product: Product | None, sku: str, name: str | None = None) -> dict[str, Any]:
    if product is None:
        return {
            "sku": sku,
            "name": name or sku,
            "category": None,
            "price": None,
            "consumption_days": None,
            "care": None,
            "warranty_months": None,
        }
    return {
        "sku": product.sku,
        "name": product.name,
        "category": product.category,
        "price": product.price,
        "consumption_days": product.consumption_days,
        "care": product.care,
        "warranty_months": product.warranty_months,
    }


def customer_dict(
    customer: Customer, opt_in: dict[str, bool], attributes: Declared | None = None
) -> dict[str, Any]:
    """The customer as journeys and templates see it; with the declarations, every declared
    attribute is there (None when unset) and nothing else."""
    stored = dict(customer.attributes or {})
    return {
        "id": customer.id,
        "first_name": customer.first_name or "",
        "last_name": customer.last_name or "",
        "email": customer.email,
        "phone": customer.phone,
        "locale": customer.locale,
        "timezone": customer.timezone,
        "birthday": customer.birthday,
        "preferred_channel": customer.preferred_channel,
        "attributes": stored
        if attributes is None
        else context_attributes(stored, attributes, personal=True),
        "tags": list(customer.tags or []),
        "opt_in": opt_in,
    }


# Built once: a statement built per call cost more than running it (docs/performance.md,
# "Simulation speed"); the values come as bound parameters.
_ORDER_LINES = (
    sa.select(
        col(OrderLine.sku),
        col(OrderLine.name),
        col(OrderLine.qty),
        col(OrderLine.unit_price),
        Product,
    )
    .join(Product, col(Product.sku) == col(OrderLine.sku), isouter=True)
    .where(col(OrderLine.order_id) == bindparam("order_id"))
    .order_by(col(OrderLine.line_no))
)


def order_dict(session: Session, order: Order) -> dict[str, Any]:
    lines = session.execute(_ORDER_LINES, {"order_id": order.id}).all()
    line_dicts = [
        {
            "sku": line.sku,
            "name": line.name,
            "qty": line.qty,
            "unit_price": line.unit_price,
            "line_total": line.unit_price * line.qty,
            "product": product_dict(line.Product, line.sku, line.name),
        }
        for line in lines
    ]
    return {
        "id": order.id,
        # What the customer calls the order; our id ("shopify:450789469") is never shown.
        "name": order.name or order.id,
        "channel": order.channel,
        "store": order.store,
        "placed_at": order.placed_at,
        "delivered_at": order.delivered_at,
        "returned_at": order.returned_at,
        "total": order.total,
        "currency": order.currency,
        "lines": line_dicts,
    }


def rfm_segment(*, orders: int, days_since_last: int | None, total_spent: Decimal) -> str:
    """A plain RFM segment a marketer can branch on (see journeys/README.md for the thresholds)."""
    if orders == 0 or days_since_last is None:
        return "prospect"
    if days_since_last > 365:
        return "lapsed"
    if days_since_last > 180:
        return "at_risk"
    if orders >= 5 and days_since_last <= 90 and total_spent >= Decimal("250"):
        return "champion"
    if orders >= 3:
        return "loyal"
    if orders == 1:
        return "new"
    return "regular"


_ORDERS_BY_NOW = (
    select(col(Order.id), col(Order.placed_at), col(Order.total), col(Order.returned_at))
    .where(col(Order.customer_id) == bindparam("customer_id"))
    .where(col(Order.placed_at) <= bindparam("now"))
    .order_by(col(Order.placed_at))
)
# A line's sku, and its product's category when the sku is in the catalogue.
_BOUGHT = (
    select(col(OrderLine.sku), col(Product.category))
    .join(Product, col(Product.sku) == col(OrderLine.sku), isouter=True)
    .where(col(OrderLine.order_id).in_(bindparam("order_ids", expanding=True)))
)


def history_dict(session: Session, customer_id: str, now: datetime) -> dict[str, Any]:
    orders = session.execute(_ORDERS_BY_NOW, {"customer_id": customer_id, "now": now}).all()
    kept = [order for order in orders if order.returned_at is None]
    bought = (
        session.execute(_BOUGHT, {"order_ids": [order.id for order in kept]}).all() if kept else []
    )
    skus = sorted({row.sku for row in bought})
    categories = sorted({row.category for row in bought if row.category is not None})
    total = sum((order.total for order in kept), Decimal("0"))
    last = kept[-1].placed_at if kept else None
    days_since = (now - last).days if last else None
    return {
        "orders": len(kept),
        "first_order_at": kept[0].placed_at if kept else None,
        "last_order_at": last,
        "days_since_last_order": days_since,
        "total_spent": total,
        "average_basket": (total / len(kept)).quantize(Decimal("0.01")) if kept else Decimal("0"),
        "skus": skus,
        "categories": categories,
        "rfm": rfm_segment(orders=len(kept), days_since_last=days_since, total_spent=total),
    }


# What `insight.*` holds (trouw/domain/checks/scope.py describes it; docs/insight.md explains it).
INSIGHT_FIELDS = (
    "segment",
    "segment_since",
    "r",
    "f",
    "m",
    "orders",
    "first_order_at",
    "last_order_at",
    "recency_days",
    "frequency",
    "monetary_total",
    "monetary_avg",
    "p_active",
    "p_order",
    "expected_orders",
    "expected_next_order_at",
    "expected_value",
    "horizon_days",
    "weekday",
    "hour",
    "season",
    "sale_buyer",
    "favourite_category",
    "breadth",
    "model",
    "as_of",
)


def insight_dict(session: Session, customer_id: str) -> dict[str, Any]:
    """The customer's insight from the last refresh; every field None before one scored them."""
    row = session.get(CustomerInsightRecord, customer_id)
    return {name: getattr(row, name) if row is not None else None for name in INSIGHT_FIELDS}


def recommended_products(
    session: Session, customer_id: str, *, exclude: Sequence[str], top: int = 3
) -> list[dict[str, Any]]:
    """The customer's recommendations from the last refresh (the best sellers for a customer
    it did not know), without what is in `exclude` (the order that triggered the message)."""
    row = session.get(CustomerInsightRecord, customer_id)
    if row is not None:
        ranked = list(row.recommendations or [])
    else:
        latest = session.exec(
            select(InsightRefresh)
            .where(InsightRefresh.status == "done")
            .order_by(col(InsightRefresh.finished_at).desc())
        ).first()
        ranked = list(latest.popular or []) if latest is not None else []
    skipped = set(exclude)
    wanted = [sku for sku in ranked if sku not in skipped]
    if not wanted:
        return []
    products = {
        p.sku: p for p in session.exec(select(Product).where(col(Product.sku).in_(wanted))).all()
    }
    # A sku no longer in the catalogue is not offered: there is nothing to link to.
    return [product_dict(products[sku], sku) for sku in wanted if sku in products][:top]


def build_context(
    session: Session,
    *,
    customer_id: str,
    order_id: str | None,
    skus: Sequence[str],
    now: datetime,
    attributes: Declared | None = None,
    consent: ConsentState | None = None,
) -> dict[str, Any]:
    """The context for expressions and templates, as plain data (dates stay dates).

    With the declared `attributes`, customer.attributes holds each of them, personal ones too:
    this full copy stays in activities (for_history makes the one that may travel).
    `consent`: the customer's consent as the caller read it in this session (the send
    activity has it for its policy decision), so it is not read twice.
    """
    customer = session.get(Customer, customer_id)
    if customer is None:
        customer = Customer(id=customer_id)
    if consent is None:
        consent = current_consent(session, customer_id)
    opt_in: dict[str, bool] = {channel: consent.promotional(channel) for channel in CHANNELS}
    context: dict[str, Any] = {
        "customer": customer_dict(customer, opt_in, attributes),
        "history": history_dict(session, customer_id, now),
        "insight": insight_dict(session, customer_id),
        "loyalty": loyalty_dict(session, customer_id, now=now),
        "order": None,
        "products": [],
    }
    order = session.get(Order, order_id) if order_id else None
    if order is not None:
        context["order"] = order_dict(session, order)
        context["products"] = [line["product"] for line in context["order"]["lines"]]
    if skus:
        context["product"] = next(
            (p for p in context["products"] if p["sku"] == skus[0]),
            product_dict(session.get(Product, skus[0]), skus[0]),
        )
    return context


# Workflow inputs and results are stored in Temporal's history, which erasure cannot reach
# before the namespace's retention ends: what travels there says whether, not what.
_HISTORY_SAFE_CUSTOMER = (
    "id",
    "locale",
    "timezone",
    "birthday",
    "preferred_channel",
    "tags",
    "opt_in",
)


def _customer_for_history(value: Any, attributes: Declared | None) -> dict[str, Any]:
    customer = dict(value or {})
    redacted = {key: customer.get(key) for key in _HISTORY_SAFE_CUSTOMER}
    redacted["email"] = bool(customer.get("email"))
    redacted["phone"] = bool(customer.get("phone"))
    redacted["first_name"] = ""
    redacted["last_name"] = ""
    stored = customer.get("attributes") or {}
    redacted["attributes"] = (
        {} if attributes is None else context_attributes(stored, attributes, personal=False)
    )
    return redacted


def _loyalty_for_history(value: Any, _attributes: Declared | None) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    # A referral code is a personal link: it stays out of the history like an address.
    return {**value, "referral_code": None, "referral_link": None}


# The one home of the context keys for_history rewrites (any other key travels as it is), each
# with its rewrite (None: leave the key as it is). The per-event conversion of
# activities.journey_runs.SharedContext converts a run that sets one of these keys whole.
HISTORY_REWRITES: dict[str, Callable[[Any, Declared | None], dict[str, Any] | None]] = {
    "customer": _customer_for_history,
    "loyalty": _loyalty_for_history,
}


def for_history(context: dict[str, Any], attributes: Declared | None = None) -> dict[str, Any]:
    """The context as it may travel through Temporal: no names, addresses, personal attributes.

    Conditions still work: `customer.email` and `customer.phone` are true or false; declared
    attributes that are not personal keep their value, personal ones are left out (a condition
    on one is evaluated in an activity), and without declarations there are none. Templates
    never see this copy; the send activity rebuilds the full context from the database.
    """
    safe = dict(context)
    for key, rewrite in HISTORY_REWRITES.items():
        rewritten = rewrite(context.get(key), attributes)
        if rewritten is not None:
            safe[key] = rewritten
    return safe
