"""Keeping large, short-lived buffers out of the heap, so a long slide run's memory stays flat.

glibc serves an allocation above the mmap threshold (128 KiB at start) with its own mapping, given
back to the system when freed; but after the first such buffer is freed it raises the threshold to
that buffer's size (up to 32 MiB). From then on the per-tile arrays (5-20 MB label maps, network
maps, RGB tiles) come from the heaps of whichever thread allocates them, and freed heap memory is
not always returned: peak RSS then depends on thread timing. Fixing the threshold keeps every
buffer of 1 MiB or more in its own mapping. Elsewhere (not glibc) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
LARGE_BUFFER_BYTES = 1 << 20

_done = False


def return_large_buffers_to_the_system() -> bool:
    """Fix glibc's mmap threshold at 1 MiB for this process (once); False where there is no glibc."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _done = bool(mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES))
    return _done
