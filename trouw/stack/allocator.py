"""glibc's allocator in a long-running worker: fewer arenas, freed memory handed back."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from functools import cache

log = logging.getLogger("trouw")

# mallopt's parameter numbers (malloc.h): the arena limit, the mmap threshold.
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3


@cache
def _libc() -> ctypes.CDLL | None:
    """glibc, or None on another C library (musl, macOS): then these settings do nothing."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None
    return libc


def cap_arenas(arenas: int) -> bool:
    """Let glibc make at most `arenas` heaps (0: its default, 8 per core).

    Every thread that allocates may get a heap of its own, and a heap keeps what was freed in
    it; a worker has some 30 threads (workflow activations, database calls, the Temporal core).
    Takes effect for heaps made after the call: call it before the worker starts its threads.
    """
    libc = _libc()
    if libc is None or arenas <= 0:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def fix_mmap_threshold(kib: int) -> bool:
    """Blocks of `kib` KiB and more get mappings of their own, unmapped when freed (0: glibc's
    default, a threshold that rises up to 32 MiB as large blocks are freed).

    With the default, once the threshold has risen, a worker's large blocks (the Temporal core's
    buffers, SQLite's, Python's big lists) come from the heaps, where they fragment them and
    their freed space stays resident between live blocks. A fixed threshold keeps them out.
    """
    libc = _libc()
    if libc is None or kib <= 0:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, kib * 1024))


def available() -> bool:
    """Whether this C library is glibc, whose heaps these functions tune."""
    return _libc() is not None


def trim() -> bool:
    """Hand the free memory at the top of glibc's heaps back to the system (malloc_trim)."""
    libc = _libc()
    return libc is not None and bool(libc.malloc_trim(0))


async def trim_forever(every: float) -> None:
    """Trim every `every` seconds: what a burst of work freed does not stay in the RSS.

    Never returns (on another C library it only sleeps): the stack stops when one of its
    loops ends."""
    while True:
        await asyncio.sleep(every)
        # Off the event loop: a trim walks the heaps, a few milliseconds for a worker's.
        if available():
            await asyncio.to_thread(trim)
