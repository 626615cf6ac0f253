"""A token bucket per provider, so Trouw throttles itself before the provider answers 429."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """Allows `rate` sends per second on average, with bursts of up to `burst`.

    acquire() reserves its token before it awaits anything, so concurrent callers on one
    event loop queue up in order without a lock (an asyncio.Lock would tie the bucket to
    one loop, and a worker may build providers before its loop runs).
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        # One second's worth by default: smooth enough for providers that count per second.
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    @property
    def tokens(self) -> float:
        """Tokens available now; negative while callers are waiting for reserved tokens."""
        self._refill()
        return self._tokens

    def reserve(self) -> float:
        """Take one token and return how long to wait before using it (0 when available)."""
        self._refill()
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> None:
        """Wait until one send is allowed."""
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)


_buckets: dict[tuple[str, float], TokenBucket] = {}


def bucket_for(provider: str, rate: float) -> TokenBucket:
    """The bucket shared by every instance of one provider in this process, so building a
    provider per activity call cannot multiply the allowed rate."""
    key = (provider, rate)
    bucket = _buckets.get(key)
    if bucket is None:
        bucket = _buckets[key] = TokenBucket(rate)
    return bucket
