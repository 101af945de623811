"""Make freed memory go back to the operating system (glibc only; a no-op elsewhere).

glibc raises its mmap threshold each time a large block is freed, so after the first few
numpy arrays of tens of megabytes, later ones come from the heap, which is fragmented and never
shrinks: a worker's resident memory stays at its high-water mark (measured: 257 MB kept after a
map task whose live data was 30 MB). A fixed threshold keeps every large array in its own
mapping, returned to the system when freed, at the price of a few page faults.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def tune_malloc(threshold: int = 128 * 1024) -> bool:
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, threshold * 4))
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
