"""One provider call's total deadline, and how far the call got: what decides "may it be sent"."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp

from trouw.providers.base import AmbiguousDeliveryError, DeliveryError, TransientDeliveryError

# Below this much time left, a call is not started: it could not finish before its deadline,
# and starting it would only turn a clean "not sent" into an unknown outcome.
MIN_CALL_SECONDS = 0.1


@dataclass
class CallDeadline:
    """The instant (time.monotonic) by which one provider call must have ended.

    One deadline covers the whole call, from connecting to the final answer; per socket
    operation timeouts (smtplib, urllib) let a slow server stretch a call without limit.
    """

    at: float
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @classmethod
    def within(
        cls,
        seconds: float,
        *,
        until: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> CallDeadline:
        """`seconds` from now, or `until` (an earlier bound from the caller) if that is sooner."""
        at = clock() + seconds
        return cls(at if until is None else min(at, until), clock)

    def remaining(self) -> float:
        return self.at - self.clock()

    def before_start(self, provider: str) -> float:
        """The seconds left, or TransientDeliveryError when too few are left to try at all
        (nothing has been sent yet, so the caller may retry freely)."""
        left = self.remaining()
        if left < MIN_CALL_SECONDS:
            raise TransientDeliveryError(
                f"the call deadline passed before the request was sent ({left:.1f} s left)",
                provider=provider,
                code="deadline",
            )
        return left


@dataclass
class HttpProgress:
    """How far one HTTP request got. Once any of it was written, the provider may act on it."""

    request_sent: bool = False

    def failure(self, exc: BaseException, provider: str) -> DeliveryError:
        """What a transport error means for the send: safe to retry, or perhaps sent."""
        if not self.request_sent:
            # Refused, DNS, TLS, connect timeout: nothing of the request left.
            return TransientDeliveryError(
                f"request not sent: {exc!r}", provider=provider, code="connection"
            )
        return AmbiguousDeliveryError(
            f"no answer after the request was sent: {exc!r}", provider=provider, code="timeout"
        )


# The request in flight in this task: aiohttp's trace hooks run in the task that made the
# request, so a context variable tells them which call to mark.
_progress: contextvars.ContextVar[HttpProgress | None] = contextvars.ContextVar(
    "provider_http_progress", default=None
)


def track_request() -> HttpProgress:
    """Start tracking the next request made by this task."""
    progress = HttpProgress()
    _progress.set(progress)
    return progress


async def _headers_sent(session: Any, context: SimpleNamespace, params: Any) -> None:
    progress = _progress.get()
    if progress is not None:
        progress.request_sent = True


def progress_trace() -> aiohttp.TraceConfig:
    """A TraceConfig that marks the tracked request as sent when its headers were written
    (the body follows at once; a server cannot act on a request it has not read)."""
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_headers_sent)
    trace.on_request_chunk_sent.append(_headers_sent)
    trace.freeze()
    return trace
