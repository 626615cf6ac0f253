"""The provider callback routes: each provider's own module parses and plans; here they are
verified, applied once (a dedupe marker per provider event) and handed to the workflows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from trouw.domain.consent import add_suppression, address_hash, record_consent
from trouw.domain.customers import match_customer
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import CallbackEvent, Customer, Message, Suppression
from trouw.domain.ingest import IngestError
from trouw.domain.measure.engagement import engagement_kind, engagement_row
from trouw.providers.callback_effects import CallbackPayloadError, Effect, advance_status
from trouw.providers.sendgrid import callbacks as sendgrid
from trouw.providers.sendgrid.callbacks import (
    parse_sendgrid_events,
    plan_sendgrid,
    verify_sendgrid_signature,
)
from trouw.providers.twilio.callbacks import (
    help_text,
    inbound_keyword,
    parse_twilio_status,
    plan_inbound,
    plan_twilio_status,
    public_url_for,
    verify_twilio_signature,
)
from trouw.ways_in.api.errors import error_response, error_responses
from trouw.ways_in.api.events import StoredEvent, deliver_new, store_event
from trouw.ways_in.api.state import ApiState, api_state

log = logging.getLogger("trouw.api.callbacks")
# No API key: the provider's signature is the credential (401 when it does not verify).
router = APIRouter(
    prefix="/v1/callbacks",
    tags=["provider callbacks"],
    responses=error_responses(400, 401, 413, 422, 503),
)

_RAW_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
        },
        "description": "The provider's own signed payload; see docs/api.md.",
    }
}
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
_ATTEMPTS = 3


def _unauthorized() -> JSONResponse:
    # No detail on why: a prober learns nothing about keys, clocks or URLs.
    return error_response(401, "invalid signature")


class SendGridReceived(BaseModel):
    """How many events SendGrid's batch held, and how many of them were repeats."""

    received: int
    duplicates: int


def suppress_address(
    session: Session,
    *,
    address: str,
    channel: str,
    reason: str,
    at: datetime,
    source: str,
    customer_id: str | None = None,
) -> None:
    """Suppress an address (known customer or not); one row per address, channel and reason."""
    add_suppression(
        session,
        key=address_hash(address),
        customer_id=customer_id,
        channel=channel,
        reason=reason,
        at=at,
        source=source,
    )


def _new_markers(session: Session, effects: Sequence[Effect]) -> list[Effect]:
    markers = [e.marker for e in effects if e.marker]
    seen = set(
        session.exec(
            select(CallbackEvent.event_id).where(col(CallbackEvent.event_id).in_(markers))
        ).all()
        if markers
        else ()
    )
    fresh, in_batch = [], set()
    for effect in effects:
        if effect.marker and (effect.marker in seen or effect.marker in in_batch):
            continue
        if effect.marker:
            in_batch.add(effect.marker)
        fresh.append(effect)
    return fresh


def _history_time(entry: Mapping[str, Any], now: datetime) -> datetime:
    """When the provider says the event happened; when it came in if it does not say."""
    try:
        at = datetime.fromisoformat(str(entry.get("at")))
    except ValueError:
        return now
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _write(session: Session, effect: Effect, provider: str, now: datetime) -> None:
    if effect.marker:
        session.add(CallbackEvent(event_id=effect.marker, provider=provider, received_at=now))
    if effect.message_id is not None and effect.history is not None:
        message = session.get(Message, effect.message_id)
        if message is not None:
            if effect.status:
                try:
                    message.status = advance_status(message.status, effect.status)
                except ValueError:  # a status this code does not rank: keep the newer knowledge
                    message.status = effect.status
            message.status_history = [*(message.status_history or []), effect.history]
            session.add(message)
            kind = engagement_kind(effect.status)
            if kind is not None and effect.marker:
                # In the same transaction as the marker: each provider event is recorded once.
                session.add(
                    engagement_row(
                        message,
                        kind,
                        key=effect.marker,
                        at=_history_time(effect.history, now),
                        source=provider,
                        link=effect.history.get("url"),
                    )
                )
    if effect.suppress is not None:
        address, channel, reason, customer_id = effect.suppress
        suppress_address(
            session,
            address=address,
            channel=channel,
            reason=reason,
            at=now,
            source=provider,
            customer_id=customer_id,
        )
    if effect.mark_invalid is not None:
        customer = session.get(Customer, effect.mark_invalid[0])
        if customer is not None:
            setattr(customer, f"{effect.mark_invalid[1]}_invalid", True)
            session.add(customer)
    for customer_id, channel, scope, granted in effect.consents:
        record_consent(
            session,
            customer_id=customer_id,
            channel=channel,
            scope=scope,
            granted=granted,
            at=now,
            source="sms" if provider == "twilio" else provider,
            wording_text="SMS keyword reply" if provider == "twilio" else None,
        )
    if effect.lift_sms_stop:
        key = address_hash(effect.lift_sms_stop)
        for row in session.exec(
            select(Suppression).where(
                Suppression.address_hash == key, Suppression.reason == "sms_stop"
            )
        ).all():
            session.delete(row)


