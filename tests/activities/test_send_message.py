"""The send activity against local SendGrid and Twilio fakes: each message key is sent at most once."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.messaging import MessagingActivities
from activities.services import Services
from tests.conftest import ROOT
from tests.fakes import FakeSendGrid, FakeTwilio, ScriptedResponse
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Customer, Message, Suppression
from trouw.domain.ingest import CustomerIn, EventIn, ingest_event, upsert_customer
from trouw.language.contracts import SendMessageInput, SendMessageResult
from trouw.providers import aclose_provider
from trouw.settings import Settings

# A Monday in winter: Brussels is UTC+1, so 10:00 UTC is 11:00 local and 21:30 UTC is 22:30.
MORNING = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CUSTOMER = "k-2001"
ORDER = "W-2001"


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


def send_settings(
    tmp_path: Path,
    sendgrid: FakeSendGrid,
    twilio: FakeTwilio,
    *,
    templates_dir: Path = ROOT / "templates",
) -> Settings:
    return Settings(
        home=tmp_path / "home",
        journeys_dir=ROOT / "journeys",
        templates_dir=templates_dir,
        signing_keys=["test-key"],
        public_url="https://trouw.example",
        send_rate_per_second=10_000,
        email_provider="sendgrid",
        sendgrid_api_key=sendgrid.api_key,
        sendgrid_host=sendgrid.url,
        sms_provider="twilio",
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from_number="+3250123456",
        twilio_base_url=twilio.url,
        provider_timeout_seconds=5,
    )


@pytest.fixture
async def services(
    tmp_path: Path, engine: Engine, sendgrid: FakeSendGrid, twilio: FakeTwilio
) -> AsyncIterator[Services]:
    built = Services.from_settings(send_settings(tmp_path, sendgrid, twilio), engine=engine)
    add_customer(engine)
    yield built
    for provider in built._providers.values():
        await aclose_provider(provider)


def add_customer(engine: Engine, *, promotional_opt_in: bool = False) -> None:
    """Bart, with an email address and a mobile number, who bought two things on the web."""
    with session_scope(engine) as session:
        ingest_event(
            session,
            EventIn(
                id="evt-2001",
                type="purchase",
                customer=CUSTOMER,
                order=ORDER,
                channel="web",
                at=MORNING - timedelta(minutes=5),
                lines=[
                    {"sku": "LAWN-10", "qty": 1, "unit_price": "24.95", "name": "Gazonmest 10 kg"},
                    {"sku": "ROSE-01", "qty": 2, "unit_price": "14.50", "name": "Klimroos"},
                ],
                profile=CustomerIn(
                    id=CUSTOMER,
                    first_name="Bart",
                    last_name="Peeters",
                    email="bart@example.com",
                    phone="+32470000001",
                    locale="nl-BE",
                    timezone="Europe/Brussels",
                ),
            ),
        )
        if promotional_opt_in:
            upsert_customer(
                session,
                CustomerIn(id=CUSTOMER, opt_in={"email": True, "sms": True}),
                at=MORNING - timedelta(minutes=4),
                source="test",
            )


def request(
    key: str = "journey:k-2001:post_purchase:W-2001#0:confirmation:email",
    *,
    channel: str = "email",
    template: str = "order_confirmation",
    category: str = "transactional",
    now: datetime = MORNING,
) -> SendMessageInput:
    return SendMessageInput(
        message_key=key,
        customer_id=CUSTOMER,
        journey="post_purchase",
        journey_version="1",
        workflow_id="journey:k-2001:post_purchase:W-2001",
        step=key.split(":")[-2],
        channel=channel,  # type: ignore[arg-type]
        template=template,
        category=category,  # type: ignore[arg-type]
        triggered_at=MORNING - timedelta(minutes=5),
        service_cutoff_days=180,
        now=now,
        order_id=ORDER,
        skus=["LAWN-10", "ROSE-01"],
    )


async def send(
    services: Services, input: SendMessageInput, *, attempt: int = 1
) -> SendMessageResult:
    """One activity attempt, as a worker would run it."""
    env = ActivityEnvironment()
    env.info = replace(env.info, attempt=attempt, activity_type="send_message")
    result: SendMessageResult = await env.run(MessagingActivities(services).send_message, input)
    return result


async def send_with_retries(
    services: Services, input: SendMessageInput, *, attempts: int = 20
) -> SendMessageResult:
    """Attempts until one returns or fails for good, as Temporal's retry policy runs them
    (the waits are shortened: the ledger, not the clock, decides what an attempt does)."""
    for attempt in range(1, attempts + 1):
        try:
            return await send(services, input, attempt=attempt)
        except Exception as exc:
            if isinstance(exc, ApplicationError) and exc.non_retryable or attempt == attempts:
                raise
            delay = getattr(exc, "next_retry_delay", None) or timedelta(0)
            await asyncio.sleep(min(delay.total_seconds(), 0.2))
    raise AssertionError("unreachable")


def expire_lease(engine: Engine, key: str) -> None:
    """Move the last attempt's lease into the past: its worker died a while ago."""
    with session_scope(engine) as session:
        row = session.exec(select(Message).where(Message.message_key == key)).one()
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        row.status_history = [
            {**entry, "lease_until": past} if entry.get("lease_until") else entry
            for entry in row.status_history
        ]
        session.add(row)


