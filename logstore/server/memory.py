"""Freed memory kept for reuse, so large buffers cost no page fault per 4 KiB.

A fetch allocates MBs per request (the bytes read, the batches joined), a
produce its frame. glibc's malloc serves blocks that large with ``mmap``
(its threshold adapts, from 128 KiB up) or trims them off the heap once
freed, so every new buffer is faulted in and zeroed by the kernel page by
page again: measured at about 1 ms per MB on a 2-core VM, more than the
reads and copies themselves. ``reuse_freed_memory`` fixes glibc's mmap
threshold at 32 MiB and its trim threshold at 256 MiB (``mallopt``), so
freed blocks are reused; the price is that the heap keeps its peak size,
which is bounded by what the server holds at once (requests, answers not
yet sent). Process-wide, once; a no-op where the C library is not glibc.
Hence opt-in (``keep_freed_memory``): ``logstore serve`` sets it in its own
process; an application that embeds the server chooses.
"""

from __future__ import annotations

import ctypes
import sys

#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20
_done = False


def reuse_freed_memory() -> bool:
    """Set glibc's thresholds once; whether they are set (``False``: not glibc, or refused)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc's own: musl has mallopt as a stub  # noqa: B018
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _done
