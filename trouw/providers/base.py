"""What every provider takes, returns and raises: the messages, the result and the error classes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

# RFC 8058 one-click unsubscribe: the POST body a mailbox provider sends to the URL.
ONE_CLICK_POST = "List-Unsubscribe=One-Click"
# RFC 5322 2.1.1: no line of a message may be longer than 998 octets (CRLF excluded).
MAX_LINE_OCTETS = 998


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
    """The provider did not accept the message (not reached, refused for now, or the call
    ended before the message was complete): safe to retry, whatever the category."""


class AmbiguousDeliveryError(DeliveryError):
    """The complete message left but no answer came (SMTP: the connection was lost after the
    final dot; HTTP: a timeout or disconnect after the request was sent): the provider may
    have it, so the caller reconciles before it retries."""


class ProviderConfigError(Exception):
    """A provider is unknown or lacks a setting; the message names the setting to set."""


@runtime_checkable
class EmailProvider(Protocol):
    """Sends one email; raises a DeliveryError subclass when it is not accepted.

    `deadline` (a time.monotonic() instant) is when the call must have ended, connection
    closed, whatever the provider's own timeout says: the send ledger's lease ends after it.
    """

    name: str

    async def send_email(
        self, email: OutgoingEmail, *, deadline: float | None = None
    ) -> ProviderResult: ...


@runtime_checkable
class SmsProvider(Protocol):
    """Sends one SMS; raises a DeliveryError subclass when it is not accepted (`deadline` as
    for EmailProvider)."""

    name: str

    async def send_sms(
        self, sms: OutgoingSms, *, deadline: float | None = None
    ) -> ProviderResult: ...


@dataclass(frozen=True)
class LookupQuery:
    """A message whose send outcome was lost, as the provider can be asked about it."""

    message_key: str
    to: str
    since: datetime  # when the attempt whose answer was lost started (wall clock, UTC)
    body: str | None = None  # SMS text: Twilio's message list shows the text, not our key


@dataclass(frozen=True)
class LookupAnswer:
    """What the provider says. `found`: it has the message. Not found is final only when
    `settled`: a request may still be processed a while after its answer was lost, and the
    provider may show a message some time after accepting it."""

    found: bool
    settled: bool
    provider_id: str | None = None
    detail: str = ""
    settles_at: datetime | None = None  # not found yet: when "not found" will be final

    @classmethod
    def not_found(
        cls, since: datetime, age_seconds: float, settle_seconds: float, source: str
    ) -> LookupAnswer:
        """The provider does not list the message `age_seconds` after the attempt began:
        final once the provider's listing lag (`settle_seconds`) has passed."""
        return cls(
            found=False,
            settled=age_seconds >= settle_seconds,
            detail=f"{source}: no message {age_seconds:.0f} s after the attempt",
            settles_at=since + timedelta(seconds=settle_seconds),
        )


class LookupUnavailableError(Exception):
    """The provider could not be asked now (no answer, an error, no access): ask again later."""


@runtime_checkable
class ReconcilingProvider(Protocol):
    """A provider that can say whether it accepted a message whose answer was lost."""

    name: str

    async def lookup(self, query: LookupQuery) -> LookupAnswer: ...


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
    if email.category != "transactional" and not email.unsubscribe_url:
        # RFC 8058 and the mailbox providers' bulk-sender rules: every non-transactional
        # email carries a one-click unsubscribe.
        raise PermanentDeliveryError(
            f"a {email.category} email needs an unsubscribe URL",
            provider=provider,
            code="invalid_header",
        )
    if email.unsubscribe_url:
        try:
            list_unsubscribe(email.unsubscribe_url)
        except ValueError as exc:
            raise PermanentDeliveryError(
                str(exc), provider=provider, code="invalid_header"
            ) from None


def list_unsubscribe(url: str) -> str:
    """The RFC 2369 List-Unsubscribe value `<https://...>`, as it must appear on the wire.

    RFC 2369 forbids whitespace inside the brackets, so the value is never folded or
    encoded: it must be ASCII and fit on one line. ValueError when it cannot.
    """
    value = f"<{url}>"
    line = len("List-Unsubscribe: ") + len(value)
    if not value.isascii() or any(c in value for c in " \t\r\n"):
        raise ValueError("the unsubscribe URL must be ASCII without spaces")
    if line > MAX_LINE_OCTETS:
        raise ValueError(
            f"List-Unsubscribe would be {line} octets, over the {MAX_LINE_OCTETS} a header line "
            "may have (RFC 5322 2.1.1): shorten public_url"
        )
    return value