def ledger(engine: Engine, key: str) -> Message:
    with session_scope(engine) as session:
        row = session.exec(select(Message).where(Message.message_key == key)).one()
        session.expunge(row)
        return row


def customer(engine: Engine) -> Customer:
    with session_scope(engine) as session:
        row = session.get(Customer, CUSTOMER)
        assert row is not None
        session.expunge(row)
        return row


def keys_sent(sendgrid: FakeSendGrid) -> list[str]:
    return [mail["custom_args"]["message_key"] for mail in sendgrid.mails]


async def test_first_call_sends_once_and_a_repeat_returns_the_stored_result(
    services: Services, sendgrid: FakeSendGrid, engine: Engine
) -> None:
    input = request()
    first = await send(services, input)
    assert first.outcome == "sent"
    assert keys_sent(sendgrid) == [input.message_key]
    mail = sendgrid.mails[0]
    assert mail["personalizations"][0]["to"][0]["email"] == "bart@example.com"
    assert mail["subject"] == "Bedankt voor je bestelling W-2001"
    row = ledger(engine, input.message_key)
    assert row.state == "sent"
    assert row.provider == "sendgrid"
    assert row.provider_id == sendgrid.message_ids[0]
    assert row.attempts == 1

    again = await send(services, input, attempt=2)
    assert again == first
    assert len(sendgrid.requests) == 1, "a repeat of a sent key must not reach the provider"
    assert ledger(engine, input.message_key).state == "sent"


async def test_promotional_without_opt_in_is_suppressed_with_its_consent_snapshot(
    services: Services, sendgrid: FakeSendGrid, engine: Engine
) -> None:
    input = request("journey:k-2001:reactivation#0:offer:email", category="promotional")
    result = await send(services, input)
    assert result.outcome == "suppressed"
    assert result.reason == "no_promotional_opt_in"
    assert sendgrid.requests == []
    row = ledger(engine, input.message_key)
    assert row.state == "suppressed"
    assert row.reason == "no_promotional_opt_in"
    assert "consent" in row.consent_snapshot and "suppressions" in row.consent_snapshot
    assert "email:promotional" not in row.consent_snapshot["consent"]


async def test_sms_in_quiet_hours_is_deferred_to_eight_and_sent_then(
    services: Services, twilio: FakeTwilio, engine: Engine
) -> None:
    late = datetime(2026, 3, 2, 21, 30, tzinfo=UTC)  # 22:30 in Brussels
    input = request(
        "journey:k-2001:post_purchase:W-2001#0:delivery_sms:sms",
        channel="sms",
        template="delivery_notice",
        now=late,
    )
    deferred = await send(services, input)
    assert deferred.outcome == "deferred"
    assert deferred.reason == "quiet_hours"
    assert deferred.until == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)  # 08:00 in Brussels
    assert twilio.requests == []
    assert ledger(engine, input.message_key).state == "claimed"

    sent = await send(services, input.model_copy(update={"now": deferred.until}))
    assert sent.outcome == "sent"
    assert len(twilio.forms) == 1
    form = twilio.forms[0]
    assert form["To"] == "+32470000001"
    assert "W-2001" in form["Body"]
    assert "mk=" in form["StatusCallback"]
    row = ledger(engine, input.message_key)
    assert row.state == "sent" and row.provider_id == twilio.messages[0]["sid"]


