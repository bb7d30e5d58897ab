"""Keeping freed memory in the process: glibc's malloc tuned once, by the entry points.

PyTorch on a CPU allocates and frees large temporaries on every training and decoding step. glibc serves
blocks over its mmap threshold (at most 32 MB) with fresh mappings and returns freed heap tops to the kernel,
so each step faults in and zeroes the same memory again: in six LoRA SFT steps of the default run, 5.2 million
page faults and 36 of 69 seconds in the kernel. Serving every block from the heap and never trimming it makes
those steps reuse memory already mapped (``bench/bench_allocator.py``: about 2x faster, equal losses, equal peak
RSS). The cost: freed memory stays with the process until it exits, so its RSS stays at its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["OPT_OUT_ENV", "keep_freed_memory", "release_freed_memory"]

OPT_OUT_ENV = "CAI_MALLOC_DEFAULT"
"""Set to ``1`` to leave glibc's malloc at its defaults."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and never return its free top to the kernel (glibc only).

    Process-wide and idempotent; applied by the ``cai`` command and the test suite before any model loads,
    never by library code. Returns whether it was applied: ``False`` off Linux/glibc or when
    ``CAI_MALLOC_DEFAULT=1``.
    """
    if os.environ.get(OPT_OUT_ENV) == "1" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # M_TRIM_THRESHOLD -1 reads as SIZE_MAX: never trim; M_MMAP_MAX 0: no mmap'd chunks (a failed brk still
    # falls back to mmap inside glibc, so a large request cannot fail for this)
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))


def release_freed_memory() -> bool:
    """Collect cyclic garbage, then hand every free page of the heap back to the kernel (glibc's ``malloc_trim``).

    The entry points call it between stages: each stage loads its own models and frees them at its end, and with
    :func:`keep_freed_memory` the freed blocks would otherwise stay mapped, so the process's RSS would grow stage
    after stage (a default `cai run` peaked at 12.1 GB). Within a stage, steps still reuse mapped memory. Returns
    whether pages were handed back.
    """
    import gc

    gc.collect()
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return bool(trim(0))