def apply_effects(
    engine: Engine,
    plan: Callable[[Session], list[Effect]],
    *,
    provider: str,
    now: datetime | None = None,
) -> tuple[list[StoredEvent], int]:
    """Apply provider events once: plan, store their events, then write the rest with markers.

    Order matters for a crash in between: events are idempotent by id, so a provider retry
    stores nothing twice and still writes the markers, status and consent records it missed.
    Returns the stored events and how many provider events were repeats.
    """
    now = now or datetime.now(UTC)
    with session_scope(engine) as session:
        effects = plan(session)
        fresh = _new_markers(session, effects)
    stored = []
    for effect in fresh:
        if effect.event is None:
            continue
        try:
            stored.append(store_event(engine, effect.event, now=now))
        except IngestError as exc:  # an unknown customer, say: the suppression still applies
            log.warning("%s callback event %s not ingested: %s", provider, effect.event.id, exc)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with session_scope(engine) as session:
                for effect in _new_markers(session, fresh):
                    _write(session, effect, provider, now)
            break
        except IntegrityError:
            # A concurrent delivery of the same events wrote some markers first: skip those.
            if attempt == _ATTEMPTS:
                raise
    return stored, len(effects) - len(fresh)


# --- SendGrid -------------------------------------------------------------------------------


@router.post(
    "/sendgrid",
    openapi_extra=_RAW_BODY_DOC,
    responses={200: {"model": SendGridReceived, "description": "Applied, each event once."}},
)
async def sendgrid_events(request: Request, state: ApiState = Depends(api_state)) -> JSONResponse:
    """SendGrid's signed Event Webhook: statuses, bounces, spam reports, unsubscribes."""
    body = await request.body()
    key = state.settings.sendgrid_webhook_public_key or ""
    signature = request.headers.get(sendgrid.SIGNATURE_HEADER, "")
    timestamp = request.headers.get(sendgrid.TIMESTAMP_HEADER, "")
    if not verify_sendgrid_signature(key, body, signature, timestamp):
        if not key:
            log.warning("SendGrid callback refused: sendgrid_webhook_public_key is not set")
        return _unauthorized()
    try:
        events = parse_sendgrid_events(body)
    except CallbackPayloadError as exc:
        return error_response(400, str(exc))
    stored, repeats = await asyncio.to_thread(
        apply_effects, state.engine, lambda s: plan_sendgrid(s, events), provider="sendgrid"
    )
    await deliver_new(state, stored)
    return JSONResponse(status_code=200, content={"received": len(events), "duplicates": repeats})


# --- Twilio ---------------------------------------------------------------------------------


async def _twilio_params(request: Request, state: ApiState) -> dict[str, str] | None:
    """The form parameters of a request Twilio signed, or None when the signature is wrong."""
    body = await request.body()
    try:
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return None
    signature = request.headers.get("x-twilio-signature", "")
    token = state.settings.twilio_auth_token or ""
    forwarded = (request.headers.get("x-forwarded-proto"), request.headers.get("x-forwarded-host"))
    # The configured public URL first (it cannot be spoofed), then what the proxy says: a
    # forged header can only make us check a signature against another URL, never skip it.
    urls = dict.fromkeys(
        [
            public_url_for(str(request.url), *forwarded, state.settings.public_url),
            public_url_for(str(request.url), *forwarded, None),
        ]
    )
    if any(verify_twilio_signature(token, url, params, signature) for url in urls):
        return params
    if not token:
        log.warning("Twilio callback refused: twilio_auth_token is not set")
    return None


@router.post(
    "/twilio/status",
    openapi_extra=_RAW_BODY_DOC,
    status_code=204,
    response_class=Response,
    responses={204: {"description": "Recorded (or a repeat: recorded before)."}},
)
async def twilio_status(request: Request, state: ApiState = Depends(api_state)) -> Response:
    """Twilio's message status callback (the URL carries ?mk=<message key>)."""
    params = await _twilio_params(request, state)
    if params is None:
        return _unauthorized()
    try:
        status = parse_twilio_status(params)
    except CallbackPayloadError as exc:
        return error_response(400, str(exc))
    message_key = request.query_params.get("mk")
    idempotency = request.headers.get("i-twilio-idempotency-token")
    stored, _repeats = await asyncio.to_thread(
        apply_effects,
        state.engine,
        lambda s: plan_twilio_status(s, status, message_key, idempotency),
        provider="twilio",
    )
    await deliver_new(state, stored)
    return Response(status_code=204)


@router.post(
    "/twilio/inbound",
    openapi_extra=_RAW_BODY_DOC,
    response_class=Response,
    responses={
        200: {
            "description": "TwiML: empty, or the HELP text as a reply.",
            "content": {"text/xml": {"schema": {"type": "string"}}},
        }
    },
)
async def twilio_inbound(request: Request, state: ApiState = Depends(api_state)) -> Response:
    """Inbound SMS: STOP and its Dutch/French variants, START, HELP (answered with TwiML)."""
    params = await _twilio_params(request, state)
    if params is None:
        return _unauthorized()
    keyword = inbound_keyword(params)
    reply = _EMPTY_TWIML
    if keyword in ("stop", "start"):
        stored, _repeats = await asyncio.to_thread(
            apply_effects,
            state.engine,
            lambda s: plan_inbound(s, params, keyword or ""),
            provider="twilio",
        )
        await deliver_new(state, stored)
    elif keyword == "help":
        locale = await asyncio.to_thread(_locale_of, state.engine, params.get("From") or "")
        text = help_text(locale, shop=state.settings.shop_name, url=state.settings.public_url)
        reply = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Response><Message>{escape(text)}</Message></Response>"
        )
    return Response(content=reply, media_type="text/xml")


def _locale_of(engine: Engine, phone: str) -> str | None:
    with session_scope(engine) as session:
        customer = match_customer(session, customer_id=None, email=None, phone=phone)
        return customer.locale if customer is not None else None