async def test_a_late_retry_is_judged_at_its_own_time(
    services: Services, twilio: FakeTwilio, engine: Engine
) -> None:
    # Scheduled at 20:50 in Brussels, but this attempt (after rate-limit backoff) starts at 22:30.
    scheduled = datetime(2026, 3, 2, 19, 50, tzinfo=UTC)
    input = request(
        "journey:k-2001:post_purchase:W-2001#0:delivery_sms:sms",
        channel="sms",
        template="delivery_notice",
        now=scheduled,
    )
    env = ActivityEnvironment()
    env.info = replace(
        env.info,
        attempt=3,
        scheduled_time=scheduled,
        current_attempt_scheduled_time=scheduled + timedelta(hours=1, minutes=40),
    )
    result = await env.run(MessagingActivities(services).send_message, input)
    assert (result.outcome, result.reason) == ("deferred", "quiet_hours")
    assert twilio.requests == []


async def test_rate_limit_releases_the_claim_and_retries_after_the_reset(
    services: Services, sendgrid: FakeSendGrid, engine: Engine
) -> None:
    input = request()
    reset = sendgrid.rate_limit_next(reset_in=30)
    with pytest.raises(ApplicationError) as raised:
        await send(services, input)
    error = raised.value
    assert error.type == "RateLimitedError"
    assert not error.non_retryable
    assert error.next_retry_delay is not None
    expected = reset - time.time()
    assert abs(error.next_retry_delay.total_seconds() - expected) <= 2
    assert ledger(engine, input.message_key).state == "claimed"

    result = await send(services, input, attempt=2)
    assert result.outcome == "sent"
    assert [r.status for r in sendgrid.requests] == [429, 202]
    assert ledger(engine, input.message_key).state == "sent"


async def test_invalid_email_fails_for_good_and_marks_the_address(
    services: Services, sendgrid: FakeSendGrid, engine: Engine
) -> None:
    input = request()
    sendgrid.fail_next(
        400, message="Does not contain a valid address.", field="personalizations.0.to.0.email"
    )
    with pytest.raises(ApplicationError) as raised:
        await send(services, input)
    assert raised.value.type == "PermanentDeliveryError"
    assert raised.value.non_retryable
    row = ledger(engine, input.message_key)
    assert row.state == "failed"
    assert "valid address" in (row.error or "")
    assert customer(engine).email_invalid
    # A repeat returns the failure without asking the provider again.
    assert (await send(services, input, attempt=2)).outcome == "failed"
    assert len(sendgrid.requests) == 1


async def test_twilio_stop_records_an_sms_suppression(
    services: Services, twilio: FakeTwilio, engine: Engine
) -> None:
    input = request(
        "journey:k-2001:post_purchase:W-2001#0:delivery_sms:sms",
        channel="sms",
        template="delivery_notice",
    )
    twilio.fail_next(21610)
    with pytest.raises(ApplicationError) as raised:
        await send(services, input)
    assert raised.value.type == "PermanentDeliveryError" and raised.value.non_retryable
    assert ledger(engine, input.message_key).state == "failed"
    with session_scope(engine) as session:
        reasons = session.exec(
            select(Suppression.reason).where(
                Suppression.customer_id == CUSTOMER, Suppression.channel == "sms"
            )
        ).all()
    assert reasons == ["sms_stop"]
    assert not customer(engine).phone_invalid


async def test_twilio_invalid_number_marks_the_phone_invalid(
    services: Services, twilio: FakeTwilio, engine: Engine
) -> None:
    input = request(
        "journey:k-2001:post_purchase:W-2001#0:delivery_sms:sms",
        channel="sms",
        template="delivery_notice",
    )
    twilio.fail_next(21211)
    with pytest.raises(ApplicationError) as raised:
        await send(services, input)
    assert raised.value.type == "PermanentDeliveryError" and raised.value.non_retryable
    assert ledger(engine, input.message_key).state == "failed"
    assert customer(engine).phone_invalid
    # The next SMS to this customer is suppressed without a request.
    later = request("journey:k-2001:refill#0:remind:sms", channel="sms", template="delivery_notice")
    assert (await send(services, later)).reason == "suppressed_invalid_address"
    assert len(twilio.requests) == 1


