"""Webshop webhooks (Shopify, WooCommerce): verify the HMAC, pick the shop's mapping, ingest."""

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
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import CallbackEvent
from trouw.domain.ingest import IngestError
from trouw.ways_in.api.errors import error_response, error_responses
from trouw.ways_in.api.events import StoredEvent, deliver_new, store_event
from trouw.ways_in.api.state import ApiState, api_state
from trouw.ways_in.webshops import WebhookPayloadError, Webshop, webshop

log = logging.getLogger("trouw.api.webshops")
# No API key: the shop's HMAC is the credential (401 when it does not verify).
router = APIRouter(
    prefix="/v1/webhooks", tags=["webhooks"], responses=error_responses(400, 401, 413, 422, 503)
)

_WEBHOOK_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
        "description": "The shop's own payload, signed; see docs/api.md.",
    }
}


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


def _ignored(shop: Webshop, topic: str, delivery_id: str | None, reason: str) -> WebhookOutcome:
    # docs/api.md promises this line: a verified webhook that changes nothing says why.
    log.info("%s webhook %s (%s) ignored: %s", shop.NAME, delivery_id or "-", topic, reason)
    return WebhookOutcome("ignored", reason=reason)


def process_webhook(
    engine: Engine, shop: Webshop, topic: str, payload: Any, delivery_id: str | None
) -> WebhookOutcome:
    """Map a verified webhook to events and store each once; the delivery id is remembered last.

    Events carry ids from the shop's business identity (order, refund), so a webhook delivered
    twice, or two topics reporting the same delivery, still give one effect each. The delivery id
    (X-Shopify-Webhook-Id) only short-cuts a repeat before any mapping work.
    """
    if _seen(engine, delivery_id):
        log.info("%s webhook %s (%s) already handled", shop.NAME, delivery_id, topic)
        return WebhookOutcome("duplicate")
    if not isinstance(payload, Mapping):
        return _ignored(shop, topic, delivery_id, "payload is not a JSON object")
    try:
        with session_scope(engine) as session:
            mapped = shop.map_webhook(session, topic, payload)
    except (WebhookPayloadError, ValidationError) as exc:
        log.error("%s webhook %s (%s) cannot be mapped: %s", shop.NAME, delivery_id, topic, exc)
        return WebhookOutcome("ignored", reason=str(exc).splitlines()[0])
    for note in mapped.notes:
        log.warning("%s webhook %s (%s): %s", shop.NAME, delivery_id or "-", topic, note)
    stored = []
    for event in mapped.events:
        try:
            stored.append(store_event(engine, event))
        except IngestError as exc:
            log.error("%s event %s refused: %s", shop.NAME, event.id, exc)
            return WebhookOutcome("ignored", stored, reason=str(exc))
    _remember(engine, delivery_id, shop.NAME)
    reason = "; ".join(mapped.ignored) or None
    if not mapped.events:
        return _ignored(shop, topic, delivery_id, reason or f"nothing to do for {topic}")
    if reason:
        log.info("%s webhook %s (%s) partly ignored: %s", shop.NAME, delivery_id, topic, reason)
    return WebhookOutcome("accepted", stored, reason=reason)


async def _receive(request: Request, state: ApiState, shop: Webshop) -> JSONResponse:
    body = await request.body()
    secret = state.setting(shop.SECRET_SETTING)
    if not verify_hmac_base64(secret, body, request.headers.get(shop.SIGNATURE_HEADER)):
        if not secret:
            log.warning("%s webhook refused: %s is not set", shop.NAME, shop.SECRET_SETTING)
        return error_response(401, "invalid signature")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return error_response(400, "body is not JSON")
    topic = request.headers.get(shop.TOPIC_HEADER, "")
    header = request.headers.get(shop.DELIVERY_HEADER) if shop.DELIVERY_HEADER else None
    delivery = f"{shop.NAME}:{header[:150]}" if header else None
    outcome = await asyncio.to_thread(process_webhook, state.engine, shop, topic, payload, delivery)
    await deliver_new(state, outcome.events)
    # Always 200 once verified: a payload we cannot map will not map better on a retry, and
    # shops disable webhooks that keep failing. The log says what was ignored and why.
    return JSONResponse(status_code=200, content=outcome.body())


class WebhookAnswer(BaseModel):
    """A verified webhook's answer: always 200, saying what it did (see docs/api.md)."""

    status: Literal["accepted", "ignored", "duplicate", "ping"]
    events: list[str] = []
    reason: str | None = None


_WEBHOOK_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"model": WebhookAnswer, "description": "Verified; the body says what was done."}
}


@router.post("/shopify", openapi_extra=_WEBHOOK_BODY_DOC, responses=_WEBHOOK_ANSWER)
async def shopify_webhook(request: Request, state: ApiState = Depends(api_state)) -> JSONResponse:
    """Shopify order webhooks, verified by X-Shopify-Hmac-Sha256 (no API key: the HMAC is the auth)."""
    return await _receive(request, state, webshop("shopify"))


_WOO_PING = re.compile(rb"webhook_id=\d+")


@router.post("/woocommerce", openapi_extra=_WEBHOOK_BODY_DOC, responses=_WEBHOOK_ANSWER)
async def woocommerce_webhook(
    request: Request, state: ApiState = Depends(api_state)
) -> JSONResponse:
    """WooCommerce order webhooks, verified by X-WC-Webhook-Signature."""
    shop = webshop("woocommerce")
    if shop.SIGNATURE_HEADER not in request.headers and _WOO_PING.fullmatch(await request.body()):
        # WooCommerce pings a new webhook unsigned and refuses to save it unless we answer 2xx.
        # The ping carries nothing and changes nothing.
        return JSONResponse(status_code=200, content={"status": "ping"})
    return await _receive(request, state, shop)
