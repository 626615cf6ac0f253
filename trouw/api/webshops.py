"""Webshop webhooks (Shopify, WooCommerce): verify the HMAC, map orders to purchase events."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from trouw.api.customers import match_customer, normalise_email, normalise_phone
from trouw.api.events import StoredEvent, deliver_new, store_event
from trouw.api.state import ApiState, api_state
from trouw.consent import current_consent
from trouw.db.engine import session_scope
from trouw.db.models import CallbackEvent, Customer, Order
from trouw.ingest import CustomerIn, EventIn, IngestError, LineIn

log = logging.getLogger("trouw.api.webshops")
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

Shop = Literal["shopify", "woocommerce"]
_CENT = Decimal("0.01")
_ID_SAFE = re.compile(r"[^A-Za-z0-9._:@-]")
_LOCALES = {"nl": "nl-BE", "nl-be": "nl-BE", "nl-nl": "nl-NL", "fr": "fr-BE", "fr-be": "fr-BE"}
_WEBHOOK_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
        "description": "The shop's own payload, signed; see docs/api.md.",
    }
}


class WebhookPayloadError(ValueError):
    """A verified webhook whose payload cannot be mapped; the message says what is missing."""


# --- signatures ------------------------------------------------------------------------------


def hmac_sha256_base64(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, body)): what Shopify and WooCommerce both send."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify_hmac_base64(secret: str | None, body: bytes, signature: str | None) -> bool:
    """Constant-time check of a base64 HMAC-SHA256 over the raw body; False when unconfigured."""
    if not secret or not signature:
        return False
    expected = hmac_sha256_base64(secret, body).encode()
    return hmac.compare_digest(expected, signature.strip().encode("ascii", "replace"))


# --- mapping helpers ------------------------------------------------------------------------


def _id_part(value: Any) -> str:
    return _ID_SAFE.sub("-", str(value))[:40]


def _when(value: Any, *, naive_is_utc: bool = False) -> datetime | None:
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


def _money(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        amount = Decimal(str(value)).quantize(_CENT)
    except (InvalidOperation, ValueError):
        return None
    return amount if amount >= 0 and amount.is_finite() else None


def _text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())[:limit]
    return text or None


def _locale(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    lowered = value.strip().lower().replace("_", "-")
    if lowered.startswith("en"):
        return "en"
    return _LOCALES.get(lowered) or _LOCALES.get(lowered[:2])


@dataclass
class Identity:
    """Who placed an order, as the webshop knows them."""

    external_id: str | None
    email: str | None
    phone: str | None
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    opt_in: dict[Literal["email", "sms"], bool] = field(default_factory=dict)


def resolve_customer(
    session: Session, shop: Shop, identity: Identity, *, fallback_id: str
) -> tuple[str, CustomerIn | None]:
    """Our customer id for this identity, and the profile fields worth storing (None: nothing).

    A known customer keeps what the shop already had (the till and the webshop may disagree on a
    phone number); only missing fields are filled in. Unknown customers get `<shop>:<id>`.
    """
    candidate = f"{shop}:{_id_part(identity.external_id)}" if identity.external_id else None
    email, phone = normalise_email(identity.email), normalise_phone(identity.phone)
    found = match_customer(session, customer_id=candidate, email=email, phone=phone)
    customer_id = found.id if found is not None else _fresh_id(session, candidate or fallback_id)
    fields: dict[str, Any] = {
        "email": email,
        "phone": phone,
        "first_name": identity.first_name,
        "last_name": identity.last_name,
        "locale": identity.locale,
    }
    if found is not None:
        fields = {k: v for k, v in fields.items() if v is not None and getattr(found, k) is None}
    fields = {k: v for k, v in fields.items() if v is not None}
    opt_in = _consent_changes(session, found, identity.opt_in)
    if not fields and not opt_in and found is not None:
        return customer_id, None
    try:
        profile = CustomerIn(id=customer_id, opt_in=opt_in or None, **fields)
    except ValidationError:
        # A field the shop accepts and we do not (a name with a line break): keep the customer.
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
    session: Session, found: Customer | None, wanted: Mapping[Literal["email", "sms"], bool]
) -> dict[Literal["email", "sms"], bool]:
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


def _lines(items: Any, *, price_key: str) -> list[LineIn]:
    lines = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        qty = item.get("quantity")
        if not isinstance(qty, int) or isinstance(qty, bool) or not 0 < qty <= 10000:
            continue  # removed lines have quantity 0
        sku = _text(item.get("sku"), 64)
        if not sku:
            variant = item.get("variant_id") or item.get("variation_id") or item.get("product_id")
            sku = f"item-{_id_part(variant or item.get('id'))}"
        lines.append(
            LineIn(
                sku=sku,
                qty=qty,
                unit_price=_money(item.get(price_key)),
                name=_text(item.get("title") or item.get("name"), 200),
            )
        )
    return lines


def _order_event(
    session: Session, shop: Shop, order: Mapping[str, Any], identity: Identity, at: datetime | None
) -> EventIn:
    order_key = _id_part(order.get("id"))
    order_id = f"{shop}:{order_key}"
    customer_id, profile = resolve_customer(
        session, shop, identity, fallback_id=f"{shop}:order-{order_key}"
    )
    lines = _lines(order.get("line_items"), price_key="price")
    if not lines:
        raise WebhookPayloadError(f"{shop} order {order_key} has no line items")
    return EventIn(
        id=f"{shop}:order:{order_key}",
        type="purchase",
        customer=customer_id,
        at=at,
        order=order_id,
        channel="web",
        lines=lines,
        total=_money(order.get("total_price") if shop == "shopify" else order.get("total")),
        profile=profile,
        source=shop,
    )


def _follow_up(
    session: Session,
    shop: Shop,
    kind: Literal["delivered", "returned"],
    order_key: Any,
    event_id: str,
    at: datetime | None,
) -> EventIn | None:
    order = session.get(Order, f"{shop}:{_id_part(order_key)}")
    if order is None:
        return None
    return EventIn(
        id=event_id, type=kind, customer=order.customer_id, at=at, order=order.id, source=shop
    )


# --- Shopify --------------------------------------------------------------------------------


def _shopify_identity(order: Mapping[str, Any]) -> Identity:
    customer = order.get("customer") if isinstance(order.get("customer"), Mapping) else {}
    assert isinstance(customer, Mapping)
    opt_in: dict[Literal["email", "sms"], bool] = {}
    for channel, key in (("email", "email_marketing_consent"), ("sms", "sms_marketing_consent")):
        consent = customer.get(key)
        state = consent.get("state") if isinstance(consent, Mapping) else None
        if state in ("subscribed", "unsubscribed"):
            opt_in[channel] = state == "subscribed"  # type: ignore[index]
    return Identity(
        external_id=str(customer["id"]) if customer.get("id") else None,
        email=customer.get("email") or order.get("email") or order.get("contact_email"),
        phone=customer.get("phone") or order.get("phone"),
        first_name=_text(customer.get("first_name"), 100),
        last_name=_text(customer.get("last_name"), 100),
        locale=_locale(order.get("customer_locale") or customer.get("locale")),
        opt_in=opt_in,
    )


def shopify_events(session: Session, topic: str, payload: Mapping[str, Any]) -> list[EventIn]:
    """Our events for one Shopify webhook; an empty list when the topic means nothing to us."""
    if topic == "orders/create":
        at = _when(payload.get("created_at"))
        return [_order_event(session, "shopify", payload, _shopify_identity(payload), at)]
    delivered = None
    if topic == "orders/fulfilled":
        delivered = payload.get("id"), _when(payload.get("updated_at"))
    elif topic == "fulfillments/create" or (
        topic == "fulfillments/update" and payload.get("shipment_status") == "delivered"
    ):
        delivered = (
            payload.get("order_id"),
            _when(payload.get("updated_at") or payload.get("created_at")),
        )
    if delivered is not None:
        # One delivered event per order, whichever of the topics reports it first.
        order_key, at = delivered
        event = _follow_up(
            session,
            "shopify",
            "delivered",
            order_key,
            f"shopify:delivered:{_id_part(order_key)}",
            at,
        )
        return [event] if event else []
    if topic == "refunds/create":
        event = _follow_up(
            session,
            "shopify",
            "returned",
            payload.get("order_id"),
            f"shopify:refund:{_id_part(payload.get('id'))}",
            _when(payload.get("created_at")),
        )
        return [event] if event else []
    return []


# --- WooCommerce ----------------------------------------------------------------------------

# Paid orders start journeys; pending, on-hold (awaiting payment), failed and cancelled do not.
_WOO_PAID = ("processing", "completed")


def _woo_identity(order: Mapping[str, Any]) -> Identity:
    billing = order.get("billing") if isinstance(order.get("billing"), Mapping) else {}
    assert isinstance(billing, Mapping)
    customer_id = order.get("customer_id")
    return Identity(
        external_id=str(customer_id) if customer_id not in (None, 0, "0", "") else None,
        email=billing.get("email"),
        phone=billing.get("phone"),
        first_name=_text(billing.get("first_name"), 100),
        last_name=_text(billing.get("last_name"), 100),
    )


def woocommerce_events(session: Session, topic: str, payload: Mapping[str, Any]) -> list[EventIn]:
    """Our events for one WooCommerce order webhook: purchase, delivered, returned."""
    if topic not in ("order.created", "order.updated"):
        return []
    status = payload.get("status")
    order_key = _id_part(payload.get("id"))
    events: list[EventIn] = []
    if status in _WOO_PAID:
        at = _when(payload.get("date_paid_gmt"), naive_is_utc=True) or _when(
            payload.get("date_created_gmt"), naive_is_utc=True
        )
        events.append(_order_event(session, "woocommerce", payload, _woo_identity(payload), at))
    order = session.get(Order, f"woocommerce:{order_key}")
    customer = order.customer_id if order else (events[0].customer if events else None)
    if customer is None:
        return events
    if status == "completed":
        # WooCommerce marks an order completed when it is shipped or picked up.
        events.append(
            EventIn(
                id=f"woocommerce:delivered:{order_key}",
                type="delivered",
                customer=customer,
                at=_when(payload.get("date_completed_gmt"), naive_is_utc=True),
                order=f"woocommerce:{order_key}",
                source="woocommerce",
            )
        )
    refunds = [r for r in payload.get("refunds") or [] if isinstance(r, Mapping) and r.get("id")]
    refund_ids = [_id_part(r["id"]) for r in refunds] or (["full"] if status == "refunded" else [])
    for refund_id in refund_ids:
        events.append(
            EventIn(
                id=f"woocommerce:refund:{order_key}:{refund_id}",
                type="returned",
                customer=customer,
                at=_when(payload.get("date_modified_gmt"), naive_is_utc=True),
                order=f"woocommerce:{order_key}",
                source="woocommerce",
            )
        )
    return events


# --- processing -----------------------------------------------------------------------------


@dataclass
class WebhookOutcome:
    """What a webhook did: the events it stored (new or repeated), or why it was ignored."""

    status: Literal["accepted", "ignored", "duplicate"]
    events: list[StoredEvent] = field(default_factory=list)
    reason: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "events": [e.id for e in self.events]}
        if self.reason:
            body["reason"] = self.reason
        return body


def _seen(engine: Engine, delivery_id: str | None) -> bool:
    if not delivery_id:
        return False
    with session_scope(engine) as session:
        query = select(CallbackEvent).where(CallbackEvent.event_id == delivery_id)
        return session.exec(query).first() is not None


def _remember(engine: Engine, delivery_id: str | None, provider: str) -> None:
    if not delivery_id:
        return
    try:
        with session_scope(engine) as session:
            session.add(CallbackEvent(event_id=delivery_id, provider=provider))
    except IntegrityError:
        pass  # a concurrent delivery of the same webhook recorded it first


def process_webhook(
    engine: Engine, shop: Shop, topic: str, payload: Any, delivery_id: str | None
) -> WebhookOutcome:
    """Map a verified webhook to events and store each once; the delivery id is remembered last.

    Events carry ids from the shop's business identity (order, refund), so a webhook delivered
    twice, or two topics reporting the same delivery, still give one effect each. The delivery id
    (X-Shopify-Webhook-Id) only short-cuts a repeat before any mapping work.
    """
    if _seen(engine, delivery_id):
        return WebhookOutcome("duplicate")
    if not isinstance(payload, Mapping):
        return WebhookOutcome("ignored", reason="payload is not a JSON object")
    mapper = shopify_events if shop == "shopify" else woocommerce_events
    try:
        with session_scope(engine) as session:
            events = mapper(session, topic, payload)
    except (WebhookPayloadError, ValidationError) as exc:
        log.error("%s webhook %s (%s) cannot be mapped: %s", shop, delivery_id, topic, exc)
        return WebhookOutcome("ignored", reason=str(exc).splitlines()[0])
    stored = []
    for event in events:
        try:
            stored.append(store_event(engine, event))
        except IngestError as exc:
            log.error("%s event %s refused: %s", shop, event.id, exc)
            return WebhookOutcome("ignored", stored, reason=str(exc))
    _remember(engine, delivery_id, shop)
    if not events:
        return WebhookOutcome("ignored", reason=f"nothing to do for {topic}")
    return WebhookOutcome("accepted", stored)


async def _receive(
    request: Request, state: ApiState, shop: Shop, *, secret_setting: str, signature: str | None
) -> JSONResponse:
    body = await request.body()
    secret = state.setting(secret_setting)
    if not verify_hmac_base64(secret, body, signature):
        if not secret:
            log.warning("%s webhook refused: %s is not set", shop, secret_setting)
        return JSONResponse(status_code=401, content={"detail": "invalid signature"})
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return JSONResponse(status_code=400, content={"detail": "body is not JSON"})
    if shop == "shopify":
        topic = request.headers.get("x-shopify-topic", "")
        webhook_id = request.headers.get("x-shopify-webhook-id")
        delivery = f"shopify:{webhook_id[:150]}" if webhook_id else None
    else:
        topic = request.headers.get("x-wc-webhook-topic", "")
        delivery = None  # WooCommerce makes a new delivery id per attempt: business ids dedupe
    outcome = await asyncio.to_thread(process_webhook, state.engine, shop, topic, payload, delivery)
    await deliver_new(state, outcome.events)
    # Always 200 once verified: a payload we cannot map will not map better on a retry, and
    # shops disable webhooks that keep failing. The log says what was ignored and why.
    return JSONResponse(status_code=200, content=outcome.body())


@router.post("/shopify", openapi_extra=_WEBHOOK_BODY_DOC)
async def shopify_webhook(request: Request, state: ApiState = Depends(api_state)) -> JSONResponse:
    """Shopify order webhooks, verified by X-Shopify-Hmac-Sha256 (no API key: the HMAC is the auth)."""
    return await _receive(
        request,
        state,
        "shopify",
        secret_setting="shopify_webhook_secret",
        signature=request.headers.get("x-shopify-hmac-sha256"),
    )


_WOO_PING = re.compile(rb"webhook_id=\d+")


@router.post("/woocommerce", openapi_extra=_WEBHOOK_BODY_DOC)
async def woocommerce_webhook(
    request: Request, state: ApiState = Depends(api_state)
) -> JSONResponse:
    """WooCommerce order webhooks, verified by X-WC-Webhook-Signature."""
    signature = request.headers.get("x-wc-webhook-signature")
    if signature is None and _WOO_PING.fullmatch(await request.body()):
        # WooCommerce pings a new webhook unsigned and refuses to save it unless we answer 2xx.
        # The ping carries nothing and changes nothing.
        return JSONResponse(status_code=200, content={"status": "ping"})
    return await _receive(
        request,
        state,
        "woocommerce",
        secret_setting="woocommerce_webhook_secret",
        signature=signature,
    )
