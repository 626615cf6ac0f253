"""The send activity: claim the ledger row, decide by policy, render, send once, record."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, assert_never
from urllib.parse import quote

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.services import Services
from trouw import metrics
from trouw.attributes import declared_attributes
from trouw.consent import ConsentState, current_consent, suppress
from trouw.context import build_context, recommended_products
from trouw.contracts import SEND_MESSAGE, SendMessageInput, SendMessageResult
from trouw.control import HELD, JOURNEY_PAUSED, hold_decision, journey_pause
from trouw.db.engine import session_scope
from trouw.db.models import Customer, JourneyControl, Message, Voucher
from trouw.hosted import keep_copy, view_link
from trouw.journey.hydrate import hydrate
from trouw.journey.model import stricter
from trouw.locales import region_of
from trouw.logs import log_context
from trouw.loyalty.vouchers import note_message
from trouw.measure.tracking import LinkTracker, tracking_on
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
    DeliveryError,
    LookupAnswer,
    LookupQuery,
    LookupUnavailableError,
    OutgoingEmail,
    OutgoingSms,
    PermanentDeliveryError,
    ProviderConfigError,
    RateLimitedError,
    ReconcilingProvider,
    TransientDeliveryError,
)
from trouw.render import TemplateError
from trouw.tokens import TokenPayload, sign_token
from workflows.options import PROVIDER_CALL_MAX, SEND_LEASE_MARGIN, SEND_RECORD_MARGIN

FINAL_STATES = {"sent", "suppressed", "failed", "unknown"}
# How often a message whose outcome is unknown asks its provider again (at most).
RECONCILE_POLL = timedelta(seconds=60)


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
    if consent.pause is not None:
        suppressions.append(
            Suppression(channel="all", reason="operator_pause", at=consent.pause.at)
        )
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


def template_links(
    services: Services, input: SendMessageInput, *, order_name: str | None = None
) -> dict[str, str]:
    """Links for the templates; the webshop's pages get the shop's own order name, never ours."""
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
    services: Services,
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
        attributes=declared_attributes(services.settings),
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
    context["links"] = template_links(services, input, order_name=order_name)
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


@dataclass(frozen=True)
class Reconcile:
    """A message whose last attempt's outcome is unknown: ask the provider before anything."""

    query: LookupQuery
    answer_by: datetime  # wall clock: when the category rule decides without an answer


ReconcileAction = Literal["accepted", "resend", "wait", "give_up"]


def reconcile_verdict(
    answer: LookupAnswer | None, *, now: datetime, answer_by: datetime, resend: bool
) -> ReconcileAction:
    """What to do about an unknown outcome, given the provider's answer (None: none came).

    The provider has it: accepted, never resent. The provider is sure it does not: it was not
    accepted, so resending makes no duplicate, whatever the category. No sure answer yet: wait
    until `answer_by`; then the category's resend setting decides (at least once, or at most
    once with the outcome recorded as unknown).
    """
    if answer is not None and answer.found:
        return "accepted"
    if answer is not None and answer.settled:
        return "resend"
    if now < answer_by:
        return "wait"
    return "resend" if resend else "give_up"


