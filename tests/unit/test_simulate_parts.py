"""A parallel simulation counts the customers of the parts that finished, in whatever order."""

from __future__ import annotations

import asyncio

from trouw.commands.simulate import PartResult, _as_finished


async def test_progress_counts_the_parts_that_finished_not_the_first_ones() -> None:
    parts = [["a", "b", "c"], ["d"], ["e", "f"]]
    loop = asyncio.get_running_loop()
    works: list[asyncio.Future[PartResult]] = [loop.create_future() for _ in parts]
    seen: list[tuple[int, str]] = []

    async def collect() -> None:
        async for finished, (_, _, outbox, _) in _as_finished(list(works), parts):
            seen.append((finished, outbox))

    collecting = asyncio.ensure_future(collect())
    for number in (1, 2, 0):  # the one-customer part first, the first part last
        works[number].set_result(([], [], f"part-{number}", []))
        for _ in range(5):  # let the collector take it before the next one finishes
            await asyncio.sleep(0)
    await collecting
    assert seen == [(1, "part-1"), (3, "part-2"), (6, "part-0")]
