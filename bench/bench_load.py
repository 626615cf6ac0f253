"""What the load-generating benches share: a free port, percentiles, and open-loop firing."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def fire_open_loop(
    count: int, rate: float, fire: Callable[[int], Awaitable[None]]
) -> list[float]:
    """fire(0), fire(1), ... fire(count - 1), the nth due n/rate s after the start whatever the
    answers so far (open loop: a slow answer cannot slow the load down and so hide); returns once
    all have finished, with how late each started (s: the load generator's own lag)."""
    late: list[float] = []

    async def on_time(n: int, due: float) -> None:
        late.append(time.perf_counter() - due)
        await fire(n)

    start = time.perf_counter()
    tasks = []
    for n in range(count):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(on_time(n, due)))
    await asyncio.gather(*tasks)
    return late
