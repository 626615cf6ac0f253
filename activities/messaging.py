"""The send activity: claim the ledger row, decide by policy, render, send once, record."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, assert_never

from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.services import Services
from trouw.domain.consent import ConsentState, current_consent
from trouw.domain.control import journey_pause
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Customer, Message
from trouw.domain.hosted import keep_copy
from trouw.domain.loyalty.vouchers import note_message
from trouw.domain.measure.tracking import LinkTracker, tracking_on
from trouw.domain.message_context import template_context
from trouw.domain.policy_inputs import recent_messages, recipient_state
from trouw.domain.render import TemplateError
from trouw.domain.send_ledger import InProgress, Lease, Reconcile, Resend, SendLedger, Wait
from trouw.language.contracts import (
    GIVE_UP_SEND,
    SEND_MESSAGE,
    GiveUpSendInput,
    SendMessageInput,
    SendMessageResult,
)
from trouw.language.policy import Decision, MessageFacts, PolicyConfig, decide
from trouw.language.vocabulary import stricter
from trouw.providers.base import (
    AmbiguousDeliveryError,
    DeliveryError,
    LookupAnswer,
    LookupUnavailableError,
    OutgoingEmail,
    OutgoingSms,
    PermanentDeliveryError,
    ProviderConfigError,
    RateLimitedError,
    ReconcilingProvider,
    TransientDeliveryError,
)
from trouw.stack import metrics
from trouw.stack.logs import log_context
from workflows.options import PROVIDER_CALL_MAX, SEND_LEASE_MARGIN, SEND_RECORD_MARGIN


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
        self.ledger = SendLedger(
            services.engine, services.settings, answer_within=self._answer_within
        )
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

    @activity.defn(name=GIVE_UP_SEND)
    async def give_up_send(self, input: GiveUpSendInput) -> SendMessageResult | None:
        """The workflow stopped retrying a send: its ledger row ends (trouw/domain/send_ledger.py)."""
        request = input.request
        with log_context(
            customer=request.customer_id,
            journey=request.journey,
            message_key=request.message_key,
            workflow_id=request.workflow_id,
        ):
            return await asyncio.to_thread(
                partial(self.ledger.give_up, ended_by=input.ended_by), request, input.reason
            )

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
    ) -> SendMessageResult | Reconcile | tuple[OutgoingEmail | OutgoingSms, Lease]:
        with session_scope(self.services.engine) as session:
            message = self.ledger.claim(session, input)
            earlier = self.ledger.earlier_attempt(session, message, input)
            if isinstance(earlier, InProgress):
                raise ApplicationError(
                    "another attempt is sending this message now",
                    type="SendInProgressError",
                    next_retry_delay=earlier.retry_in,
                )
            if earlier is not None:
                return earlier
            customer = session.get(Customer, input.customer_id) or Customer(id=input.customer_id)
            consent = current_consent(session, input.customer_id)
            pause = journey_pause(session, input.journey)
            if pause is not None:
                return self.ledger.hold(session, message, input, pause, consent)
            decided = self.ledger.decided(
                session, message, input, self._decide(session, customer, consent, input), consent
            )
            if decided is not None:
                return decided
            try:
                # The decision and the lease reach the row in one UPDATE at the commit: what
                # the render reads (the context, voucher, links, copy) is never the ledger row.
                with session.no_autoflush:
                    outgoing = self._render(session, message, customer, input, consent)
            except TemplateError as exc:
                self.ledger.failed(session, message, input, str(exc))
                session.commit()  # recorded, though the attempt raises
                raise ApplicationError(
                    str(exc), type="TemplateRenderError", non_retryable=True
                ) from None
            length = self._call_budget(input.channel) + SEND_LEASE_MARGIN
            return outgoing, self.ledger.lease(message, input, length=length)

    def _decide(
        self, session: Session, customer: Customer, consent: ConsentState, input: SendMessageInput
    ) -> Decision:
        return decide(
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
                session, input.customer_id, input.now, days=max(self.policy.promotional_cap_days, 2)
            ),
            input.now,
            self.policy,
        )

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
        context = template_context(self.services.settings, session, input, consent)
        shown = context.get("voucher")
        if isinstance(shown, dict) and shown.get("code"):
            # The message that carries a code: an order redeeming it is attributed to it.
            note_message(session, str(shown["code"]), message.message_key)
        store = self.services.templates
        if input.channel == "email":
            email = store.render_email(input.template, customer.locale, context)
            tracker = self._tracker(session, input, context, consent)
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
        tracker = self._tracker(session, input, context, consent)
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
        self,
        session: Session,
        input: SendMessageInput,
        context: dict[str, Any],
        consent: ConsentState,
    ) -> LinkTracker | None:
        settings = self.services.settings
        on = tracking_on(
            session,
            settings,
            journey=input.journey,
            customer_id=input.customer_id,
            channel=input.channel,
            consent=consent,
        )
        if not on:
            return None
        return LinkTracker(
            session, settings, message_key=input.message_key, links=context["links"], now=input.now
        )

    # --- unknown outcomes: ask the provider, then the category rule ---------------------------
    def _answer_within(self, channel: str) -> float:
        """How long the channel's provider may take to answer a lookup (0: it cannot)."""
        provider = self.services.provider(channel)
        if not isinstance(provider, ReconcilingProvider):
            return 0.0  # nobody to ask: the category rule decides now
        return float(getattr(provider, "answer_within_seconds", 0.0))

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
        settled = await asyncio.to_thread(self.ledger.settle, input, answer, problem)
        match settled:
            case SendMessageResult():
                return settled
            case Resend(why=why):
                raise ApplicationError(
                    f"resending after an unknown outcome: {why}",
                    type="ResendAfterUnknownOutcome",
                    next_retry_delay=timedelta(seconds=1),
                )
            case Wait(heard=heard, retry_in=retry_in):
                raise ApplicationError(
                    f"outcome unknown, waiting for the provider ({heard})",
                    type="OutcomeUnknownError",
                    next_retry_delay=retry_in,
                )
            case _:
                assert_never(settled)

    # --- phase 2: the provider call, outside any transaction ------------------------------
    async def _deliver(
        self, input: SendMessageInput, outgoing: OutgoingEmail | OutgoingSms, lease: Lease
    ) -> SendMessageResult:
        provider = self.services.provider(input.channel)
        settings = self.services.settings
        name = settings.email_provider if input.channel == "email" else settings.sms_provider
        # The call ends (connection closed) before the lease does, whatever happened since the
        # claim: a later attempt can never meet this one still talking to the provider.
        left = (lease.until - SEND_RECORD_MARGIN - datetime.now(UTC)).total_seconds()
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
            if not await asyncio.to_thread(self.ledger.release, input, lease, str(exc)):
                raise _lease_lost(exc) from None
            raise ApplicationError(
                str(exc),
                type="RateLimitedError",
                next_retry_delay=timedelta(seconds=max(exc.retry_after, 1)),
            ) from None
        except TransientDeliveryError as exc:
            if not await asyncio.to_thread(self.ledger.release, input, lease, str(exc)):
                raise _lease_lost(exc) from None
            raise ApplicationError(str(exc), type="TransientDeliveryError") from None
        except AmbiguousDeliveryError as exc:
            # Reconciling: the next attempt asks the provider before anything is sent again.
            if not await asyncio.to_thread(self.ledger.unknown, input, lease, str(exc)):
                raise _lease_lost(exc) from None
            raise ApplicationError(
                str(exc), type="AmbiguousDeliveryError", next_retry_delay=timedelta(seconds=1)
            ) from None
        except PermanentDeliveryError as exc:
            if not await asyncio.to_thread(self.ledger.fail, input, lease, exc):
                raise _lease_lost(exc) from None
            raise ApplicationError(
                str(exc), type="PermanentDeliveryError", non_retryable=True
            ) from None
        return await asyncio.to_thread(self.ledger.sent, input, result.provider, result.provider_id)


def _lease_lost(exc: DeliveryError) -> ApplicationError:
    """This attempt's answer came after its lease: a later attempt owns the row (its write was
    refused, trouw/domain/send_ledger.py `_leased`). Retryable, whatever the answer was: should
    Temporal still be waiting on this attempt, the next one reads the ledger (a final state is
    returned as it is, a running lease is waited out) instead of this attempt's stale view."""
    return ApplicationError(
        f"the attempt's lease ended before its answer was recorded ({exc})",
        type="SendLeaseLostError",
        next_retry_delay=timedelta(seconds=1),
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
