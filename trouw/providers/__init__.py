"""Email and SMS providers chosen by name from settings; each SDK is imported only when chosen."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trouw.providers.base import (
    AmbiguousDeliveryError,
    DeliveryError,
    EmailProvider,
    OutgoingEmail,
    OutgoingSms,
    PermanentDeliveryError,
    ProviderConfigError,
    ProviderResult,
    RateLimitedError,
    SmsProvider,
    TransientDeliveryError,
)

if TYPE_CHECKING:
    from trouw.settings import Settings

__all__ = [
    "EMAIL_PROVIDERS",
    "SMS_PROVIDERS",
    "AmbiguousDeliveryError",
    "DeliveryError",
    "EmailProvider",
    "OutgoingEmail",
    "OutgoingSms",
    "PermanentDeliveryError",
    "ProviderConfigError",
    "ProviderResult",
    "RateLimitedError",
    "SmsProvider",
    "TransientDeliveryError",
    "aclose_provider",
    "email_provider",
    "sms_provider",
]

# name -> (module, class, pip package that provides its SDK). Strings, not classes, so that
# choosing the outbox never imports sendgrid or twilio (fsspec's registry does the same).
EMAIL_PROVIDERS: dict[str, tuple[str, str, str | None]] = {
    "outbox": ("trouw.providers.outbox", "OutboxProvider", None),
    "sendgrid": ("trouw.providers.sendgrid.sending", "SendGridProvider", "sendgrid"),
    "smtp": ("trouw.providers.smtp", "SmtpProvider", None),
}
SMS_PROVIDERS: dict[str, tuple[str, str, str | None]] = {
    "outbox": ("trouw.providers.outbox", "OutboxProvider", None),
    "twilio": ("trouw.providers.twilio.sending", "TwilioProvider", "twilio"),
}


def _build(
    channel: str,
    setting: str,
    name: str,
    registry: dict[str, tuple[str, str, str | None]],
    settings: Settings,
) -> Any:
    try:
        module_name, class_name, package = registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise ProviderConfigError(
            f"unknown {channel} provider {name!r}; set {setting} to one of: {known}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; install {package!r}" if package else ""
        raise ProviderConfigError(f"{channel} provider {name!r} cannot load: {exc}{hint}") from exc
    return getattr(module, class_name).from_settings(settings)


def email_provider(settings: Settings) -> EmailProvider:
    """The email provider named by TROUW_EMAIL_PROVIDER. Build it once per worker and reuse
    it: it holds the HTTP client and shares the per-provider rate limit."""
    provider: EmailProvider = _build(
        "email", "TROUW_EMAIL_PROVIDER", settings.email_provider, EMAIL_PROVIDERS, settings
    )
    return provider


def sms_provider(settings: Settings) -> SmsProvider:
    """The SMS provider named by TROUW_SMS_PROVIDER; build once per worker, as for email."""
    provider: SmsProvider = _build(
        "sms", "TROUW_SMS_PROVIDER", settings.sms_provider, SMS_PROVIDERS, settings
    )
    return provider


async def aclose_provider(provider: EmailProvider | SmsProvider) -> None:
    """Release a provider's connections (at worker shutdown); harmless for any provider."""
    close = getattr(provider, "aclose", None)
    if close is not None:
        await close()
