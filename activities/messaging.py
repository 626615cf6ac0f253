"""The send activity: claim the ledger row, decide by policy, render, send once, record."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.services import Services
from trouw.callbacks import MESSAGE_STATUSES
from trouw.consent import ConsentState, current_consent, suppress
from trouw.context import build_context
from trouw.contracts import SendMessageInput, SendMessageResult
from trouw.db.engine import session_scope
from trouw.db.models import Customer, Message, Voucher
from trouw.journey.hydrate import hydrate
from trouw.locales import region_of
from trouw.policy import (
    Decision,
    MessageFacts,
    PolicyConfig,
    RecentMessage,
    RecipientState,
    Suppression,
    decide,
)
from trouw.providers.base import (
    AmbiguousDeliveryError,
    OutgoingEmail,
    OutgoingSms,
    PermanentDeliveryError,
    RateLimitedError,
    TransientDeliveryError,
)
from trouw.render import TemplateError
from trouw.tokens import TokenPayload, sign_token

# Statuses only a provider callback sets (processed and later): the provider has the message.
PROVIDER_ACCEPTED = frozenset(MESSAGE_STATUSES[MESSAGE_STATUSES.index("processed") :])
FINAL_STATES = {"sent", "suppressed", "failed", "unknown"}
# How long past the provider timeout an in_flight row still belongs to a live attempt (the
# rate limiter's wait comes after the mark). Only after that is its outcome unknown.
LEASE_MARGIN = timedelta(seconds=10)


def recipient_state(customer: Customer, consent: ConsentState) -> RecipientState:
    suppressions = [
        Suppression(channel=s.channel, reason=s.reason, at=s.at)  # type: ignore[arg-type]
        for s in consent.suppressions
    ]
    if customer.email_invalid:
        suppressions.append(
            Suppression(channel="email", reason="invalid_address", at=customer.updated_at)
        )
    if customer.phone_invalid:
        suppressions.append(
            Suppression(channel="sms", reason="invalid_address", at=customer.updated_at)
        )
    if customer.erased:
        suppressions.append(Suppression(channel="all", reason="erased", at=customer.updated_at))
    return RecipientState(
        email=customer.email,
        phone=customer.phone,
        timezone=customer.timezone,
        country=region_of(customer.locale),
        promotional_opt_in={ch: consent.promotional(ch) for ch in ("email", "sms")},
        service_objection={ch: consent.service_objection(ch) for ch in ("email", "sms")},
        suppressions=suppressions,
    )


def recent_messages(
    session: Session, customer_id: str, now: datetime, *, days: int
) -> list[RecentMessage]:
    rows = session.exec(
        select(Message).where(
            Message.customer_id == customer_id,
            Message.state == "sent",
            col(Message.sent_at) >= now - timedelta(days=days),
            col(Message.sent_at) <= now,
        )
    ).all()
    return [
        RecentMessage(at=row.sent_at, channel=row.channel, category=row.category)  # type: ignore[arg-type]
        for row in rows
        if row.sent_at is not None
    ]


def template_links(services: Services, input: SendMessageInput) -> dict[str, str]:
    settings = services.settings
    base = services.settings.public_url.rstrip("/")
    keys = services.settings.active_signing_keys
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
        "view_in_browser": f"{base}/outbox/view/{quote(input.message_key, safe='')}",
        # The webshop's own pages: Trouw serves no review or shop pages itself.
        "review": settings.review_url.format(
            order=quote(input.order_id or "", safe=""), customer=quote(input.customer_id, safe="")
        ),
        "reorder": settings.product_url.format(
            sku=quote(input.skus[0] if input.skus else "", safe="")
        ),
        "shop": settings.shop_url,
    }


def template_context(
    services: Services, session: Session, input: SendMessageInput
) -> dict[str, Any]:
    context = build_context(
        session,
        customer_id=input.customer_id,
        order_id=input.order_id,
        skus=input.skus,
        now=input.now,
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
    context.setdefault("recommendations", [])
    context["links"] = template_links(services, input)
    context["shop"] = {
        "name": services.settings.shop_name,
        "url": services.settings.shop_url,
        "address": services.settings.shop_address,
    }
    return context


def at_this_attempt(input: SendMessageInput) -> SendMessageInput:
    """The input with `now` moved to this attempt's start.

    A retry can run hours after the workflow scheduled the send (rate limits back off up to an
    hour); quiet hours, caps and the sent time must see the retry's time, not the first one.
    Both times are the server's, so the simulator's clock offset carries over.
    """
    info = activity.info()
    late = info.current_attempt_scheduled_time - info.scheduled_time
    if late <= timedelta(0):
        return input
    return input.model_copy(update={"now": input.now + late})


class MessagingActivities:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.policy = PolicyConfig.from_settings(services.settings)

    @activity.defn(name="send_message")
    async def send_message(self, input: SendMessageInput) -> SendMessageResult:
        input = at_this_attempt(input)
        prepared = await asyncio.to_thread(self._prepare, input)
        if isinstance(prepared, SendMessageResult):
            return prepared
        return await self._deliver(input, prepared)

    # --- phase 1: claim, decide, render (one transaction) -------------------------------------
    def _prepare(self, input: SendMessageInput) -> SendMessageResult | OutgoingEmail | OutgoingSms:
        with session_scope(self.services.engine) as session:
            # FOR UPDATE: two attempts at once (a timed-out one still running) take turns here.
            message = session.exec(
                select(Message).where(Message.message_key == input.message_key).with_for_update()
            ).first()
            if message is None:
                message = Message(
                    message_key=input.message_key,
                    customer_id=input.customer_id,
                    journey=input.journey,
                    journey_version=input.journey_version,
                    workflow_id=input.workflow_id,
                    step=input.step,
                    channel=input.channel,
                    category=input.category,
                    template=input.template,
                    created_at=input.now,
                )
                try:
                    with session.begin_nested():
                        session.add(message)
                except IntegrityError:
                    # Another attempt claimed the key a moment ago: its row decides.
                    message = session.exec(
                        select(Message)
                        .where(Message.message_key == input.message_key)
                        .with_for_update()
                    ).one()
            if message.state in FINAL_STATES:
                return _result(message)  # a retry or replay: never a second send
            if message.state == "in_flight":
                held = _lease_left(message)
                if held is not None:
                    raise ApplicationError(
                        "another attempt is sending this message now",
                        type="SendInProgressError",
                        next_retry_delay=held,
                    )
                return self._reconcile(session, message, input)
            customer = session.get(Customer, input.customer_id) or Customer(id=input.customer_id)
            consent = current_consent(session, input.customer_id)
            decision = decide(
                MessageFacts(
                    category=input.category,
                    channel=input.channel,
                    journey=input.journey,
                    triggered_at=input.triggered_at,
                    service_cutoff_days=input.service_cutoff_days,
                    promotional_when_busy=input.promotional_when_busy,
                    defer_deadline=input.defer_deadline,
                ),
                recipient_state(customer, consent),
                recent_messages(
                    session,
                    input.customer_id,
                    input.now,
                    days=max(self.policy.promotional_cap_days, 2),
                ),
                input.now,
                self.policy,
            )
            _record_decision(message, decision, consent, input.now)
            if decision.action == "suppress":
                message.state = "suppressed"
                return _result(message)
            if decision.action == "defer":
                return _result(message, until=decision.until)
            try:
                outgoing = self._render(session, message, customer, input)
            except TemplateError as exc:
                message.state = "failed"
                message.error = str(exc)
                _push_status(message, "failed", input.now, str(exc))
                session.commit()
                raise ApplicationError(
                    str(exc), type="TemplateRenderError", non_retryable=True
                ) from None
            message.state = "in_flight"
            message.attempts += 1
            # The lease says until when this attempt may still be sending (wall-clock time).
            lease_until = datetime.now(UTC) + self._lease(input.channel)
            message.status_history = [
                *(message.status_history or []),
                {
                    "status": "sending",
                    "at": input.now.isoformat(),
                    "detail": None,
                    "lease_until": lease_until.isoformat(),
                },
            ]
            return outgoing

    def _lease(self, channel: str) -> timedelta:
        settings = self.services.settings
        timeout = settings.provider_timeout_seconds
        if channel == "email" and settings.email_provider == "smtp":
            timeout = settings.smtp_timeout_seconds
        return timedelta(seconds=timeout) + LEASE_MARGIN

    def _render(
        self, session: Session, message: Message, customer: Customer, input: SendMessageInput
    ) -> OutgoingEmail | OutgoingSms:
        context = template_context(self.services, session, input)
        store = self.services.templates
        if input.channel == "email":
            email = store.render_email(input.template, customer.locale, context)
            message.subject = email.subject
            message.locale = email.locale
            name = " ".join(filter(None, [customer.first_name, customer.last_name])) or None
            unsubscribe = (
                context["links"]["unsubscribe"] if input.category != "transactional" else None
            )
            return OutgoingEmail(
                message_key=input.message_key,
                to=customer.email or "",
                to_name=name,
                subject=email.subject,
                preheader=email.preheader,
                html=email.html,
                text=email.text,
                category=input.category,
                journey=input.journey,
                unsubscribe_url=unsubscribe,
                reply_to=self.services.settings.email_reply_to,
            )
        sms = store.render_sms(input.template, customer.locale, context)
        message.locale = sms.locale
        message.subject = sms.text
        return OutgoingSms(
            message_key=input.message_key,
            to=customer.phone or "",
            body=sms.text,
            category=input.category,
            journey=input.journey,
        )

    def _reconcile(
        self, session: Session, message: Message, input: SendMessageInput
    ) -> SendMessageResult:
        """The last attempt may have reached the provider: resend only what may be duplicated.

        First ask what the provider told us meanwhile: a delivery event for this message key
        (SendGrid's event webhook, Twilio's status callback) proves it was accepted.
        """
        if message.status in PROVIDER_ACCEPTED:
            message.state = "sent"
            message.sent_at = message.sent_at or input.now
            _push_status(
                message,
                "reconciled",
                input.now,
                f"outcome was unknown; the provider reported {message.status}: not resent",
            )
            return _result(message)
        settings = self.services.settings
        resend = {
            "transactional": settings.resend_unknown_transactional,
            "service": settings.resend_unknown_service,
            "promotional": settings.resend_unknown_promotional,
        }[message.category]
        if resend:
            message.state = "claimed"
            _push_status(
                message, "resending", input.now, "outcome unknown; resent (category allows it)"
            )
            session.commit()
            raise ApplicationError(
                "resending after an unknown outcome", type="ResendAfterUnknownOutcome"
            )
        message.state = "unknown"
        message.reason = "unknown_outcome_not_resent"
        message.reason_text = (
            f"the provider may have sent it; a {message.category} message is not resent"
        )
        _push_status(message, "unknown", input.now, message.reason_text)
        return _result(message)

    # --- phase 2: the provider call, outside any transaction ------------------------------
    async def _deliver(
        self, input: SendMessageInput, outgoing: OutgoingEmail | OutgoingSms
    ) -> SendMessageResult:
        provider = self.services.provider(input.channel)
        try:
            if isinstance(outgoing, OutgoingEmail):
                result = await provider.send_email(outgoing)
            else:
                result = await provider.send_sms(outgoing)
        except RateLimitedError as exc:
            await asyncio.to_thread(self._release, input, str(exc))
            raise ApplicationError(
                str(exc),
                type="RateLimitedError",
                next_retry_delay=timedelta(seconds=max(exc.retry_after, 1)),
            ) from None
        except TransientDeliveryError as exc:
            await asyncio.to_thread(self._release, input, str(exc))
            raise ApplicationError(str(exc), type="TransientDeliveryError") from None
        except AmbiguousDeliveryError as exc:
            # Left in_flight: the next attempt reconciles before anything is sent again.
            await asyncio.to_thread(self._unknown, input, str(exc))
            raise ApplicationError(str(exc), type="AmbiguousDeliveryError") from None
        except PermanentDeliveryError as exc:
            await asyncio.to_thread(self._fail, input, exc)
            raise ApplicationError(
                str(exc), type="PermanentDeliveryError", non_retryable=True
            ) from None
        return await asyncio.to_thread(self._sent, input, result.provider, result.provider_id)

    def _sent(
        self, input: SendMessageInput, provider: str, provider_id: str | None
    ) -> SendMessageResult:
        with session_scope(self.services.engine) as session:
            message = session.exec(
                select(Message).where(Message.message_key == input.message_key)
            ).one()
            message.state = "sent"
            message.provider = provider
            message.provider_id = provider_id
            message.sent_at = input.now
            message.status = "sent"
            _push_status(message, "sent", input.now, provider)
            session.add(message)
            return _result(message)

    def _unknown(self, input: SendMessageInput, detail: str) -> None:
        """This attempt is over (no lease left) but the provider may have sent the message."""
        with session_scope(self.services.engine) as session:
            message = session.exec(
                select(Message).where(Message.message_key == input.message_key)
            ).one()
            message.error = detail
            _push_status(message, "outcome_unknown", input.now, detail)
            session.add(message)

    def _release(self, input: SendMessageInput, detail: str) -> None:
        with session_scope(self.services.engine) as session:
            message = session.exec(
                select(Message).where(Message.message_key == input.message_key)
            ).one()
            message.state = "claimed"
            message.error = detail
            session.add(message)

    def _fail(self, input: SendMessageInput, exc: PermanentDeliveryError) -> None:
        with session_scope(self.services.engine) as session:
            message = session.exec(
                select(Message).where(Message.message_key == input.message_key)
            ).one()
            message.state = "failed"
            message.error = str(exc)
            _push_status(message, "failed", input.now, str(exc))
            session.add(message)
            customer = session.get(Customer, input.customer_id)
            if customer is None:
                return
            if exc.invalid_recipient:
                if input.channel == "email":
                    customer.email_invalid = True
                else:
                    customer.phone_invalid = True
                session.add(customer)
            if exc.opted_out:
                suppress(
                    session,
                    customer=customer,
                    channel="sms",
                    reason="sms_stop",
                    at=input.now,
                    source="provider",
                )


def _record_decision(
    message: Message, decision: Decision, consent: ConsentState, now: datetime
) -> None:
    message.decision = decision.action
    message.reason = decision.reason
    message.reason_text = decision.text
    message.consent_snapshot = consent.snapshot()
    message.decided_at = now
    label = decision.action if decision.action != "send" else "allowed"
    _push_status(message, label, now, decision.text)
    if decision.action == "defer":  # the reason code outlives the final decision that follows
        message.status_history[-1]["reason"] = decision.reason


def _lease_left(message: Message) -> timedelta | None:
    """How long the attempt that marked this row in_flight may still be running, if at all.

    That attempt's "sending" entry holds its lease; an "outcome_unknown" entry after it means
    the attempt ended (webhook entries may come in between). Rows marked before leases: none.
    """
    for entry in reversed(message.status_history or []):
        if entry.get("status") == "outcome_unknown":
            return None
        if entry.get("status") == "sending":
            if not entry.get("lease_until"):
                return None
            left = datetime.fromisoformat(entry["lease_until"]) - datetime.now(UTC)
            return left if left > timedelta(0) else None
    return None


def _push_status(message: Message, status: str, at: datetime, detail: str | None) -> None:
    message.status_history = [
        *(message.status_history or []),
        {"status": status, "at": at.isoformat(), "detail": detail},
    ]


def _result(message: Message, *, until: datetime | None = None) -> SendMessageResult:
    outcome = {
        "sent": "sent",
        "suppressed": "suppressed",
        "failed": "failed",
        "unknown": "suppressed",
    }.get(message.state, "deferred")
    return SendMessageResult(
        message_key=message.message_key,
        outcome=outcome,
        reason=message.reason,
        reason_text=message.reason_text,
        until=until,
    )
