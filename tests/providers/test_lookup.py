"""Asking SendGrid and Twilio about a message whose answer was lost, against fakes that speak
their query APIs (SendGrid's Email Activity filter, Twilio's Messages list)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes import FakeSendGrid, FakeTwilio, ScriptedResponse
from trouw.providers.base import (
    AmbiguousDeliveryError,
    LookupQuery,
    LookupUnavailableError,
    OutgoingEmail,
    OutgoingSms,
    ReconcilingProvider,
)
from trouw.providers.sendgrid.sending import SendGridProvider
from trouw.providers.twilio.sending import TwilioProvider


@pytest.fixture
async def sendgrid(sendgrid_fake: FakeSendGrid) -> AsyncIterator[SendGridProvider]:
    provider = SendGridProvider(
        api_key=sendgrid_fake.api_key,
        email_from="hallo@delinde.example",
        host=sendgrid_fake.url,
        timeout=5.0,
        lookup_settle_seconds=600,
    )
    yield provider
    await provider.aclose()


@pytest.fixture
async def twilio(twilio_fake: FakeTwilio) -> AsyncIterator[TwilioProvider]:
    provider = TwilioProvider(
        account_sid=twilio_fake.account_sid,
        auth_token=twilio_fake.auth_token,
        public_url="https://trouw.example",
        from_number="+3225550100",
        base_url=twilio_fake.url,
        timeout=5.0,
        lookup_settle_seconds=60,
    )
    yield provider
    await provider.aclose()


def query_for(email: OutgoingEmail, *, since: datetime) -> LookupQuery:
    return LookupQuery(message_key=email.message_key, to=email.to, since=since)


async def test_both_http_providers_can_be_asked(
    sendgrid: SendGridProvider, twilio: TwilioProvider
) -> None:
    assert isinstance(sendgrid, ReconcilingProvider)
    assert isinstance(twilio, ReconcilingProvider)


async def test_sendgrid_finds_a_message_by_its_key_after_a_lost_answer(
    sendgrid: SendGridProvider, sendgrid_fake: FakeSendGrid, email: OutgoingEmail
) -> None:
    other = dataclasses.replace(email, message_key="run-2:confirm:email")
    await sendgrid.send_email(other)  # same recipient, another message: must not match
    since = datetime.now(UTC)
    sendgrid_fake.hang_next(1.0)
    sendgrid.timeout = 0.5  # this call only: its answer comes too late
    with pytest.raises(AmbiguousDeliveryError):
        await sendgrid.send_email(email)
    sendgrid.timeout = 5.0
    answer = None
    for _ in range(40):  # the held request is processed after the hang
        answer = await sendgrid.lookup(query_for(email, since=since))
        if answer.found:
            break
        assert not answer.settled, "too early for 'not found' to mean 'not accepted'"
        await _pause()
    assert answer is not None and answer.found
    entry = next(
        e for e in sendgrid_fake.activity if e["unique_args"]["message_key"] == email.message_key
    )
    assert answer.provider_id == entry["msg_id"]
    query = [r for r in sendgrid_fake.requests if r.method == "GET"][-1].query
    assert query["query"] == f"(unique_args['message_key']=\"{email.message_key}\")"


async def test_sendgrid_not_found_is_settled_only_after_the_settle_time(
    sendgrid: SendGridProvider, email: OutgoingEmail
) -> None:
    fresh = await sendgrid.lookup(query_for(email, since=datetime.now(UTC)))
    old = await sendgrid.lookup(query_for(email, since=datetime.now(UTC) - timedelta(hours=1)))
    assert (fresh.found, fresh.settled) == (False, False)
    assert (old.found, old.settled) == (False, True)


async def test_sendgrid_without_the_activity_add_on_cannot_answer(
    sendgrid: SendGridProvider, sendgrid_fake: FakeSendGrid, email: OutgoingEmail
) -> None:
    sendgrid_fake.activity_enabled = False
    with pytest.raises(LookupUnavailableError, match="403"):
        await sendgrid.lookup(query_for(email, since=datetime.now(UTC)))


async def test_twilio_finds_the_message_by_recipient_text_and_time(
    twilio: TwilioProvider, twilio_fake: FakeTwilio, sms: OutgoingSms
) -> None:
    earlier = await twilio.send_sms(dataclasses.replace(sms, body="Another text"))
    since = datetime.now(UTC)
    twilio_fake.hang_next(1.0)
    twilio.timeout = 0.5  # this call only: its answer comes too late
    with pytest.raises(AmbiguousDeliveryError):
        await twilio.send_sms(sms)
    twilio.timeout = 5.0
    query = LookupQuery(message_key=sms.message_key, to=sms.to, since=since, body=sms.body)
    answer = None
    for _ in range(40):
        answer = await twilio.lookup(query)
        if answer.found:
            break
        await _pause()
    assert answer is not None and answer.found
    assert answer.provider_id == twilio_fake.messages[-1]["sid"] != earlier.provider_id
    listed = [r for r in twilio_fake.requests if r.method == "GET"][-1]
    assert listed.query["To"] == sms.to


async def test_twilio_does_not_count_an_older_message_with_the_same_text(
    twilio: TwilioProvider, sms: OutgoingSms
) -> None:
    await twilio.send_sms(sms)
    later = datetime.now(UTC) + timedelta(minutes=10)  # an attempt long after that message
    answer = await twilio.lookup(
        LookupQuery(message_key=sms.message_key, to=sms.to, since=later, body=sms.body)
    )
    assert not answer.found


async def test_twilio_a_request_that_failed_in_the_end_is_not_found(
    twilio: TwilioProvider, twilio_fake: FakeTwilio, sms: OutgoingSms
) -> None:
    since = datetime.now(UTC)
    twilio_fake.script(
        ScriptedResponse(status=500, body={"code": 20500, "status": 500}, hang_seconds=1.0)
    )
    twilio.timeout = 0.5  # this call only: its answer comes too late
    with pytest.raises(AmbiguousDeliveryError):
        await twilio.send_sms(sms)
    twilio.timeout = 5.0
    await _pause(1.2)
    query = LookupQuery(message_key=sms.message_key, to=sms.to, since=since, body=sms.body)
    assert not (await twilio.lookup(query)).found
    settled = dataclasses.replace(query, since=since - timedelta(minutes=5))
    assert (await twilio.lookup(settled)).settled


async def _pause(seconds: float = 0.1) -> None:
    await asyncio.sleep(seconds)