def lose_the_next_answer(services: Services, sendgrid: FakeSendGrid, *, accepted: bool) -> None:
    """The next request reaches SendGrid but its answer comes after the call's deadline;
    SendGrid took the message or (a 500 in the end) did not."""
    services.provider("email").timeout = 0.5
    status, body = (200, None) if accepted else (500, {"errors": [{"message": "internal"}]})
    sendgrid.script(ScriptedResponse(status=status, body=body, hang_seconds=1.5))


def ask_at_once(services: Services, *, answer_within: float = 60.0) -> None:
    """The Email Activity API shows messages at once (the fake does): trust "not found" now."""
    provider = services.provider("email")
    provider.lookup_settle_seconds = 0.0
    provider.answer_within_seconds = answer_within


async def test_a_5xx_answer_is_not_an_unknown_outcome(
    services: Services, sendgrid: FakeSendGrid, engine: Engine
) -> None:
    # SendGrid answered: it did not take the message, so a retry is safe for every category.
    add_customer(engine, promotional_opt_in=True)
    input = request("journey:k-2001:post_purchase:W-2001#0:service:email", category="service")
    sendgrid.fail_next(500)
    with pytest.raises(ApplicationError) as raised:
        await send(services, input)
    assert raised.value.type == "TransientDeliveryError"
    assert ledger(engine, input.message_key).state == "claimed"
    assert (await send_with_retries(services, input)).outcome == "sent"
    assert [r.status for r in sendgrid.requests] == [500, 202]


async def test_a_lost_answer_leaves_the_row_reconciling(
    services: Services, sendgrid: FakeSendGrid, engine: Engine
) -> None:
    input = request()
    lose_the_next_answer(services, sendgrid, accepted=True)
    with pytest.raises(ApplicationError) as raised:
        await send(services, input)
    services.provider("email").timeout = 5.0
    assert raised.value.type == "AmbiguousDeliveryError"
    assert not raised.value.non_retryable
    row = ledger(engine, input.message_key)
    assert row.state == "reconciling"
    assert row.status_history[-1]["status"] == "outcome_unknown"
    assert row.status_history[-1]["answer_by"]


@pytest.mark.parametrize("category", ["transactional", "service", "promotional"])
async def test_an_accepted_message_whose_answer_was_lost_is_found_and_never_resent(
    category: str, services: Services, sendgrid: FakeSendGrid, engine: Engine
) -> None:
    add_customer(engine, promotional_opt_in=True)
    input = request(f"journey:k-2001:post_purchase:W-2001#0:{category}:email", category=category)
    ask_at_once(services)
    lose_the_next_answer(services, sendgrid, accepted=True)
    with pytest.raises(ApplicationError):
        await send(services, input)
    services.provider("email").timeout = 5.0  # later calls: a busy machine must not time out
    await asyncio.sleep(1.5)  # the held request is processed meanwhile
    result = await send_with_retries(services, input)
    assert result.outcome == "sent"
    assert len(sendgrid.activity) == 1, "one copy: reconciliation found it"
    lookups = [r for r in sendgrid.requests if r.method == "GET"]
    assert lookups and "message_key" in lookups[0].query["query"]
    row = ledger(engine, input.message_key)
    assert row.state == "sent"
    assert row.provider_id == sendgrid.activity[0]["msg_id"]
    assert row.status_history[-1]["status"] == "reconciled"


@pytest.mark.parametrize("category", ["transactional", "service", "promotional"])
async def test_a_message_the_provider_never_took_is_resent_whatever_the_category(
    category: str, services: Services, sendgrid: FakeSendGrid, engine: Engine
) -> None:
    add_customer(engine, promotional_opt_in=True)
    input = request(f"journey:k-2001:post_purchase:W-2001#0:{category}:email", category=category)
    ask_at_once(services)
    lose_the_next_answer(services, sendgrid, accepted=False)
    with pytest.raises(ApplicationError):
        await send(services, input)
    services.provider("email").timeout = 5.0  # later calls: a busy machine must not time out
    await asyncio.sleep(1.5)  # the held request ends in a 500 meanwhile
    result = await send_with_retries(services, input)
    assert result.outcome == "sent"
    assert len(sendgrid.activity) == 1
    statuses = [entry["status"] for entry in ledger(engine, input.message_key).status_history]
    assert statuses == [
        "allowed",
        "sending",
        "outcome_unknown",
        "resending",
        "allowed",
        "sending",
        "sent",
    ]
    await send(services, input, attempt=9)
    assert len(sendgrid.activity) == 1, "settled: later attempts never send again"


