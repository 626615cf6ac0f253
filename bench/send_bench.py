"""Sends per second through Trouw's SendGrid and Twilio providers to local fakes in another process.

Usage: .venv/bin/python bench/send_bench.py [--seconds 2] [--concurrency 1 8 32]
The fakes (tests/fakes/serve.py) run in a second process on 127.0.0.1, so client and server
do not share an interpreter; the rate limiter is off. Each run lasts --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trouw.providers.base import OutgoingEmail, OutgoingSms  # noqa: E402
from trouw.providers.sendgrid.sending import SendGridProvider  # noqa: E402
from trouw.providers.twilio.sending import BaseUrlHttpClient, TwilioProvider  # noqa: E402


@dataclass
class Run:
    name: str
    concurrency: int
    sends: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.sends / self.seconds

    def row(self) -> str:
        p50 = statistics.median(self.latencies) * 1000
        p99 = statistics.quantiles(self.latencies, n=100)[98] * 1000
        return (
            f"| {self.name} | {self.concurrency} | {self.sends} | {self.rate:,.0f} "
            f"| {p50:.1f} | {p99:.1f} |"
        )


async def measure(
    name: str, send: Callable[[int], Awaitable[object]], *, concurrency: int, seconds: float
) -> Run:
    latencies: list[float] = []
    counter = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal counter
        while time.perf_counter() < deadline:
            counter += 1
            started = time.perf_counter()
            await send(counter)
            latencies.append(time.perf_counter() - started)

    for _ in range(20):  # warm up connections and imports
        await send(-1)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(name, concurrency, len(latencies), time.perf_counter() - started, latencies)


def start_fakes() -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.serve"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise SystemExit("the fake providers did not start")
    return process, json.loads(line)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()

    process, fakes = start_fakes()
    try:
        email = OutgoingEmail(
            message_key="bench",
            to="bart@example.com",
            to_name="Bart",
            subject="Bedankt voor je bestelling",
            preheader="",
            html="<p>" + "Dag Bart, bedankt voor je aankoop. " * 40 + "</p>",
            text="Dag Bart, bedankt voor je aankoop. " * 40,
            category="transactional",
            journey="after-purchase",
            unsubscribe_url="https://trouw.example/u/tok",
        )
        sms = OutgoingSms(
            message_key="bench", to="+32470000001", body="Je pakje is onderweg.",
            category="transactional", journey="after-purchase",
        )  # fmt: skip
        sendgrid = SendGridProvider(
            api_key=fakes["sendgrid_api_key"],
            email_from="Shop <shop@x.example>",
            host=fakes["sendgrid_url"],
        )
        twilio = TwilioProvider(
            account_sid=fakes["twilio_account_sid"],
            auth_token=fakes["twilio_auth_token"],
            public_url="https://trouw.example",
            from_number="+3225550100",
            base_url=fakes["twilio_url"],
        )
        # The alternative we did not ship: Twilio's requests-based client in a thread.
        from twilio.rest import Client

        sync_twilio = Client(
            fakes["twilio_account_sid"],
            fakes["twilio_auth_token"],
            http_client=BaseUrlHttpClient(base_url=fakes["twilio_url"], timeout=30),
        )
        params = twilio.create_params(sms)

        async def send_email(n: int) -> object:
            return await sendgrid.send_email(email)

        async def send_sms(n: int) -> object:
            return await twilio.send_sms(sms)

        async def send_sms_sync(n: int) -> object:
            return await asyncio.to_thread(sync_twilio.messages.create, **params)

        runs: list[Run] = []
        for name, send in (
            ("sendgrid provider (aiohttp, one deadline per call)", send_email),
            ("twilio provider (AsyncTwilioHttpClient, create_async)", send_sms),
            ("twilio sync client in asyncio.to_thread (not used)", send_sms_sync),
        ):
            for concurrency in args.concurrency:
                run = await measure(name, send, concurrency=concurrency, seconds=args.seconds)
                runs.append(run)
                print(run.row(), file=sys.stderr, flush=True)
        await twilio.aclose()
        await sendgrid.aclose()
    finally:
        process.terminate()
        process.wait(5)

    print(
        f"Trouw provider send bench - {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, fakes in a second process, "
        f"{args.seconds:g} s per run, rate limiter off, default thread pool "
        f"({min(32, (os.cpu_count() or 1) + 4)} threads)\n"
    )
    print("| client | in flight | sends | sends/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        print(run.row())


if __name__ == "__main__":
    asyncio.run(main())
