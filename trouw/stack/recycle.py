"""A worker that hands over to a fresh process of itself when its memory passes a mark.

A long-running worker's resident memory creeps up past its warm-up (glibc's heaps fragment
between live blocks, the Temporal core's and SQLite's native memory), about 1-2 MiB per 1,000
new customers, while a worker started afresh beside the same sleeping customers holds 50 MiB
less (docs/performance.md, "Worker memory"). Above `worker_recycle_rss_mib` the worker drains
(stops polling, finishes its workflow tasks and, within the graceful timeout, its activities)
and a fresh process takes over: `trouw worker` executes itself again in the same process id,
`trouw up` starts its worker child again. What the fresh process costs: the workflows it gets
a task for replay their history once (its sticky cache starts empty), and no worker polls for
the seconds between the drain and the fresh process's first poll (docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import NoReturn

log = logging.getLogger("trouw")

# `trouw up`'s worker child exits with this code to be started again (sysexits' EX_TEMPFAIL).
RECYCLE_EXIT_CODE = 75
# How many times this worker was recycled before, carried across the exec (or the respawn).
RECYCLES_VARIABLE = "TROUW_WORKER_RECYCLED"


def resident_mib() -> float | None:
    """This process's resident memory (RSS) in MiB, from /proc; None where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def recycles_so_far() -> int:
    """How many recycles this worker's lineage went through (0 for a worker started anew)."""
    try:
        return max(0, int(os.environ.get(RECYCLES_VARIABLE, "0")))
    except ValueError:
        return 0


async def watch_memory(
    mark_mib: float,
    *,
    every: float,
    not_before: float,
    recycle: Callable[[float], None],
    resident: Callable[[], float | None] = resident_mib,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Call `recycle(rss)` once, at the first check after `not_before` seconds with the RSS
    above `mark_mib`; return then. Checks every `every` seconds. Without an RSS to read (no
    /proc) it only waits: the stack stops when one of its loops ends.

    `not_before` keeps a worker whose fresh RSS is already above the mark (a mark set too low)
    from recycling in a loop: it recycles at most once per that time, and says so at start.
    """
    began = clock()
    first = resident()
    if first is None:
        log.warning("worker recycling is on but this system reports no RSS: it stays off")
        await asyncio.Event().wait()
        return
    if first > mark_mib:
        log.warning(
            "this worker holds %.1f MiB at start, above worker_recycle_rss_mib %d: it will "
            "recycle every %.0f s; raise the mark",
            first,
            mark_mib,
            not_before,
        )
    while True:
        await asyncio.sleep(every)
        rss = resident()
        if rss is not None and rss > mark_mib and clock() - began >= not_before:
            recycle(rss)
            return


def execute_afresh(recycles: int) -> NoReturn:
    """Replace this process by a fresh run of the same command line (same process id, so a
    supervisor, a container or a pid file keeps following it)."""
    log.info("worker drained: starting afresh (recycle %d)", recycles)
    os.environ[RECYCLES_VARIABLE] = str(recycles)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
