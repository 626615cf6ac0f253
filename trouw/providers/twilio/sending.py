"""SMS through Twilio's official client (async) under one deadline per call, with Twilio's error
codes classified and lost answers looked up in the Messages list."""

from __future__ import annotations

import asyncio
import base64
import contextvars
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from trouw.providers.base import (
    DeliveryError,
    LookupAnswer,
    LookupQuery,
    LookupUnavailableError,
    OutgoingSms,
    PermanentDeliveryError,
    ProviderConfigError,
    ProviderResult,
    RateLimitedError,
    TransientDeliveryError,
)
from trouw.providers.deadline import CallDeadline, progress_trace, track_request
from trouw.providers.ratelimit import TokenBucket, bucket_for

if TYPE_CHECKING:
    from trouw.settings import Settings

TWILIO_API = "https://api.twilio.com"
DEFAULT_TIMEOUT_SECONDS = 30.0
# Twilio asks for exponential backoff; this is the first step when no Retry-After comes.
DEFAULT_RETRY_AFTER_SECONDS = 2.0
# Twilio creates the message resource before it answers the create, so the list shows it at
# once; a request whose answer was lost may still be processed for a while. A minute covers
# both (our assumption; the default of TROUW_TWILIO_LOOKUP_SETTLE_SECONDS). Past
# ANSWER_WITHIN_SECONDS without an answer (Twilio unreachable), the category rule decides.
LOOKUP_SETTLE_SECONDS = 60.0
ANSWER_WITHIN_SECONDS = 900.0
# Our clock and Twilio's may differ: a message created this long before the attempt still counts.
CLOCK_SKEW = timedelta(minutes=2)

INVALID_RECIPIENT_CODES = frozenset({21211, 21614, 21635})  # bad number, not SMS-capable, landline
OPTED_OUT_CODES = frozenset({21610})  # the recipient replied STOP
RATE_LIMIT_CODES = frozenset({20429})

# Retry-After of the last 429 seen in this task: TwilioRestException does not carry headers.
_retry_after: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "twilio_retry_after", default=None
)


def rewrite_url(url: str, base_url: str) -> str:
    """Send a request meant for Twilio's API host to base_url (a local fake, a proxy)."""
    if base_url.rstrip("/") == TWILIO_API:
        return url
    parts = urlsplit(url)
    # Any *.twilio.com API host: TWILIO_REGION/TWILIO_EDGE in the environment rename it.
    if parts.hostname and parts.hostname.endswith("twilio.com"):
        rest = url[len(f"{parts.scheme}://{parts.netloc}") :]
        return base_url.rstrip("/") + rest
    return url


def _note_retry_after(status: int, headers: Mapping[str, str] | None) -> None:
    if status != 429 or headers is None:
        return
    value = headers.get("Retry-After")
    try:
        _retry_after.set(float(value) if value is not None else None)
    except ValueError:
        _retry_after.set(None)  # an HTTP date; the default backoff is close enough


class BaseUrlHttpClient(TwilioHttpClient):  # type: ignore[misc]  # untyped SDK
    """The synchronous client pointed at base_url: twilio.rest.Client has no base-URL option,
    but it takes any http_client (the documented way to reach a proxy or a fake)."""

    def __init__(self, *, base_url: str, timeout: float | None = None) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        response: Response = super().request(
            method, rewrite_url(url, self.base_url), *args, **kwargs
        )
        _note_retry_after(response.status_code, response.headers)
        return response


class AsyncBaseUrlHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # untyped SDK
    """The asyncio client (aiohttp) pointed at base_url; see BaseUrlHttpClient."""

    def __init__(self, *, base_url: str, timeout: float | None = None) -> None:
        # The trace marks when a request has left: before that, a failure means "not sent".
        super().__init__(timeout=timeout, trace_configs=[progress_trace()])
        self.base_url = base_url

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's signature
        allow_redirects: bool = False,
    ) -> Response:
        if auth is not None:
            # Basic auth as a header: aiohttp deprecates its BasicAuth object for removal.
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            headers = {**(headers or {}), "Authorization": f"Basic {token}"}
        # The stock client ignores its own timeout and aiohttp then waits for ever; a send
        # must end, so that the caller can reconcile.
        response: Response = await super().request(
            method,
            rewrite_url(url, self.base_url),
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )
        _note_retry_after(response.status_code, response.headers)
        return response


