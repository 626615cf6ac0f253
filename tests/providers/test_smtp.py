"""The SMTP provider against an aiosmtpd server: headers, TLS, login and reply classes."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest

from tests.fakes import FakeSmtpServer
from tests.fakes.smtp import self_signed_tls
from trouw.providers import email_provider
from trouw.providers.base import (
    AmbiguousDeliveryError,
    OutgoingEmail,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from trouw.providers.mime import message_id_for
from trouw.providers.smtp import SmtpProvider
from trouw.settings import Settings


def provider_for(fake: FakeSmtpServer, settings: Settings, **overrides: object) -> SmtpProvider:
    configured = settings.model_copy(
        update={
            "email_provider": "smtp",
            "smtp_host": fake.host,
            "smtp_port": fake.port,
            "smtp_starttls": False,
            "smtp_timeout_seconds": 5.0,
            **overrides,
        }
    )
    provider = email_provider(configured)
    assert isinstance(provider, SmtpProvider)
    return provider


async def test_send_has_deterministic_message_id_and_one_click_headers(
    smtp_fake: FakeSmtpServer, settings: Settings, email: OutgoingEmail
) -> None:
    provider = provider_for(smtp_fake, settings)
    first = await provider.send_email(email)
    again = await provider.send_email(email)  # a retry: downstream sees the same id

    expected_id = message_id_for("run-1:confirm:email", sender=settings.email_from)
    assert first.provider_id == again.provider_id == expected_id
    assert len(expected_id) == len("<>@delinde.example") + 32
    mails = smtp_fake.received
    assert [m.rcpt_tos for m in mails] == [["bart@example.com"], ["bart@example.com"]]
    assert mails[0].mail_from == "hallo@delinde.example"
    message = mails[0].message
    assert message["Message-ID"] == mails[1].message["Message-ID"] == expected_id
    assert message["List-Unsubscribe"] == "<https://trouw.example/u/tok123>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["To"] == "Bart Peeters <bart@example.com>"
    assert message["From"] == "Tuincentrum De Linde <hallo@delinde.example>"
    assert message["Subject"] == "Bedankt voor je bestelling"
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    html = message.get_body(("html",))
    assert html is not None and "Dag Bart" in html.get_content()


async def test_starttls_required_but_not_offered_is_permanent(
    smtp_fake: FakeSmtpServer, settings: Settings, email: OutgoingEmail
) -> None:
    provider = provider_for(smtp_fake, settings, smtp_starttls=True)

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send_email(email)

    assert caught.value.code == "starttls_unavailable"
    assert "TROUW_SMTP_STARTTLS" in caught.value.detail
    assert smtp_fake.received == []


async def test_starttls_and_login(tmp_path: Path, settings: Settings, email: OutgoingEmail) -> None:
    server_tls, client_tls = self_signed_tls(tmp_path)
    with FakeSmtpServer(tls_context=server_tls, credentials=("shop", "secret")) as fake:
        provider = SmtpProvider(
            host=fake.host,
            port=fake.port,
            username="shop",
            password="secret",
            starttls=True,
            timeout=5,
            email_from=settings.email_from,
            ssl_context=client_tls,
        )
        await provider.send_email(email)

        assert fake.logins == ["shop"]
        assert len(fake.received) == 1

        provider.password = "wrong"
        with pytest.raises(PermanentDeliveryError) as caught:
            await provider.send_email(email)
        assert caught.value.code == "535"


@pytest.mark.parametrize(
    ("reply", "expected", "invalid_recipient"),
    [
        ("550 5.1.1 No such user here", PermanentDeliveryError, True),
        ("553 5.1.3 Bad destination mailbox address syntax", PermanentDeliveryError, True),
        ("554 5.7.1 Relay access denied", PermanentDeliveryError, False),
        ("450 4.2.1 Mailbox busy, try later", TransientDeliveryError, False),
        ("451 4.7.1 Greylisted", TransientDeliveryError, False),
    ],
)
async def test_recipient_replies_are_classified(
    smtp_fake: FakeSmtpServer,
    settings: Settings,
    email: OutgoingEmail,
    reply: str,
    expected: type[Exception],
    invalid_recipient: bool,
) -> None:
    smtp_fake.refuse("bart@example.com", reply)

    with pytest.raises(expected) as caught:
        await provider_for(smtp_fake, settings).send_email(email)

    assert caught.value.code == reply[:3]  # type: ignore[attr-defined]
    if isinstance(caught.value, PermanentDeliveryError):
        assert caught.value.invalid_recipient is invalid_recipient
    assert smtp_fake.received == []


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("451 4.3.0 Local error in processing", TransientDeliveryError),
        ("552 5.3.4 Message size exceeds fixed limit", PermanentDeliveryError),
        ("554 5.7.1 Message rejected as spam", PermanentDeliveryError),
    ],
)
async def test_data_replies_are_classified(
    smtp_fake: FakeSmtpServer,
    settings: Settings,
    email: OutgoingEmail,
    reply: str,
    expected: type[Exception],
) -> None:
    smtp_fake.fail_next_data(reply)

    with pytest.raises(expected) as caught:
        await provider_for(smtp_fake, settings).send_email(email)
    assert caught.value.code == reply[:3]  # type: ignore[attr-defined]


async def test_connection_lost_after_data_is_ambiguous(
    smtp_fake: FakeSmtpServer, settings: Settings, email: OutgoingEmail
) -> None:
    smtp_fake.drop_next_data()

    with pytest.raises(AmbiguousDeliveryError):
        await provider_for(smtp_fake, settings).send_email(email)
    assert len(smtp_fake.received) == 1  # the server did get it: the caller must reconcile


async def test_connection_refused_is_transient(settings: Settings, email: OutgoingEmail) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = SmtpProvider(
        host="127.0.0.1", port=port, starttls=False, timeout=2, email_from=settings.email_from
    )
    with pytest.raises(TransientDeliveryError) as caught:
        await provider.send_email(email)
    assert caught.value.code == "connection"


async def test_header_injection_is_refused(
    smtp_fake: FakeSmtpServer, settings: Settings, email: OutgoingEmail
) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider_for(smtp_fake, settings).send_email(
            dataclasses.replace(email, subject="Hi\nBcc: evil@example.com")
        )
    assert caught.value.code == "invalid_header"
    assert smtp_fake.received == []
