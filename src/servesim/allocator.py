"""glibc malloc settings for a simulation: keep freed memory for reuse instead of handing it back to the system.

The metrics build and drop arrays of several MB (a column per step, per replica). By default glibc serves each
with a fresh mmap, or trims the heap once they are freed, so every new array's pages fault in again: on the Azure
trace (benchmarks/bench_sim.py) that was 20 ms of a 52 ms metric summary. With larger mmap and trim thresholds the
heap keeps those pages and the next array reuses them. The cost is freed memory the process keeps (up to
TRIM_THRESHOLD at the heap's top) instead of returning it; peak memory moved by under 1% in the runs measured
(docs/performance.md, round 8).

Process-wide, so it is applied once, on Linux with glibc only, and not where the user set MALLOC_* variables.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its adaptive threshold; larger blocks still get an mmap
TRIM_THRESHOLD = 128 << 20  # free memory at the heap's top kept before trimming
TOP_PAD = 64 << 20  # extra heap asked for at each growth

_applied = False


def keep_freed_memory() -> bool:
    """Apply the settings (once per process); True if they are in effect."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or any(name.startswith("MALLOC_") for name in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc's; musl has none that works, and the lookup fails elsewhere
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    return _applied
