"""Choosing providers by name: lazy imports and errors that name the setting to fix."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import trouw.providers as providers
from trouw.providers import (
    EmailProvider,
    ProviderConfigError,
    SmsProvider,
    email_provider,
    sms_provider,
)
from trouw.providers.base import PermanentDeliveryError, RateLimitedError
from trouw.settings import Settings


def test_outbox_is_the_default_for_both_channels(settings: Settings) -> None:
    assert isinstance(email_provider(settings), EmailProvider)
    assert isinstance(sms_provider(settings), SmsProvider)
    assert email_provider(settings).name == sms_provider(settings).name == "outbox"


def test_choosing_the_outbox_imports_no_sdk() -> None:
    code = (
        "import sys; from trouw.settings import Settings; import trouw.providers as p; "
        "p.email_provider(Settings(home='/tmp/x')); p.sms_provider(Settings(home='/tmp/x')); "
        "assert not {'sendgrid', 'twilio', 'aiohttp'} & set(sys.modules), sorted(sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_unknown_provider_names_the_setting_and_the_choices(settings: Settings) -> None:
    with pytest.raises(ProviderConfigError, match="TROUW_EMAIL_PROVIDER.*outbox, sendgrid, smtp"):
        email_provider(settings.model_copy(update={"email_provider": "mailgun"}))
    with pytest.raises(ProviderConfigError, match="TROUW_SMS_PROVIDER.*outbox, twilio"):
        sms_provider(settings.model_copy(update={"sms_provider": "messagebird"}))


@pytest.mark.parametrize(
    ("update", "setting"),
    [
        ({"email_provider": "sendgrid"}, "TROUW_SENDGRID_API_KEY"),
        ({"email_provider": "smtp"}, "TROUW_SMTP_HOST"),
        (
            {"email_provider": "smtp", "smtp_host": "mail.x", "smtp_username": "u"},
            "TROUW_SMTP_PASSWORD",
        ),
    ],
)
def test_unconfigured_email_provider_names_the_setting(
    settings: Settings, update: dict[str, object], setting: str
) -> None:
    with pytest.raises(ProviderConfigError, match=setting):
        email_provider(settings.model_copy(update=update))


def test_unconfigured_twilio_names_every_missing_setting(settings: Settings) -> None:
    with pytest.raises(ProviderConfigError) as caught:
        sms_provider(settings.model_copy(update={"sms_provider": "twilio"}))
    message = str(caught.value)
    assert message.startswith("sms provider 'twilio' needs")
    for setting in (
        "TROUW_TWILIO_ACCOUNT_SID",
        "TROUW_TWILIO_AUTH_TOKEN",
        "TROUW_TWILIO_MESSAGING_SERVICE_SID or TROUW_TWILIO_FROM_NUMBER",
    ):
        assert setting in message


def test_a_missing_sdk_says_what_to_install(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        providers.EMAIL_PROVIDERS, "sendgrid", ("not_installed_sdk_mod", "X", "sendgrid")
    )
    with pytest.raises(ProviderConfigError, match="install 'sendgrid'"):
        email_provider(settings.model_copy(update={"email_provider": "sendgrid"}))


def test_errors_survive_pickling() -> None:
    error = PermanentDeliveryError("gone", provider="twilio", code="21610", opted_out=True)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.provider, copy.code, copy.opted_out, copy.invalid_recipient) == (
        "twilio",
        "21610",
        True,
        False,
    )
    assert str(copy) == "twilio [21610]: gone"
    limited = pickle.loads(pickle.dumps(RateLimitedError("slow", provider="x", retry_after=3)))
    assert limited.retry_after == 3
