"""glibc malloc settings that keep a training process from returning memory to the OS after every step.

A training step allocates and frees the same activation and gradient buffers (a few MB each) over
and over. glibc's defaults adapt the mmap threshold to the largest freed block and then trim the
top of the heap whenever more than twice that is free, so every step hands tens of MB back to the
kernel and takes them again: a page fault, and a page zeroed by the kernel, for every 4 kB. With a
fixed mmap threshold (32 MiB) and a trim threshold of 1 GiB freed memory stays in the process for
the next step: far fewer page faults and less system time, at the same peak resident memory
(``scripts/bench_runner.py`` measures it against ``keep_freed_memory=false``). Intel's and
PyTorch's CPU tuning guides get the same effect by preloading jemalloc or tcmalloc; this needs no
preload.

Only glibc (Linux) has these knobs; elsewhere :func:`keep_freed_memory` does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# 32 MiB is the largest mmap threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold and raise its trim threshold for this process (and its forks).

    Blocks below ``mmap_threshold`` come from the heap and stay there when freed until more than
    ``trim_threshold`` is free at its top. Returns whether the settings were applied (``False``
    where the C library is not glibc). Calling it again is harmless.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        log.debug("keep_freed_memory: not glibc (%s), malloc left as it is", platform.libc_ver()[0] or platform.system())
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1 and mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1
    if applied:
        log.debug("glibc malloc: mmap threshold %d MiB, trim threshold %d MiB", mmap_threshold >> 20, trim_threshold >> 20)
    return applied
