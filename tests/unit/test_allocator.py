"""glibc's allocator settings for a worker: applied on glibc, a no-op elsewhere or when off."""

from __future__ import annotations

import ctypes.util

import pytest

from trouw.stack.allocator import cap_arenas, fix_mmap_threshold, trim


@pytest.mark.skipif(ctypes.util.find_library("c") is None, reason="no C library found")
def test_arenas_capped_mmap_threshold_fixed_and_memory_trimmed_on_glibc() -> None:
    assert cap_arenas(0) is False  # 0: glibc's default is left alone
    assert fix_mmap_threshold(0) is False
    if not hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "malloc_trim"):
        pytest.skip("not glibc")
    assert cap_arenas(8) is True
    assert fix_mmap_threshold(128) is True
    trim()  # True when something was handed back; never an error