class MessagingActivities:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.policy = PolicyConfig.from_settings(services.settings)
        settings = services.settings
        for name, seconds in (
            ("TROUW_PROVIDER_TIMEOUT_SECONDS", settings.provider_timeout_seconds),
            ("TROUW_SMTP_TIMEOUT_SECONDS", settings.smtp_timeout_seconds),
        ):
            if seconds > PROVIDER_CALL_MAX.total_seconds():
                raise ProviderConfigError(
                    f"{name}={seconds:g} is above the send budget of "
                    f"{PROVIDER_CALL_MAX.total_seconds():g} s (workflows/options.py): a call "
                    "must end before its ledger lease does"
                )

    @activity.defn(name=SEND_MESSAGE)
    async def send_message(self, input: SendMessageInput) -> SendMessageResult:
        with log_context(
            customer=input.customer_id,
            journey=input.journey,
            message_key=input.message_key,
            workflow_id=input.workflow_id,
        ):
            return await self._send_message(input)

    async def _send_message(self, input: SendMessageInput) -> SendMessageResult:
        input = at_this_attempt(input)
        input = self._with_template_category(input)
        prepared = await asyncio.to_thread(self._prepare, input)
        if isinstance(prepared, SendMessageResult):
            return prepared
        if isinstance(prepared, Reconcile):
            return await self._reconcile(input, prepared)
        return await self._deliver(input, *prepared)

    def _with_template_category(self, input: SendMessageInput) -> SendMessageInput:
        """Templates own their category: a run of an older journey version that sends a
        template as a weaker category is judged by the template's own."""
        try:
            declared = self.services.templates.category(input.channel, input.template)
        except TemplateError:
            return input  # an unknown template fails when it is rendered, with its reason
        category = stricter(input.category, declared)
        if category == input.category:
            return input
        return input.model_copy(update={"category": category})

    # --- phase 1: claim, decide, render (one transaction) -------------------------------------
    def _prepare(
        self, input: SendMessageInput
    ) -> SendMessageResult | Reconcile | tuple[OutgoingEmail | OutgoingSms, datetime]:
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
                # The attempt ended without recording an answer (its worker was lost).
                self._mark_unknown(message, input, "the attempt ended without an answer")
            if message.state == "reconciling":
                if message.status is not None:
                    return self._accepted(message, input, f"the provider reported {message.status}")
                customer = session.get(Customer, input.customer_id) or Customer(
                    id=input.customer_id
                )
                return self._reconcile_request(message, customer)
            customer = session.get(Customer, input.customer_id) or Customer(id=input.customer_id)
            consent = current_consent(session, input.customer_id)
            pause = journey_pause(session, input.journey)
            if pause is not None:
                return self._hold(session, message, pause, consent, input)
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
                _count(session, input, "suppressed", decision.reason)
                return _result(message)
            if decision.action == "defer":
                _count(session, input, "deferred", decision.reason)
                return _result(message, until=decision.until)
            try:
                outgoing = self._render(session, message, customer, input, consent)
            except TemplateError as exc:
                message.state = "failed"
                message.error = str(exc)
                _push_status(message, "failed", input.now, str(exc))
                _count(session, input, "failed", None)
                session.commit()
                raise ApplicationError(
                    str(exc), type="TemplateRenderError", non_retryable=True
                ) from None
            message.state = "in_flight"
            message.attempts += 1
            # The lease says until when this attempt may still be sending (wall-clock time);
            # the call itself must end SEND_RECORD_MARGIN before it.
            started = datetime.now(UTC)
            lease_until = started + self._call_budget(input.channel) + SEND_LEASE_MARGIN
            message.status_history = [
                *(message.status_history or []),
                {
                    "status": "sending",
                    "at": input.now.isoformat(),
                    "detail": None,
                    "started": started.isoformat(),
                    "lease_until": lease_until.isoformat(),
                },
            ]
            return outgoing, lease_until

    def _hold(
        self,
        session: Session,
        message: Message,
        pause: JourneyControl,
        consent: ConsentState,
        input: SendMessageInput,
    ) -> SendMessageResult:
        """The journey is paused: hold the message (deferred) or, past the hold limit, drop it."""
        settings = self.services.settings
        first = _last_entry(message, HELD)
        held_since = input.now
        if first is not None and datetime.fromisoformat(first["at"]) >= pause.at:
            held_since = datetime.fromisoformat(first["at"])
        decision = hold_decision(
            pause=pause,
            held_since=held_since,
            now=input.now,
            limit=timedelta(hours=settings.journey_hold_hours),
            recheck=timedelta(seconds=settings.journey_hold_recheck_seconds),
        )
        if held_since == input.now:
            _push_status(message, HELD, input.now, decision.text)
        if (
            decision.action == "defer"
            and message.decision == "defer"
            and message.reason == (JOURNEY_PAUSED)
        ):
            return _result(message, until=decision.until)  # still held: one history entry
        _record_decision(message, decision, consent, input.now)
        if decision.action == "suppress":
            message.state = "suppressed"
            _count(session, input, "suppressed", decision.reason)
            return _result(message)
        _count(session, input, "deferred", decision.reason)
        metrics.on_commit(session, metrics.CONTROL_ACTIONS.labels(action="hold").inc)
        return _result(message, until=decision.until)

    def _call_budget(self, channel: str) -> timedelta:
        """The longest one provider call of this channel may take (workflows/options.py)."""
        settings = self.services.settings
        timeout = settings.provider_timeout_seconds
        if channel == "email" and settings.email_provider == "smtp":
            timeout = settings.smtp_timeout_seconds
        return min(timedelta(seconds=timeout), PROVIDER_CALL_MAX)

    def _render(
        self,
        session: Session,
        message: Message,
        customer: Customer,
        input: SendMessageInput,
        consent: ConsentState,
    ) -> OutgoingEmail | OutgoingSms:
        context = template_context(self.services, session, input, consent)
        shown = context.get("voucher")
        if isinstance(shown, dict) and shown.get("code"):
            # The message that carries a code: an order redeeming it is attributed to it.
            note_message(session, str(shown["code"]), message.message_key)
        store = self.services.templates
        if input.channel == "email":
            email = store.render_email(input.template, customer.locale, context)
            tracker = self._tracker(session, input, context)
            if tracker is not None:
                email = replace(email, html=tracker.html(email.html), text=tracker.text(email.text))
            keep_copy(
                session,
                self.services.settings,
                message_key=input.message_key,
                customer_id=input.customer_id,
                html=email.html,
                now=input.now,
            )
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
        tracker = self._tracker(session, input, context)
        if tracker is not None:
            sms = replace(sms, text=tracker.text(sms.text))
        message.locale = sms.locale
        message.subject = sms.text
        return OutgoingSms(
            message_key=input.message_key,
            to=customer.phone or "",
            body=sms.text,
            category=input.category,
            journey=input.journey,
        )

    def _tracker(
        self, session: Session, input: SendMessageInput, context: dict[str, Any]
    ) -> LinkTracker | None:
        settings = self.services.settings
        on = tracking_on(
            session,
            settings,
            journey=input.journey,
            customer_id=input.customer_id,
            channel=input.channel,
        )
        if not on:
            return None
        return LinkTracker(
            session, settings, message_key=input.message_key, links=context["links"], now=input.now
        )

    # --- unknown outcomes: ask the provider, then the category rule ---------------------------
    def _mark_unknown(self, message: Message, input: SendMessageInput, detail: str) -> None:
        """The attempt is over and the provider may have the message: wait for an answer."""
        provider = self.services.provider(input.channel)
        wait = getattr(provider, "answer_within_seconds", 0.0)
        if not isinstance(provider, ReconcilingProvider):
            wait = 0.0  # nobody to ask: the category rule decides now
        answer_by = datetime.now(UTC) + timedelta(seconds=wait)
        message.state = "reconciling"
        message.status_history = [
            *(message.status_history or []),
            {
                "status": "outcome_unknown",
                "at": input.now.isoformat(),
                "detail": detail,
                "answer_by": answer_by.isoformat(),
            },
        ]

    def _reconcile_request(self, message: Message, customer: Customer) -> Reconcile:
        sending = _last_entry(message, "sending") or {}
        unknown = _last_entry(message, "outcome_unknown") or {}
        since = sending.get("started") or sending.get("lease_until") or unknown.get("at")
        to = (customer.email if message.channel == "email" else customer.phone) or ""
        return Reconcile(
            query=LookupQuery(
                message_key=message.message_key,
                to=to,
                since=datetime.fromisoformat(since) if since else datetime.now(UTC),
                body=message.subject if message.channel == "sms" else None,
            ),
            answer_by=datetime.fromisoformat(unknown["answer_by"])
            if unknown.get("answer_by")
            else datetime.now(UTC),
        )

    async def _reconcile(self, input: SendMessageInput, pending: Reconcile) -> SendMessageResult:
        """Ask the provider (outside any transaction: no row lock is held over the network)."""
        provider = self.services.provider(input.channel)
        answer: LookupAnswer | None = None
        problem = None
        if isinstance(provider, ReconcilingProvider) and datetime.now(UTC) < pending.answer_by:
            try:
                answer = await provider.lookup(pending.query)
            except LookupUnavailableError as exc:
                problem = str(exc)
        return await asyncio.to_thread(self._settle, input, answer, problem)

    def _settle(
        self, input: SendMessageInput, answer: LookupAnswer | None, problem: str | None
    ) -> SendMessageResult:
        with session_scope(self.services.engine) as session:
            message = session.exec(
                select(Message).where(Message.message_key == input.message_key).with_for_update()
            ).one()
            if message.state != "reconciling":
                return _result(message)  # another attempt settled it meanwhile
            if message.status is not None:  # a webhook arrived while we asked
                return self._accepted(message, input, f"the provider reported {message.status}")
            unknown = _last_entry(message, "outcome_unknown") or {}
            answer_by = datetime.fromisoformat(unknown.get("answer_by") or input.now.isoformat())
            now = datetime.now(UTC)
            verdict = reconcile_verdict(
                answer, now=now, answer_by=answer_by, resend=self._resends(message.category)
            )
            heard = answer.detail if answer is not None else (problem or "no answer")
            match verdict:
                case "accepted":
                    assert answer is not None
                    message.provider_id = message.provider_id or answer.provider_id
                    return self._accepted(message, input, heard)
                case "resend":
                    why = (
                        "the provider does not have it: it was not accepted"
                        if answer is not None and answer.settled
                        else f"no answer by the deadline; a {message.category} message is resent"
                    )
                    message.state = "claimed"
                    _push_status(message, "resending", input.now, f"{why} ({heard})")
                    session.commit()
                    raise ApplicationError(
                        f"resending after an unknown outcome: {why}",
                        type="ResendAfterUnknownOutcome",
                        next_retry_delay=timedelta(seconds=1),
                    )
                case "wait":
                    session.rollback()  # nothing learnt: the row stays as it was
                    delay = min(RECONCILE_POLL, answer_by - now)
                    if answer is not None and answer.settles_at is not None:
                        delay = min(delay, answer.settles_at - now)
                    raise ApplicationError(
                        f"outcome unknown, waiting for the provider ({heard})",
                        type="OutcomeUnknownError",
                        next_retry_delay=max(delay, timedelta(seconds=1)),
                    )
                case "give_up":
                    message.state = "unknown"
                    message.reason = "unknown_outcome_not_resent"
                    message.reason_text = (
                        f"the provider may have sent it; a {message.category} message is not "
                        f"resent ({heard})"
                    )
                    _push_status(message, "unknown", input.now, message.reason_text)
                    _count(session, input, "unknown", message.reason)
                    return _result(message)
                case _:
                    assert_never(verdict)

    def _accepted(self, message: Message, input: SendMessageInput, heard: str) -> SendMessageResult:
        message.state = "sent"
        message.sent_at = message.sent_at or input.now
        _push_status(message, "reconciled", input.now, f"outcome was unknown; {heard}: not resent")
        return _result(message)

    def _resends(self, category: str) -> bool:
        settings = self.services.settings
        return {
            "transactional": settings.resend_unknown_transactional,
            "service": settings.resend_unknown_service,
            "promotional": settings.resend_unknown_promotional,
        }[category]

    # --- phase 2: the provider call, outside any transaction ------------------------------
    async def _deliver(
        self, input: SendMessageInput, outgoing: OutgoingEmail | OutgoingSms, lease_until: datetime
    ) -> SendMessageResult:
        provider = self.services.provider(input.channel)
        settings = self.services.settings
        name = settings.email_provider if input.channel == "email" else settings.sms_provider
        # The call ends (connection closed) before the lease does, whatever happened since the
        # claim: a later attempt can never meet this one still talking to the provider.
        left = (lease_until - SEND_RECORD_MARGIN - datetime.now(UTC)).total_seconds()
        deadline = time.monotonic() + left
        called = time.monotonic()
        try:
            try:
                if isinstance(outgoing, OutgoingEmail):
                    result = await provider.send_email(outgoing, deadline=deadline)
                else:
                    result = await provider.send_sms(outgoing, deadline=deadline)
            except DeliveryError as failure:
                metrics.PROVIDER_ERRORS.labels(
                    provider=name, channel=input.channel, kind=_error_kind(failure)
                ).inc()
                raise
            finally:
                metrics.PROVIDER_SECONDS.labels(provider=name, channel=input.channel).observe(
                    time.monotonic() - called
                )
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
            # Reconciling: the next attempt asks the provider before anything is sent again.
            await asyncio.to_thread(self._unknown, input, str(exc))
            raise ApplicationError(
                str(exc), type="AmbiguousDeliveryError", next_retry_delay=timedelta(seconds=1)
            ) from None
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
            _count(session, input, "sent", None)
            return _result(message)

    def _unknown(self, input: SendMessageInput, detail: str) -> None:
        """This attempt is over (no lease left) but the provider may have sent the message."""
        with session_scope(self.services.engine) as session:
            message = session.exec(
                select(Message).where(Message.message_key == input.message_key)
            ).one()
            message.error = detail
            self._mark_unknown(message, input, detail)
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
            _count(session, input, "failed", None)
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


def _error_kind(error: Exception) -> str:
    match error:
        case RateLimitedError():
            return "rate_limited"
        case TransientDeliveryError():
            return "transient"
        case AmbiguousDeliveryError():
            return "ambiguous"
        case _:
            return "permanent"


def _count(session: Session, input: SendMessageInput, outcome: str, reason: str | None) -> None:
    """A message's decision in the metrics, once its transaction commits."""

    def count() -> None:
        metrics.SENDS.labels(channel=input.channel, category=input.category, outcome=outcome).inc()
        if outcome == "suppressed":
            metrics.SUPPRESSIONS.labels(channel=input.channel, reason=reason or "none").inc()
        elif outcome == "deferred":
            metrics.DEFERRALS.labels(channel=input.channel, reason=reason or "none").inc()

    metrics.on_commit(session, count)


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


def _last_entry(message: Message, status: str) -> dict[str, Any] | None:
    entries: list[dict[str, Any]] = message.status_history or []
    return next((entry for entry in reversed(entries) if entry.get("status") == status), None)


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
