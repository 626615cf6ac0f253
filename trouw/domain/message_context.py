"""What one message's template sees: the customer's context plus the send's extras and links."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from sqlmodel import Session

from trouw.domain.consent import ConsentState
from trouw.domain.context import build_context, recommended_products
from trouw.domain.db.models import Voucher
from trouw.domain.hosted import view_link
from trouw.domain.tokens import TokenPayload, sign_token
from trouw.language.attributes import declared_attributes
from trouw.language.contracts import SendMessageInput
from trouw.language.journey.plain import hydrate
from trouw.settings import Settings


def template_links(
    settings: Settings, input: SendMessageInput, *, order_name: str | None = None
) -> dict[str, str]:
    """Links for the templates; the webshop's pages get the shop's own order name, never ours."""
    base = settings.public_url.rstrip("/")
    keys = settings.active_signing_keys
    unsubscribe = sign_token(
        TokenPayload(
            customer_id=input.customer_id,
            channel=input.channel,
            category="all",
            message_key=input.message_key,
        ),
        keys,
    )
    preferences = sign_token(TokenPayload(customer_id=input.customer_id), keys)
    return {
        "unsubscribe": f"{base}/u/{unsubscribe}",
        "preferences": f"{base}/preferences/{preferences}",
        # The customer's loyalty page: the same customer-level token as the preferences.
        "loyalty": f"{base}/loyalty/{preferences}",
        "view_in_browser": view_link(settings, input.message_key, input.now),
        # The webshop's own pages: Trouw serves no review or shop pages itself.
        "review": settings.review_url.format(
            order=quote(order_name or input.order_id or "", safe=""),
            customer=quote(input.customer_id, safe=""),
        ),
        "reorder": settings.product_url.format(
            sku=quote(input.skus[0] if input.skus else "", safe="")
        ),
        "shop": settings.shop_url,
    }


def template_context(
    settings: Settings,
    session: Session,
    input: SendMessageInput,
    consent: ConsentState | None = None,
) -> dict[str, Any]:
    context = build_context(
        session,
        customer_id=input.customer_id,
        order_id=input.order_id,
        skus=input.skus,
        now=input.now,
        attributes=declared_attributes(settings),
        consent=consent,
    )
    extras = hydrate(input.vars)
    events = extras.pop("events", {}) or {}
    context["events"] = events
    for name, value in extras.items():
        context[name] = value
    trigger = context.get("trigger") or {}
    if "voucher" not in context and trigger.get("code"):
        row = session.get(Voucher, trigger["code"])
        if row is not None:
            context["voucher"] = {
                "code": row.code,
                "value": row.value,
                "currency": row.currency,
                "expires_at": row.expires_at,
            }
    voucher = context.get("voucher")
    if isinstance(voucher, dict) and "value" in voucher:
        voucher["value"] = Decimal(str(voucher["value"]))
    product = context.get("product")
    if product and product.get("consumption_days"):
        qty = next(
            (
                line["qty"]
                for line in (context.get("order") or {}).get("lines", [])
                if line["sku"] == product["sku"]
            ),
            1,
        )
        start = input.triggered_at
        context["refill"] = {
            "expected_empty_at": start + timedelta(days=product["consumption_days"] * qty)
        }
    if "recommendations" not in context:
        # Offers are promotional: a service mail shows them only to who opted in to promotions.
        opted_in = (context.get("customer") or {}).get("opt_in", {}).get(input.channel, False)
        allowed = input.category == "promotional" or bool(opted_in)
        in_order = [line["sku"] for line in (context.get("order") or {}).get("lines", [])]
        context["recommendations"] = (
            recommended_products(session, input.customer_id, exclude=[*in_order, *input.skus])
            if allowed
            else []
        )
    order_name = (context.get("order") or {}).get("name")
    context["links"] = template_links(settings, input, order_name=order_name)
    context["shop"] = {
        "name": settings.shop_name,
        "url": settings.shop_url,
        "address": settings.shop_address,
    }
    return context