class TwilioProvider:
    """SMS through Twilio Programmable Messaging.

    Uses AsyncTwilioHttpClient and messages.create_async: measured 2-4x the sends/s of the
    requests-based client in a thread at 8-32 in flight (docs/providers.md). aiohttp
    sessions belong to one event loop, so the client is made on first use in each loop.
    """

    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        public_url: str,
        messaging_service_sid: str | None = None,
        from_number: str | None = None,
        base_url: str = TWILIO_API,
        validity_seconds: int = 14400,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        limiter: TokenBucket | None = None,
        lookup_settle_seconds: float = LOOKUP_SETTLE_SECONDS,
        answer_within_seconds: float = ANSWER_WITHIN_SECONDS,
    ) -> None:
        if not messaging_service_sid and not from_number:
            raise ValueError("a messaging service SID or a from number is needed")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.public_url = public_url.rstrip("/")
        self.messaging_service_sid = messaging_service_sid
        self.from_number = from_number
        self.base_url = base_url
        self.validity_seconds = validity_seconds
        self.timeout = timeout
        self.limiter = limiter
        self.lookup_settle_seconds = lookup_settle_seconds
        self.answer_within_seconds = answer_within_seconds
        self._client: Client | None = None
        self._http: AsyncBaseUrlHttpClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioProvider:
        missing = [
            env
            for env, value in (
                ("TROUW_TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
                ("TROUW_TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
            )
            if not value
        ]
        if not settings.twilio_messaging_service_sid and not settings.twilio_from_number:
            missing.append("TROUW_TWILIO_MESSAGING_SERVICE_SID or TROUW_TWILIO_FROM_NUMBER")
        if missing:
            raise ProviderConfigError(f"sms provider 'twilio' needs {', '.join(missing)}")
        assert settings.twilio_account_sid and settings.twilio_auth_token  # checked above
        return cls(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            public_url=settings.public_url,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            from_number=settings.twilio_from_number,
            base_url=settings.twilio_base_url,
            validity_seconds=settings.sms_validity_seconds,
            timeout=float(getattr(settings, "provider_timeout_seconds", DEFAULT_TIMEOUT_SECONDS)),
            limiter=bucket_for(cls.name, settings.send_rate_per_second),
            lookup_settle_seconds=settings.twilio_lookup_settle_seconds,
        )

    def status_callback_url(self, message_key: str) -> str:
        """Where Twilio posts delivery status; mk maps the callback to the ledger row."""
        return f"{self.public_url}/v1/callbacks/twilio/status?mk={quote(message_key, safe='')}"

    def create_params(self, sms: OutgoingSms) -> dict[str, Any]:
        """The keyword arguments for messages.create(_async)."""
        params: dict[str, Any] = {
            "to": sms.to,
            "body": sms.body,
            "status_callback": self.status_callback_url(sms.message_key),
            # A message stuck in Twilio's queue must not arrive late, e.g. at night.
            "validity_period": self.validity_seconds,
        }
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        if self.from_number:
            params["from_"] = self.from_number
        return params

    def _client_for_loop(self) -> Client:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._http = AsyncBaseUrlHttpClient(base_url=self.base_url, timeout=self.timeout)
            self._client = Client(self.account_sid, self.auth_token, http_client=self._http)
            self._loop = loop
        return self._client

    async def send_sms(self, sms: OutgoingSms, *, deadline: float | None = None) -> ProviderResult:
        params = self.create_params(sms)
        if self.limiter is not None:
            await self.limiter.acquire()
        call = CallDeadline.within(self.timeout, until=deadline)
        left = call.before_start(self.name)
        client = self._client_for_loop()
        _retry_after.set(None)
        progress = track_request()
        try:
            # The outer timeout is the call's deadline; cancelling the request closes its
            # connection, so nothing of it can still leave afterwards.
            async with asyncio.timeout(left):
                message = await client.messages.create_async(**params)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise classify_twilio_error(exc, retry_after=_retry_after.get()) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise progress.failure(exc, self.name) from exc
        return ProviderResult(
            provider=self.name, provider_id=message.sid, accepted_at=datetime.now(UTC)
        )

    async def lookup(self, query: LookupQuery) -> LookupAnswer:
        """Ask the Messages list (filtered by recipient) for a message with this text created
        since the attempt began: Twilio keeps no key of ours on the message itself."""
        client = self._client_for_loop()
        call = CallDeadline.within(self.timeout)
        try:
            async with asyncio.timeout(call.before_start(self.name)):
                found = await client.messages.list_async(to=query.to, limit=50, page_size=50)
        except (DeliveryError, TwilioRestException, TwilioServiceException) as exc:
            raise LookupUnavailableError(str(exc)) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise LookupUnavailableError(f"Messages list unreachable: {exc!r}") from exc
        since = query.since - CLOCK_SKEW
        for message in found:
            created = message.date_created
            if message.body == query.body and created is not None and created >= since:
                return LookupAnswer(
                    found=True,
                    settled=True,
                    provider_id=message.sid,
                    detail=f"Messages list: {message.sid} {message.status}",
                )
        age = (datetime.now(UTC) - query.since).total_seconds()
        return LookupAnswer.not_found(query.since, age, self.lookup_settle_seconds, "Messages list")

    async def aclose(self) -> None:
        """Close the aiohttp session of the current loop's client."""
        if self._http is not None and self._loop is asyncio.get_running_loop():
            await self._http.close()
        self._client = self._http = self._loop = None


def classify_twilio_error(
    exc: TwilioRestException | TwilioServiceException, *, retry_after: float | None = None
) -> DeliveryError:
    """Map a Twilio API error (its HTTP status and Twilio code) to our classes."""
    status = int(exc.status)
    code_number = int(exc.code) if exc.code is not None else None
    code = str(code_number if code_number is not None else status)
    message = getattr(exc, "msg", None) or getattr(exc, "detail", None) or getattr(exc, "title", "")
    detail = f"HTTP {status}: {message}"
    if status == 429 or code_number in RATE_LIMIT_CODES:
        # Twilio: a request answered 429 "is never processed and is always safe to retry".
        wait = retry_after if retry_after is not None and retry_after > 0 else None
        return RateLimitedError(
            detail,
            provider="twilio",
            code=code,
            retry_after=wait or DEFAULT_RETRY_AFTER_SECONDS,
        )
    if status >= 500:
        # An answer, even a 5xx, means Twilio did not create the message: retry it.
        return TransientDeliveryError(detail, provider="twilio", code=code)
    return PermanentDeliveryError(
        detail,
        provider="twilio",
        code=code,
        invalid_recipient=code_number in INVALID_RECIPIENT_CODES,
        opted_out=code_number in OPTED_OUT_CODES,
    )
