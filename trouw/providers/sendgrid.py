"""SendGrid v3 Mail Send through the official `sendgrid` client, with errors classified."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.error
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import python_http_client.exceptions as http_errors
import sendgrid
from sendgrid.helpers.mail import (
    Category,
    Content,
    CustomArg,
    From,
    Header,
    Mail,
    MailSettings,
    ReplyTo,
    SandBoxMode,
    To,
)

from trouw.providers.base import (
    ONE_CLICK_POST,
    AmbiguousDeliveryError,
    DeliveryError,
    OutgoingEmail,
    PermanentDeliveryError,
    ProviderConfigError,
    ProviderResult,
    RateLimitedError,
    TransientDeliveryError,
    check_header_values,
    list_unsubscribe,
)
from trouw.providers.mime import parse_sender
from trouw.providers.ratelimit import TokenBucket, bucket_for

if TYPE_CHECKING:
    from trouw.settings import Settings

DEFAULT_TIMEOUT_SECONDS = 30.0
# When a 429 lacks X-RateLimit-Reset we still must not hammer: SendGrid windows are short.
DEFAULT_RETRY_AFTER_SECONDS = 5.0
MIN_RETRY_AFTER_SECONDS = 1.0


class SendGridProvider:
    """Email through SendGrid. Build once per worker: the client and the rate limit are shared."""

    name = "sendgrid"

    def __init__(
        self,
        *,
        api_key: str,
        email_from: str,
        host: str = "https://api.sendgrid.com",
        reply_to: str | None = None,
        sandbox: bool = False,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        limiter: TokenBucket | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = sendgrid.SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        self.sender = parse_sender(email_from)
        self.reply_to = reply_to
        self.sandbox = sandbox
        self.timeout = timeout
        self.limiter = limiter
        self._clock = clock  # wall clock: X-RateLimit-Reset is a Unix epoch

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridProvider:
        if not settings.sendgrid_api_key:
            raise ProviderConfigError("email provider 'sendgrid' needs TROUW_SENDGRID_API_KEY")
        return cls(
            api_key=settings.sendgrid_api_key,
            email_from=settings.email_from,
            host=settings.sendgrid_host,
            reply_to=settings.email_reply_to,
            sandbox=settings.sendgrid_sandbox,
            timeout=float(getattr(settings, "provider_timeout_seconds", DEFAULT_TIMEOUT_SECONDS)),
            limiter=bucket_for(cls.name, settings.send_rate_per_second),
        )

    def build_request(self, email: OutgoingEmail) -> dict[str, Any]:
        """The v3 Mail Send JSON body for one email."""
        name, address = self.sender
        mail = Mail(
            from_email=From(address, name),
            to_emails=To(email.to, email.to_name),
            subject=email.subject,
        )
        # text/plain must come first: the API rejects other orders.
        mail.add_content(Content("text/plain", email.text))
        mail.add_content(Content("text/html", email.html))
        # Categories make the stats per kind and per journey; the message key in custom_args
        # comes back on every webhook event, which is how events find their ledger row.
        # The API refuses duplicate categories, so a journey named like its category counts once.
        names = dict.fromkeys(name for name in (email.category, email.journey) if name)
        mail.category = [Category(name) for name in names]
        mail.custom_arg = CustomArg("message_key", email.message_key)
        if email.unsubscribe_url:
            mail.header = [
                Header("List-Unsubscribe", list_unsubscribe(email.unsubscribe_url)),
                Header("List-Unsubscribe-Post", ONE_CLICK_POST),
            ]
        reply_to = email.reply_to or self.reply_to
        if reply_to:
            reply_name, reply_address = parse_sender(reply_to)
            mail.reply_to = ReplyTo(reply_address, reply_name)
        if self.sandbox:
            settings = MailSettings()
            settings.sandbox_mode = SandBoxMode(True)
            mail.mail_settings = settings
        body: dict[str, Any] = mail.get()
        return body

    async def send_email(self, email: OutgoingEmail) -> ProviderResult:
        check_header_values(email, provider=self.name)
        body = self.build_request(email)
        if self.limiter is not None:
            await self.limiter.acquire()
        # python-http-client is urllib, hence blocking: keep it off the event loop.
        return await asyncio.to_thread(self._post, body)

    async def aclose(self) -> None:
        """Nothing to release: urllib opens one connection per request."""

    def _post(self, body: dict[str, Any]) -> ProviderResult:
        try:
            response = self.client.client.mail.send.post(request_body=body, timeout=self.timeout)
        except http_errors.HTTPError as exc:
            raise self.classify_http_error(exc) from None
        except urllib.error.URLError as exc:
            # urllib wraps only errors raised while connecting and writing the request.
            raise TransientDeliveryError(
                f"request not sent: {exc.reason}", provider=self.name, code="connection"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            # Raised while waiting for or reading the answer: the request was complete.
            raise AmbiguousDeliveryError(
                f"no answer after the request was sent: {exc!r}", provider=self.name, code="timeout"
            ) from exc
        headers = response.headers
        message_id = headers.get("X-Message-Id") if headers is not None else None
        return ProviderResult(
            provider=self.name, provider_id=message_id, accepted_at=datetime.now(UTC)
        )

    def classify_http_error(self, exc: http_errors.HTTPError) -> DeliveryError:
        """Map a python-http-client error (raised for every status >= 400) to our classes."""
        status = int(exc.status_code)
        detail = _error_text(exc.body) or str(exc.reason)
        code = str(status)
        if status == 429:
            return RateLimitedError(
                detail,
                provider=self.name,
                code=code,
                retry_after=self._retry_after(exc.headers),
            )
        if status >= 500:
            return AmbiguousDeliveryError(detail, provider=self.name, code=code)
        return PermanentDeliveryError(
            detail,
            provider=self.name,
            code=code,
            invalid_recipient=status == 400 and _names_invalid_recipient(exc.body),
        )

    def _retry_after(self, headers: Mapping[str, str] | None) -> float:
        reset = headers.get("X-RateLimit-Reset") if headers is not None else None
        try:
            wait = float(reset) - self._clock() if reset is not None else None
        except ValueError:
            wait = None
        if wait is None:
            return DEFAULT_RETRY_AFTER_SECONDS
        return max(wait, MIN_RETRY_AFTER_SECONDS)


def _errors(body: bytes | str | None) -> list[dict[str, Any]]:
    if not body:
        return []
    try:
        parsed = json.loads(body)
    except ValueError:
        return []
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    return [error for error in errors or [] if isinstance(error, dict)]


def _error_text(body: bytes | str | None) -> str:
    parts = []
    for error in _errors(body):
        field = error.get("field")
        message = str(error.get("message", ""))
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)


def _names_invalid_recipient(body: bytes | str | None) -> bool:
    """SendGrid reports a bad address as a 400 whose error points at a recipient field
    (personalizations.0.to.0.email) or says the address is not valid."""
    for error in _errors(body):
        field = str(error.get("field") or "")
        message = str(error.get("message") or "").lower()
        if field:
            # Only a recipient field counts: a bad From address is our configuration.
            if field.startswith("personalizations") and ".to" in field:
                return True
        elif "valid address" in message or "invalid email" in message:
            return True
    return False