async def test_unknown_outcome_settled_by_a_provider_event_is_not_resent(
    services: Services, sendgrid: FakeSendGrid, engine: Engine
) -> None:
    input = request()
    sendgrid.activity_enabled = False  # no Email Activity add-on: only the webhook can tell
    lose_the_next_answer(services, sendgrid, accepted=True)
    with pytest.raises(ApplicationError):
        await send(services, input)
    services.provider("email").timeout = 5.0  # later calls: a busy machine must not time out
    # SendGrid's event webhook reports the message delivered before the retry runs
    with session_scope(engine) as session:
        row = session.exec(select(Message).where(Message.message_key == input.message_key)).one()
        row.status = "delivered"
        session.add(row)
    result = await send_with_retries(services, input)
    assert result.outcome == "sent"
    assert len([r for r in sendgrid.requests if r.method == "POST"]) == 1
    row = ledger(engine, input.message_key)
    assert (row.state, row.status) == ("sent", "delivered")
    assert row.status_history[-1]["status"] == "reconciled"


async def test_without_an_answer_the_message_waits_until_its_deadline(
    services: Services, sendgrid: FakeSendGrid, engine: Engine
) -> None:
    input = request()
    sendgrid.activity_enabled = False
    ask_at_once(services, answer_within=3600)
    lose_the_next_answer(services, sendgrid, accepted=True)
    with pytest.raises(ApplicationError):
        await send(services, input)
    services.provider("email").timeout = 5.0  # later calls: a busy machine must not time out
    with pytest.raises(ApplicationError) as raised:
        await send(services, input, attempt=2)
    assert raised.value.type == "OutcomeUnknownError"
    assert raised.value.next_retry_delay is not None
    assert ledger(engine, input.message_key).state == "reconciling"
    assert len([r for r in sendgrid.requests if r.method == "POST"]) == 1


@pytest.mark.parametrize(
    ("category", "resent"),
    [("transactional", True), ("service", False), ("promotional", False)],
)
async def test_at_the_deadline_without_an_answer_the_category_decides(
    category: str, resent: bool, services: Services, sendgrid: FakeSendGrid, engine: Engine
) -> None:
    add_customer(engine, promotional_opt_in=True)
    input = request(f"journey:k-2001:post_purchase:W-2001#0:{category}:email", category=category)
    sendgrid.activity_enabled = False
    ask_at_once(services, answer_within=0)  # the deadline is now
    lose_the_next_answer(services, sendgrid, accepted=True)
    with pytest.raises(ApplicationError):
        await send(services, input)
    services.provider("email").timeout = 5.0  # later calls: a busy machine must not time out
    await asyncio.sleep(1.5)
    result = await send_with_retries(services, input)
    row = ledger(engine, input.message_key)
    posts = [r for r in sendgrid.requests if r.method == "POST"]
    if resent:
        assert result.outcome == "sent" and row.state == "sent"
        assert len(posts) == 2 and len(sendgrid.activity) == 2  # at least once: a duplicate
        assert "resending" in [entry["status"] for entry in row.status_history]
    else:
        assert result.outcome == "suppressed"
        assert result.reason == "unknown_outcome_not_resent"
        assert row.state == "unknown" and row.status_history[-1]["status"] == "unknown"
        assert len(posts) == 1
    await send(services, input, attempt=9)
    assert len([r for r in sendgrid.requests if r.method == "POST"]) == len(posts)


