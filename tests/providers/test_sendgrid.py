"""The SendGrid provider, driven through the official client against the local fake."""

from __future__ import annotations

import dataclasses
import socket
import time

import pytest

from tests.fakes import FakeSendGrid
from trouw.providers import email_provider
from trouw.providers.base import (
    AmbiguousDeliveryError,
    OutgoingEmail,
    PermanentDeliveryError,
    RateLimitedError,
    TransientDeliveryError,
)
from trouw.providers.sendgrid.sending import SendGridProvider
from trouw.settings import Settings


def provider_for(fake: FakeSendGrid, settings: Settings, **overrides: object) -> SendGridProvider:
    configured = settings.model_copy(
        update={
            "email_provider": "sendgrid",
            "sendgrid_api_key": fake.api_key,
            "sendgrid_host": fake.url,
            **overrides,
        }
    )
    provider = email_provider(configured)
    assert isinstance(provider, SendGridProvider)
    return provider


async def test_send_carries_categories_custom_args_and_unsubscribe_headers(
    sendgrid_fake: FakeSendGrid, settings: Settings, email: OutgoingEmail
) -> None:
    result = await provider_for(sendgrid_fake, settings).send_email(email)

    assert result.provider == "sendgrid"
    assert result.provider_id == sendgrid_fake.message_ids[0]
    assert result.accepted_at is not None
    [mail] = sendgrid_fake.mails
    assert mail["personalizations"][0]["to"] == [
        {"email": "bart@example.com", "name": "Bart Peeters"}
    ]
    assert mail["from"] == {"email": "hallo@delinde.example", "name": "Tuincentrum De Linde"}
    assert mail["subject"] == "Bedankt voor je bestelling"
    assert [c["type"] for c in mail["content"]] == ["text/plain", "text/html"]
    assert sorted(mail["categories"]) == ["after-purchase", "service"]
    assert mail["custom_args"] == {"message_key": "run-1:confirm:email"}
    assert mail["headers"] == {
        "List-Unsubscribe": "<https://trouw.example/u/tok123>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert "mail_settings" not in mail
    assert "reply_to" not in mail
    assert sendgrid_fake.requests[0].headers["Authorization"] == f"Bearer {sendgrid_fake.api_key}"


async def test_sandbox_mode_and_reply_to_when_configured(
    sendgrid_fake: FakeSendGrid, settings: Settings, email: OutgoingEmail
) -> None:
    provider = provider_for(
        sendgrid_fake, settings, sendgrid_sandbox=True, email_reply_to="Winkel <winkel@x.example>"
    )
    await provider.send_email(email)

    [mail] = sendgrid_fake.mails
    assert mail["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert mail["reply_to"] == {"email": "winkel@x.example", "name": "Winkel"}


async def test_transactional_mail_without_unsubscribe_url_has_no_list_headers(
    sendgrid_fake: FakeSendGrid, settings: Settings, email: OutgoingEmail
) -> None:
    receipt = dataclasses.replace(email, category="transactional", unsubscribe_url=None)
    await provider_for(sendgrid_fake, settings).send_email(receipt)

    [mail] = sendgrid_fake.mails
    assert "headers" not in mail
    assert sorted(mail["categories"]) == ["after-purchase", "transactional"]


@pytest.mark.parametrize(
    ("status", "error_field", "expected", "invalid_recipient"),
    [
        (400, "personalizations.0.to.0.email", PermanentDeliveryError, True),
        (400, "from.email", PermanentDeliveryError, False),
        (400, None, PermanentDeliveryError, False),
        (401, None, PermanentDeliveryError, False),
        (403, None, PermanentDeliveryError, False),
        (413, None, PermanentDeliveryError, False),
        (429, None, RateLimitedError, False),
        (500, None, TransientDeliveryError, False),
        (502, None, TransientDeliveryError, False),
        (503, None, TransientDeliveryError, False),
        (504, None, TransientDeliveryError, False),
    ],
)
async def test_http_errors_are_classified(
    sendgrid_fake: FakeSendGrid,
    settings: Settings,
    email: OutgoingEmail,
    status: int,
    error_field: str | None,
    expected: type[Exception],
    invalid_recipient: bool,
) -> None:
    sendgrid_fake.fail_next(status, field=error_field)

    with pytest.raises(expected) as caught:
        await provider_for(sendgrid_fake, settings).send_email(email)

    assert caught.value.code == str(status)  # type: ignore[attr-defined]
    if isinstance(caught.value, PermanentDeliveryError):
        assert caught.value.invalid_recipient is invalid_recipient
        assert caught.value.opted_out is False
    assert len(sendgrid_fake.requests) == 1


async def test_an_address_the_api_rejects_marks_the_recipient_invalid(
    sendgrid_fake: FakeSendGrid, settings: Settings, email: OutgoingEmail
) -> None:
    bad = dataclasses.replace(email, to="bart(at)example.com")

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider_for(sendgrid_fake, settings).send_email(bad)

    assert caught.value.invalid_recipient
    assert "valid address" in caught.value.detail


async def test_a_wrong_api_key_is_permanent(
    sendgrid_fake: FakeSendGrid, settings: Settings, email: OutgoingEmail
) -> None:
    provider = provider_for(sendgrid_fake, settings, sendgrid_api_key="SG.revoked")

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send_email(email)

    assert caught.value.code == "401"
    assert "authorization grant" in caught.value.detail


async def test_429_retry_after_honours_x_ratelimit_reset(
    sendgrid_fake: FakeSendGrid, settings: Settings, email: OutgoingEmail
) -> None:
    reset = sendgrid_fake.rate_limit_next(reset_in=30)
    provider = provider_for(sendgrid_fake, settings)
    provider._clock = lambda: reset - 12.5

    with pytest.raises(RateLimitedError) as caught:
        await provider.send_email(email)

    assert caught.value.retry_after == pytest.approx(12.5)


async def test_429_retry_after_on_the_real_clock_and_past_reset(
    sendgrid_fake: FakeSendGrid, settings: Settings, email: OutgoingEmail
) -> None:
    provider = provider_for(sendgrid_fake, settings)
    sendgrid_fake.rate_limit_next(reset_in=30)
    with pytest.raises(RateLimitedError) as caught:
        await provider.send_email(email)
    assert 28 <= caught.value.retry_after <= 31

    sendgrid_fake.rate_limit_next(reset_in=-60)  # a clock skewed behind SendGrid's
    with pytest.raises(RateLimitedError) as caught:
        await provider.send_email(email)
    assert caught.value.retry_after == 1.0


async def test_429_without_reset_header_still_waits(
    sendgrid_fake: FakeSendGrid, settings: Settings, email: OutgoingEmail
) -> None:
    sendgrid_fake.fail_next(429)
    with pytest.raises(RateLimitedError) as caught:
        await provider_for(sendgrid_fake, settings).send_email(email)
    assert caught.value.retry_after >= 1.0


async def test_a_timeout_after_the_request_left_is_ambiguous(
    sendgrid_fake: FakeSendGrid, settings: Settings, email: OutgoingEmail
) -> None:
    sendgrid_fake.hang_next(1.5)
    provider = provider_for(sendgrid_fake, settings)
    provider.timeout = 0.3

    started = time.monotonic()
    with pytest.raises(AmbiguousDeliveryError):
        await provider.send_email(email)

    assert time.monotonic() - started < 1.5
    assert len(sendgrid_fake.requests) == 1  # it did reach the provider


async def test_connection_refused_is_transient(settings: Settings, email: OutgoingEmail) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = SendGridProvider(
        api_key="SG.x", email_from=settings.email_from, host=f"http://127.0.0.1:{port}"
    )

    with pytest.raises(TransientDeliveryError) as caught:
        await provider.send_email(email)
    assert caught.value.code == "connection"


async def test_a_line_break_in_a_header_value_is_refused_before_sending(
    sendgrid_fake: FakeSendGrid, settings: Settings, email: OutgoingEmail
) -> None:
    injected = dataclasses.replace(email, to_name="Bart\r\nBcc: evil@example.com")

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider_for(sendgrid_fake, settings).send_email(injected)

    assert caught.value.code == "invalid_header"
    assert sendgrid_fake.requests == []
