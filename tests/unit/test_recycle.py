"""The worker's memory watch: recycles once above its mark, never before its minimum life."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from trouw.stack.recycle import RECYCLES_VARIABLE, recycles_so_far, resident_mib, watch_memory


class Readings:
    """RSS readings in order (the last one repeats) and a clock that moves 1 s per reading."""

    def __init__(self, *values: float) -> None:
        self.values, self.now = list(values), 0.0

    def resident(self) -> float:
        self.now += 1
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]

    def clock(self) -> float:
        return self.now


async def watch(readings: Readings, *, mark: float, not_before: float) -> list[float]:
    recycled: list[float] = []
    await asyncio.wait_for(
        watch_memory(
            mark,
            every=0.001,
            not_before=not_before,
            recycle=recycled.append,
            resident=readings.resident,
            clock=readings.clock,
        ),
        timeout=1,
    )
    return recycled


async def test_recycles_once_at_the_first_reading_above_the_mark() -> None:
    assert await watch(Readings(150, 170, 189, 191.5, 250), mark=190, not_before=0) == [191.5]


async def test_a_worker_above_its_mark_at_start_waits_its_minimum_life() -> None:
    # Readings 1 s apart on the fake clock: above the mark from the start, recycled at 10 s.
    readings = Readings(200)
    assert await watch(readings, mark=190, not_before=10) == [200]
    assert readings.now >= 10


async def test_a_worker_under_its_mark_is_never_recycled() -> None:
    with pytest.raises(TimeoutError):
        await watch(Readings(150, 189.9), mark=190, not_before=0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_resident_memory_is_read_from_proc() -> None:
    rss = resident_mib()
    assert rss is not None and 10 < rss < 100_000


def test_recycles_so_far_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RECYCLES_VARIABLE, raising=False)
    assert recycles_so_far() == 0
    monkeypatch.setenv(RECYCLES_VARIABLE, "3")
    assert recycles_so_far() == 3
    monkeypatch.setenv(RECYCLES_VARIABLE, "x")
    assert recycles_so_far() == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_a_stop_by_signal_is_told_apart_so_it_wins_over_a_recycle() -> None:
    # run_stack recycles only when no signal asked for the stop (a SIGTERM during the drain).
    from trouw.stack.runtime import install_stop_handlers

    stop, signalled = asyncio.Event(), []
    install_stop_handlers(stop, lambda: signalled.append(True))
    loop = asyncio.get_running_loop()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), timeout=5)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    assert signalled == [True]
