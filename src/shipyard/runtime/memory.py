"""Process memory: what a loaded version costs, and giving memory back after an unload.

A version's cost is measured, not guessed: the growth of the process's resident set while its session
is built and warmed up (loads happen one at a time, so the growth is its own). Freed memory often stays
with the allocator: glibc keeps freed chunks in its arenas, and an unloaded ONNX Runtime session can
leave hundreds of MB resident that no other server ever returns. `release_free_memory()` asks glibc to
hand free pages back to the system (malloc_trim); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import resource
import sys
from collections.abc import Callable

MB = 1024 * 1024


def rss_bytes() -> int:
    """The resident set size now (Linux: /proc; elsewhere the peak, the best the OS offers)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
        return trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; True when there was a way to ask."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
