"""SendGrid v3 Mail Send (the body made by the official `sendgrid` helpers) over aiohttp, under one
deadline per call, with errors classified and lost answers looked up in the Email Activity API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
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
    DeliveryError,
    LookupAnswer,
    LookupQuery,
    LookupUnavailableError,
    OutgoingEmail,
    PermanentDeliveryError,
    ProviderConfigError,
    ProviderResult,
    RateLimitedError,
    TransientDeliveryError,
    check_header_values,
    list_unsubscribe,
)
from trouw.providers.deadline import CallDeadline, progress_trace, track_request
from trouw.providers.mime import parse_sender
from trouw.providers.ratelimit import TokenBucket, bucket_for

if TYPE_CHECKING:
    from trouw.settings import Settings

DEFAULT_TIMEOUT_SECONDS = 30.0
# When a 429 lacks X-RateLimit-Reset we still must not hammer: SendGrid windows are short.
DEFAULT_RETRY_AFTER_SECONDS = 5.0
MIN_RETRY_AFTER_SECONDS = 1.0
# A request whose answer was lost may still be processed for a while, and the Email Activity
# API shows a message some time after Mail Send accepted it: "not found" means "not accepted"
# only this long after the attempt (our assumption; SendGrid documents no figure; the default
# of TROUW_SENDGRID_LOOKUP_SETTLE_SECONDS, a deployment that knows better sets that). Past
# ANSWER_WITHIN_SECONDS without an answer, the category rule decides.
LOOKUP_SETTLE_SECONDS = 600.0
ANSWER_WITHIN_SECONDS = 3600.0
USER_AGENT = f"sendgrid/{sendgrid.__version__};python (trouw)"


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
        lookup_settle_seconds: float = LOOKUP_SETTLE_SECONDS,
        answer_within_seconds: float = ANSWER_WITHIN_SECONDS,
    ) -> None:
        self.api_key = api_key
        self.host = host.rstrip("/")
        self.sender = parse_sender(email_from)
        self.reply_to = reply_to
        self.sandbox = sandbox
        self.timeout = timeout
        self.limiter = limiter
        self._clock = clock  # wall clock: X-RateLimit-Reset is a Unix epoch
        self.lookup_settle_seconds = lookup_settle_seconds
        self.answer_within_seconds = answer_within_seconds
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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
            lookup_settle_seconds=settings.sendgrid_lookup_settle_seconds,
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

    async def send_email(
        self, email: OutgoingEmail, *, deadline: float | None = None
    ) -> ProviderResult:
        check_header_values(email, provider=self.name)
        body = self.build_request(email)
        if self.limiter is not None:
            await self.limiter.acquire()
        call = CallDeadline.within(self.timeout, until=deadline)
        status, text, headers = await self._request(
            "POST", "/v3/mail/send", call=call, json_body=body
        )
        if status >= 400:
            raise self.classify_http_error(status, text, headers)
        return ProviderResult(
            provider=self.name,
            provider_id=headers.get("X-Message-Id"),
            accepted_at=datetime.now(UTC),
        )

    async def lookup(self, query: LookupQuery) -> LookupAnswer:
        """Ask the Email Activity API (a paid add-on) for messages carrying our message key in
        custom_args (the API calls them unique_args)."""
        escaped = query.message_key.replace("\\", "\\\\").replace('"', '\\"')
        params = {"query": f"(unique_args['message_key']=\"{escaped}\")", "limit": "10"}
        call = CallDeadline.within(self.timeout)
        try:
            status, text, _ = await self._request("GET", "/v3/messages", call=call, params=params)
        except DeliveryError as exc:
            raise LookupUnavailableError(str(exc)) from exc
        if status != 200:
            raise LookupUnavailableError(f"Email Activity API answered {status}: {text[:200]}")
        try:
            messages = json.loads(text).get("messages") or []
        except (ValueError, AttributeError) as exc:
            raise LookupUnavailableError(f"Email Activity API answer is not JSON: {exc}") from exc
        if messages:
            first = messages[0]
            return LookupAnswer(
                found=True,
                settled=True,
                provider_id=str(first.get("msg_id") or "") or None,
                detail=f"Email Activity: {first.get('status')}",
            )
        age = self._clock() - query.since.timestamp()
        return LookupAnswer.not_found(
            query.since, age, self.lookup_settle_seconds, "Email Activity"
        )

    async def aclose(self) -> None:
        """Close the aiohttp session of the current loop."""
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = self._loop = None

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            self._session = aiohttp.ClientSession(trace_configs=[progress_trace()])
            self._loop = loop
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        call: CallDeadline,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, str, Mapping[str, str]]:
        """One request under the call's deadline. aiohttp, not the SDK's urllib: urllib's
        timeout is per socket operation and a thread running it cannot be stopped, while a
        cancelled aiohttp request closes its connection."""
        left = call.before_start(self.name)
        session = self._session_for_loop()
        progress = track_request()
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        try:
            async with asyncio.timeout(left):
                async with session.request(
                    method,
                    self.host + path,
                    json=json_body,
                    params=params,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=left),
                ) as response:
                    text = await response.text()
                    return response.status, text, response.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise progress.failure(exc, self.name) from exc

    def classify_http_error(
        self, status: int, body: bytes | str | None, headers: Mapping[str, str] | None
    ) -> DeliveryError:
        """Map an answer >= 400 to our classes. Any answer means SendGrid did not take the
        message: 429 waits for the reset, 5xx is retried, other 4xx are permanent."""
        detail = _error_text(body) or f"HTTP {status}"
        code = str(status)
        if status == 429:
            return RateLimitedError(
                detail,
                provider=self.name,
                code=code,
                retry_after=self._retry_after(headers),
            )
        if status >= 500:
            return TransientDeliveryError(detail, provider=self.name, code=code)
        return PermanentDeliveryError(
            detail,
            provider=self.name,
            code=code,
            invalid_recipient=status == 400 and _names_invalid_recipient(body),
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
