"""glibc's malloc with fixed thresholds for a process that runs the model (the ``ast`` commands).

glibc adapts two thresholds as a program runs: a freed block from ``mmap`` raises the size above
which blocks are mapped (up to 32 MiB), and the heap's free top is returned to the system past
twice that. For a model whose activations are a few MiB each, both misfire: with one window a
forward pass, the blocks freed at the top of the heap are given back after each window and faulted
in again on the next (tens of thousands of page faults a window); with larger batches over a long
recording, the peak grows with the number of windows (CHANGELOG, benchmarks/long_recording.py).

So blocks up to 32 MiB (every activation of one window) come from the heap, larger ones are mapped
and unmapped as before, and the heap keeps up to 256 MiB of free memory for the next window instead
of returning it. Only the ``ast`` process does this (a library must not set its host's malloc), and
not when the user set any ``MALLOC_*_`` variable: theirs win.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its adaptive threshold; accepted by every version
TRIM_THRESHOLD = 256 << 20


def tune() -> bool:
    """Fix glibc's mmap and trim thresholds for this process. True when they were set; False on
    another C library or platform (nothing changes) or when the environment sets malloc already."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # musl has mallopt too, as a stub returning 0: the same "nothing changed"
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
