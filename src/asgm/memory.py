"""Keep the memory that TensorFlow frees inside the process (glibc's malloc).

TensorFlow allocates and frees its tensors with ``malloc`` at every training step, some of them
larger than 100 MiB (a convolution's gradient buffers for a batch). With glibc's defaults, blocks
above the mmap threshold are mapped for each step and returned to the system when freed, so every
step maps fresh pages that the kernel must zero: on 2 cores a training spent 38 % of its CPU time
in the kernel handling those page faults (``benchmarks/training_memory.py``). Here large blocks
come from the heap too (no mmap), and freed memory stays in it (a 2 GiB trim threshold, 256 MiB of
top padding) for the next step, as tcmalloc or jemalloc would keep it: 2 % in the kernel and 1.8×
less CPU time for the same training. The process's memory then stays near its peak instead of
shrinking between steps.

Linux with glibc only; elsewhere, or with ``ASGM_MALLOC_TUNING=0``, nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: ``mallopt`` parameters of glibc's <malloc.h>.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 256 << 20))
#: Set to 0 to keep glibc's defaults (e.g. to compare, or where memory must shrink between steps).
ENVIRONMENT_VARIABLE = "ASGM_MALLOC_TUNING"


def keep_freed_memory() -> bool:
    """Apply :data:`SETTINGS` with ``mallopt`` (they hold for the allocations that follow, so this
    runs when ``asgm`` is imported, before TensorFlow); whether they were applied."""
    if not sys.platform.startswith("linux") or os.environ.get(ENVIRONMENT_VARIABLE, "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    return all(mallopt(parameter, value) == 1 for parameter, value in SETTINGS)
