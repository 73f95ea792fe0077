"""Keep freed memory in the process for reuse: batched array work without page-fault storms.

Batched pipelines (injection, data loading) allocate and free the same few multi-megabyte arrays
every batch. glibc's malloc serves such blocks with fresh ``mmap`` pages (or trims the heap when
they are freed), so every batch the kernel must hand the process zeroed pages again, one page
fault per 4 KiB. On virtual machines a fault costs ~1-2 us, i.e. ~3 ms for a 64 x 3 x 101 x 101
float32 batch: more than the arithmetic done on it. :func:`retain_freed_memory` raises glibc's
``mmap`` and trim thresholds (``mallopt``) so blocks up to ``MMAP_THRESHOLD`` come from the heap and
up to ``TRIM_THRESHOLD`` of freed heap stays mapped for the next batch. The price is that the
process's resident size does not shrink after a peak (by at most ``TRIM_THRESHOLD``); nothing is
allocated up front. This is the same tuning as the ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` environment variables, applied once from code that knows it is
about to run a batch loop.

It is an explicit, process-wide option, never a side effect of a library call: the stages that
run batch loops call it once at their start (dhs-inject's ``selection_function`` stage and its
``synthetic`` data source), and process-pool workers forked afterwards inherit it. Physics and
array functions (e.g. ``dhs_inject.engine.simulate_arcs``) leave malloc alone, so using them from
a notebook or another program changes nothing process-wide; such a program may call
:func:`retain_freed_memory` itself before its own batch loop.

It is a no-op (returning False) outside glibc Linux, when ``DHS_MALLOC_TUNING=0``, or when the
user already set either glibc variable (their choice wins).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "retain_freed_memory"]

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit: a 128 x 3 x 101 x 101 float32 batch fits
TRIM_THRESHOLD = 512 * 1024 * 1024  # freed heap kept for reuse (a few batches of temporaries)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>

_state: bool | None = None  # result of the first call (the tuning is process-wide and applied once)


def retain_freed_memory() -> bool:
    """Apply the malloc tuning described in the module docstring once per process; True if active."""
    global _state
    if _state is None:
        _state = _apply()
    return _state


def _apply() -> bool:
    if os.environ.get("DHS_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; a refused value leaves glibc's defaults in place
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
