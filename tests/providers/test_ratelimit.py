"""The token bucket, on a fake clock: tokens are counted, no wall time is measured."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tests.fakes import FakeSendGrid
from trouw.providers.base import OutgoingEmail
from trouw.providers.ratelimit import TokenBucket, bucket_for
from trouw.providers.sendgrid.sending import SendGridProvider


class FakeClock:
    """A clock that only moves when the bucket sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def bucket(clock: FakeClock, rate: float, burst: float | None = None) -> TokenBucket:
    return TokenBucket(rate, burst=burst, clock=clock, sleep=clock.sleep)


async def test_sends_beyond_the_burst_are_spaced_at_the_rate() -> None:
    clock = FakeClock()
    limiter = bucket(clock, rate=5, burst=1)

    for _ in range(11):
        await limiter.acquire()

    assert clock.sleeps == [pytest.approx(0.2)] * 10
    assert clock.now - 1000.0 == pytest.approx(2.0)  # 11 sends in 2 s at 5/s with burst 1


async def test_a_burst_passes_then_the_rate_holds() -> None:
    clock = FakeClock()
    limiter = bucket(clock, rate=10, burst=5)

    for _ in range(5):
        await limiter.acquire()
    assert clock.sleeps == []
    assert limiter.tokens == pytest.approx(0)

    await limiter.acquire()
    assert clock.sleeps == [pytest.approx(0.1)]


async def test_idle_time_refills_up_to_the_burst_only() -> None:
    clock = FakeClock()
    limiter = bucket(clock, rate=2, burst=3)
    for _ in range(3):
        limiter.reserve()
    assert limiter.tokens == pytest.approx(0)

    clock.now += 60
    assert limiter.tokens == pytest.approx(3)


async def test_concurrent_callers_queue_in_order() -> None:
    clock = FakeClock()
    limiter = bucket(clock, rate=4, burst=1)
    delays = [limiter.reserve() for _ in range(5)]

    assert delays == [0, pytest.approx(0.25), pytest.approx(0.5), pytest.approx(0.75), 1.0]
    assert limiter.tokens == pytest.approx(-4)


async def test_gathered_acquires_all_finish_spaced_at_the_rate() -> None:
    clock = FakeClock()
    rate = 10
    limiter = bucket(clock, rate=rate, burst=1)

    await asyncio.wait_for(asyncio.gather(*(limiter.acquire() for _ in range(20))), 5)

    # The first passes at once, the other 19 wait a token each: at least 19/rate of fake time.
    assert len(clock.sleeps) == 19
    assert clock.now - 1000.0 >= 19 / rate - 1e-9
    assert sum(clock.sleeps) == pytest.approx(19 / rate)


def test_bucket_is_shared_per_provider_and_rate() -> None:
    assert bucket_for("sendgrid", 50) is bucket_for("sendgrid", 50)
    assert bucket_for("sendgrid", 50) is not bucket_for("twilio", 50)
    with pytest.raises(ValueError):
        TokenBucket(0)


async def test_a_real_provider_takes_one_token_per_send(
    sendgrid_fake: FakeSendGrid, email: OutgoingEmail
) -> None:
    clock = FakeClock()
    limiter = bucket(clock, rate=2, burst=2)
    provider = SendGridProvider(
        api_key=sendgrid_fake.api_key,
        email_from="shop@x.example",
        host=sendgrid_fake.url,
        limiter=limiter,
    )

    for n in range(4):
        await provider.send_email(dataclasses.replace(email, message_key=f"k{n}"))

    assert len(sendgrid_fake.requests) == 4
    assert clock.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]
