"""Fixtures: one fresh fake per test, and providers pointed at them through settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeSendGrid, FakeSmtpServer, FakeTwilio
from trouw.providers.base import OutgoingEmail, OutgoingSms
from trouw.settings import Settings


@pytest.fixture
def sendgrid_fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture
def twilio_fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def smtp_fake() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as fake:
        yield fake


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Explicit values, so a developer's config/trouw.toml or TROUW_* cannot leak in.
    return Settings(
        home=tmp_path / "home",
        public_url="https://trouw.example",
        send_rate_per_second=10_000,
        email_from="Tuincentrum De Linde <hallo@delinde.example>",
        email_reply_to=None,
    )


@pytest.fixture
def email() -> OutgoingEmail:
    return OutgoingEmail(
        message_key="run-1:confirm:email",
        to="bart@example.com",
        to_name="Bart Peeters",
        subject="Bedankt voor je bestelling",
        preheader="Je gazonmest is onderweg",
        html="<p>Dag Bart, bedankt!</p>",
        text="Dag Bart, bedankt!",
        category="service",
        journey="after-purchase",
        unsubscribe_url="https://trouw.example/u/tok123",
    )


@pytest.fixture
def sms() -> OutgoingSms:
    return OutgoingSms(
        message_key="run-1:refill:sms",
        to="+32470000001",
        body="Tijd om je gazonmest bij te vullen?",
        category="service",
        journey="refill",
    )
