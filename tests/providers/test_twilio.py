"""The Twilio provider, driven through the official (async) client against the local fake."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes import FakeTwilio, ScriptedResponse
from trouw.providers import sms_provider
from trouw.providers.base import (
    AmbiguousDeliveryError,
    OutgoingSms,
    PermanentDeliveryError,
    RateLimitedError,
    TransientDeliveryError,
)
from trouw.providers.twilio.sending import TwilioProvider, rewrite_url
from trouw.settings import Settings

_open: list[TwilioProvider] = []


@pytest.fixture(autouse=True)
async def _close_providers() -> AsyncIterator[None]:
    yield
    while _open:
        await _open.pop().aclose()


async def provider_for(fake: FakeTwilio, settings: Settings, **overrides: object) -> TwilioProvider:
    configured = settings.model_copy(
        update={
            "sms_provider": "twilio",
            "twilio_account_sid": fake.account_sid,
            "twilio_auth_token": fake.auth_token,
            "twilio_messaging_service_sid": "MG" + "1" * 32,
            "twilio_base_url": fake.url,
            "sms_validity_seconds": 3600,
            **overrides,
        }
    )
    provider = sms_provider(configured)
    assert isinstance(provider, TwilioProvider)
    _open.append(provider)
    return provider


async def test_send_sets_status_callback_validity_and_messaging_service(
    twilio_fake: FakeTwilio, settings: Settings, sms: OutgoingSms
) -> None:
    provider = await provider_for(twilio_fake, settings)
    result = await provider.send_sms(sms)
    await provider.aclose()

    assert result.provider == "twilio"
    assert result.provider_id == twilio_fake.messages[0]["sid"]
    assert result.provider_id is not None and result.provider_id.startswith("SM")
    [form] = twilio_fake.forms
    assert form["To"] == "+32470000001"
    assert form["Body"] == "Tijd om je gazonmest bij te vullen?"
    assert form["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in form
    assert form["ValidityPeriod"] == "3600"
    callback = urlsplit(form["StatusCallback"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == (
        "https://trouw.example/v1/callbacks/twilio/status"
    )
    assert parse_qs(callback.query) == {"mk": ["run-1:refill:sms"]}


async def test_send_from_a_number_without_messaging_service(
    twilio_fake: FakeTwilio, settings: Settings, sms: OutgoingSms
) -> None:
    provider = await provider_for(
        twilio_fake,
        settings,
        twilio_messaging_service_sid=None,
        twilio_from_number="+3225550100",
    )
    await provider.send_sms(sms)

    [form] = twilio_fake.forms
    assert form["From"] == "+3225550100"
    assert "MessagingServiceSid" not in form
    assert twilio_fake.messages[0]["status"] == "queued"


async def test_message_key_is_url_encoded_in_the_status_callback(
    twilio_fake: FakeTwilio, settings: Settings, sms: OutgoingSms
) -> None:
    odd = dataclasses.replace(sms, message_key="run 7/step&x=1:sms")
    await (await provider_for(twilio_fake, settings)).send_sms(odd)

    callback = twilio_fake.forms[0]["StatusCallback"]
    assert "mk=run%207%2Fstep%26x%3D1%3Asms" in callback
    assert parse_qs(urlsplit(callback).query) == {"mk": ["run 7/step&x=1:sms"]}


@pytest.mark.parametrize(
    ("code", "status", "expected", "invalid_recipient", "opted_out"),
    [
        (21211, 400, PermanentDeliveryError, True, False),
        (21614, 400, PermanentDeliveryError, True, False),
        (21610, 400, PermanentDeliveryError, False, True),
        (21603, 400, PermanentDeliveryError, False, False),
        (21612, 400, PermanentDeliveryError, False, False),
        (20003, 401, PermanentDeliveryError, False, False),
        (20429, 429, RateLimitedError, False, False),
        (20429, 400, RateLimitedError, False, False),  # the code alone says "rate limited"
        (20500, 500, TransientDeliveryError, False, False),
        (20503, 503, TransientDeliveryError, False, False),
    ],
)
async def test_twilio_errors_are_classified(
    twilio_fake: FakeTwilio,
    settings: Settings,
    sms: OutgoingSms,
    code: int,
    status: int,
    expected: type[Exception],
    invalid_recipient: bool,
    opted_out: bool,
) -> None:
    twilio_fake.fail_next(code, status=status)

    with pytest.raises(expected) as caught:
        await (await provider_for(twilio_fake, settings)).send_sms(sms)

    assert caught.value.code == str(code)  # type: ignore[attr-defined]
    if isinstance(caught.value, PermanentDeliveryError):
        assert caught.value.invalid_recipient is invalid_recipient
        assert caught.value.opted_out is opted_out
    assert len(twilio_fake.requests) == 1


async def test_http_429_without_a_twilio_code_is_rate_limited(
    twilio_fake: FakeTwilio, settings: Settings, sms: OutgoingSms
) -> None:
    twilio_fake.script(ScriptedResponse(status=429, body={"message": "slow down"}))

    with pytest.raises(RateLimitedError) as caught:
        await (await provider_for(twilio_fake, settings)).send_sms(sms)
    assert caught.value.retry_after > 0


async def test_429_retry_after_header_is_honoured(
    twilio_fake: FakeTwilio, settings: Settings, sms: OutgoingSms
) -> None:
    twilio_fake.fail_next(20429, retry_after=7)
    provider = await provider_for(twilio_fake, settings)

    with pytest.raises(RateLimitedError) as caught:
        await provider.send_sms(sms)
    assert caught.value.retry_after == 7.0

    twilio_fake.fail_next(20429)  # no header: the default first backoff step
    with pytest.raises(RateLimitedError) as caught:
        await provider.send_sms(sms)
    assert caught.value.retry_after == 2.0


async def test_an_invalid_number_is_refused_by_the_api(
    twilio_fake: FakeTwilio, settings: Settings, sms: OutgoingSms
) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await (await provider_for(twilio_fake, settings)).send_sms(
            dataclasses.replace(sms, to="0470 00 00 01")
        )
    assert caught.value.code == "21211"
    assert caught.value.invalid_recipient


async def test_a_wrong_auth_token_is_permanent(
    twilio_fake: FakeTwilio, settings: Settings, sms: OutgoingSms
) -> None:
    provider = await provider_for(twilio_fake, settings, twilio_auth_token="wrong")
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send_sms(sms)
    assert caught.value.code == "20003"


async def test_a_timeout_after_the_request_left_is_ambiguous(
    twilio_fake: FakeTwilio, settings: Settings, sms: OutgoingSms
) -> None:
    twilio_fake.hang_next(1.5)
    provider = await provider_for(twilio_fake, settings)
    provider.timeout = 0.3

    started = time.monotonic()
    with pytest.raises(AmbiguousDeliveryError):
        await provider.send_sms(sms)
    assert time.monotonic() - started < 1.5
    assert len(twilio_fake.requests) == 1
    await provider.aclose()


async def test_connection_refused_is_transient(settings: Settings, sms: OutgoingSms) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = TwilioProvider(
        account_sid="AC" + "0" * 32,
        auth_token="t",
        public_url="https://trouw.example",
        from_number="+3225550100",
        base_url=f"http://127.0.0.1:{port}",
    )
    with pytest.raises(TransientDeliveryError) as caught:
        await provider.send_sms(sms)
    assert caught.value.code == "connection"
    await provider.aclose()


def test_the_sync_client_reaches_the_base_url(twilio_fake: FakeTwilio) -> None:
    # BaseUrlHttpClient (used by bench/send_bench.py) moves the official sync client's
    # requests from api.twilio.com to the configured base URL.
    from twilio.rest import Client

    from trouw.providers.twilio.sending import BaseUrlHttpClient

    client = Client(
        twilio_fake.account_sid,
        twilio_fake.auth_token,
        http_client=BaseUrlHttpClient(base_url=twilio_fake.url, timeout=5),
    )
    message = client.messages.create(to="+32470000001", from_="+3225550100", body="Hallo")

    assert message.sid == twilio_fake.messages[0]["sid"]
    [form] = twilio_fake.forms
    assert form["To"] == "+32470000001"


def test_rewrite_url_only_moves_twilio_hosts() -> None:
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json"
    assert rewrite_url(url, "https://api.twilio.com") == url
    assert rewrite_url(url, "http://127.0.0.1:9/") == (
        "http://127.0.0.1:9/2010-04-01/Accounts/AC1/Messages.json"
    )
    regional = "https://api.dublin.ie1.twilio.com/2010-04-01/x"
    assert rewrite_url(regional, "http://fake") == "http://fake/2010-04-01/x"
    assert rewrite_url("https://example.com/a", "http://fake") == "https://example.com/a"
