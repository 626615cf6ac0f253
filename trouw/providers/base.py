"""What every provider takes, returns and raises: the messages, the result and the error classes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

Category = Literal["transactional", "service", "promotional"]

# RFC 8058 one-click unsubscribe: the POST body a mailbox provider sends to the URL.
ONE_CLICK_POST = "List-Unsubscribe=One-Click"


@dataclass(frozen=True)
class OutgoingEmail:
    """One rendered email to one recipient, keyed by the send ledger's message key."""

    message_key: str
    to: str
    to_name: str | None
    subject: str
    preheader: str
    html: str
    text: str
    category: str  # transactional | service | promotional
    journey: str
    # When set: List-Unsubscribe: <url> and List-Unsubscribe-Post (RFC 8058).
    unsubscribe_url: str | None
    reply_to: str | None = None


@dataclass(frozen=True)
class OutgoingSms:
    """One rendered SMS to one E.164 number, keyed by the send ledger's message key."""

    message_key: str
    to: str
    body: str
    category: str
    journey: str


@dataclass(frozen=True)
class ProviderResult:
    """The provider accepted the message; provider_id maps webhooks and lookups back to it."""

    provider: str
    provider_id: str | None
    accepted_at: datetime | None = field(default=None, compare=False)


class DeliveryError(Exception):
    """A provider did not accept a message; the subclass says what the caller may do next."""

    def __init__(self, detail: str, *, provider: str, code: str | None = None) -> None:
        super().__init__(detail)
        self.provider = provider
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"{self.provider}{code}: {self.detail}"

    def _state(self) -> dict[str, Any]:
        return {"provider": self.provider, "code": self.code}

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive the default Exception pickling, and
        # errors may cross a process boundary (a process-pool activity, a test harness).
        return (_rebuild_error, (type(self), self.detail, self._state()))


def _rebuild_error(cls: type[DeliveryError], detail: str, state: dict[str, Any]) -> DeliveryError:
    return cls(detail, **state)


class PermanentDeliveryError(DeliveryError):
    """The provider refused the message for good: never retry it."""

    def __init__(
        self,
        detail: str,
        *,
        provider: str,
        code: str | None = None,
        invalid_recipient: bool = False,
        opted_out: bool = False,
    ) -> None:
        super().__init__(detail, provider=provider, code=code)
        self.invalid_recipient = invalid_recipient
        self.opted_out = opted_out

    def _state(self) -> dict[str, Any]:
        return {
            **super()._state(),
            "invalid_recipient": self.invalid_recipient,
            "opted_out": self.opted_out,
        }


class RateLimitedError(DeliveryError):
    """The provider did not process the request (429): retry no earlier than retry_after seconds."""

    def __init__(
        self, detail: str, *, provider: str, retry_after: float, code: str | None = None
    ) -> None:
        super().__init__(detail, provider=provider, code=code)
        self.retry_after = retry_after

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "retry_after": self.retry_after}


class TransientDeliveryError(DeliveryError):
    """The request never reached the provider, or was refused for now: safe to retry."""


class AmbiguousDeliveryError(DeliveryError):
    """The request left but no answer came (timeout, 5xx, lost connection): it may have been
    sent, so the caller reconciles before it retries."""


class ProviderConfigError(Exception):
    """A provider is unknown or lacks a setting; the message names the setting to set."""


@runtime_checkable
class EmailProvider(Protocol):
    """Sends one email; raises a DeliveryError subclass when it is not accepted."""

    name: str

    async def send_email(self, email: OutgoingEmail) -> ProviderResult: ...


@runtime_checkable
class SmsProvider(Protocol):
    """Sends one SMS; raises a DeliveryError subclass when it is not accepted."""

    name: str

    async def send_sms(self, sms: OutgoingSms) -> ProviderResult: ...


def message_id_for(message_key: str) -> str:
    """The RFC 5322 Message-ID of a message key: the same key always gives the same id, so a
    duplicate send is recognisable downstream (and no PII leaks into headers)."""
    digest = hashlib.sha256(message_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@trouw>"


def check_header_values(email: OutgoingEmail, *, provider: str) -> None:
    """Refuse CR/LF in values that become headers: a customer name must not add a Bcc."""
    for name, value in (
        ("to", email.to),
        ("to_name", email.to_name),
        ("subject", email.subject),
        ("reply_to", email.reply_to),
        ("unsubscribe_url", email.unsubscribe_url),
    ):
        if value is not None and ("\r" in value or "\n" in value):
            raise PermanentDeliveryError(
                f"{name} contains a line break", provider=provider, code="invalid_header"
            )