async def test_template_error_fails_for_good_and_names_the_file(
    tmp_path: Path, engine: Engine, sendgrid: FakeSendGrid, twilio: FakeTwilio
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    broken = templates / "sms" / "broken_notice"
    broken.mkdir()
    (broken / "text.nl-BE.txt").write_text("Dag {{ customer.first_name }}, {{ voucher.code }}\n")
    services = Services.from_settings(
        send_settings(tmp_path, sendgrid, twilio, templates_dir=templates), engine=engine
    )
    add_customer(engine)
    input = request(
        "journey:k-2001:post_purchase:W-2001#0:broken:sms", channel="sms", template="broken_notice"
    )
    with pytest.raises(ApplicationError) as raised:
        await send(services, input)
    assert raised.value.type == "TemplateRenderError"
    assert raised.value.non_retryable
    row = ledger(engine, input.message_key)
    assert row.state == "failed"
    assert "broken_notice/text.nl-BE.txt" in (row.error or "")
    assert twilio.requests == []
    assert (await send(services, input, attempt=2)).outcome == "failed"
    assert twilio.requests == []


@pytest.mark.parametrize("after_rate_limit", [False, True], ids=["new", "claimed"])
@pytest.mark.parametrize("category", ["transactional", "service"])
async def test_concurrent_attempts_with_one_key_send_once(
    category: str,
    after_rate_limit: bool,
    services: Services,
    sendgrid: FakeSendGrid,
    engine: Engine,
) -> None:
    input = request(f"journey:k-2001:post_purchase:W-2001#0:{category}:email", category=category)
    if after_rate_limit:  # the row exists, claimed: both attempts find it so
        sendgrid.rate_limit_next(reset_in=1)
        with pytest.raises(ApplicationError):
            await send(services, input)
        sendgrid.reset()
    sendgrid.hang_next(1.0)  # the first request is slow: the second attempt meets it in flight
    outcomes: list[Any] = await asyncio.gather(
        send_with_retries(services, input),
        send_with_retries(services, input),
        return_exceptions=True,
    )
    assert len(sendgrid.requests) == 1, outcomes
    assert ledger(engine, input.message_key).state == "sent"
    assert any(isinstance(o, SendMessageResult) and o.outcome == "sent" for o in outcomes)


@pytest.mark.parametrize("category", ["transactional", "promotional"])
async def test_attempt_after_a_dead_one_waits_out_its_lease_then_reconciles(
    category: str, services: Services, sendgrid: FakeSendGrid, engine: Engine
) -> None:
    add_customer(engine, promotional_opt_in=True)
    ask_at_once(services)
    input = request(f"journey:k-2001:post_purchase:W-2001#0:{category}:email", category=category)
    sendgrid.hang_next(1.0)
    first = asyncio.create_task(send(services, input))
    for _ in range(100):  # the request has reached the provider...
        if sendgrid.requests:
            break
        await asyncio.sleep(0.05)
    first.cancel()  # ...and the attempt dies before it hears the answer
    with pytest.raises(asyncio.CancelledError):
        await first
    assert ledger(engine, input.message_key).state == "in_flight"

    with pytest.raises(ApplicationError) as raised:
        await send(services, input, attempt=2)
    assert raised.value.type == "SendInProgressError" and not raised.value.non_retryable
    delay = raised.value.next_retry_delay
    assert delay is not None and timedelta(0) < delay <= timedelta(seconds=15)
    assert len(sendgrid.requests) == 1

    await asyncio.sleep(1.5)  # SendGrid processes the held request meanwhile
    expire_lease(engine, input.message_key)
    result = await send_with_retries(services, input)
    row = ledger(engine, input.message_key)
    # The provider is asked first, for every category: it has the message, so none is resent.
    assert result.outcome == "sent" and row.state == "sent"
    assert len(sendgrid.activity) == 1
    assert row.status_history[-1]["status"] == "reconciled"


async def test_an_answer_heard_after_the_lease_does_not_set_the_row_back(
    services: Services, sendgrid: FakeSendGrid, engine: Engine
) -> None:
    input = request()
    # SendGrid holds the request, then refuses it (503): the provider surely did not take it.
    sendgrid.script(ScriptedResponse(status=503, body={"errors": []}, hang_seconds=1.5))
    first = asyncio.create_task(send(services, input))
    for _ in range(100):
        if sendgrid.requests:
            break
        await asyncio.sleep(0.05)
    # Meanwhile its lease runs out and the next attempt finds the outcome unknown: it asks
    # SendGrid, which lists nothing yet (settle time not over), and waits.
    expire_lease(engine, input.message_key)
    with pytest.raises(ApplicationError) as waiting:
        await send(services, input, attempt=2)
    assert waiting.value.type == "OutcomeUnknownError"
    assert ledger(engine, input.message_key).state == "reconciling"
    # The first attempt hears its 503 now: its release would let a retry resend without
    # asking; it is refused, and the attempt hands over to the ledger.
    with pytest.raises(ApplicationError) as late:
        await first
    assert late.value.type == "SendLeaseLostError" and not late.value.non_retryable
    assert ledger(engine, input.message_key).state == "reconciling"
    assert len(sendgrid.mails) == 1
