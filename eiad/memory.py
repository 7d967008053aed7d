"""The process's C heap kept for reuse: batched inference on the CPU allocates and frees the same
large activations pass after pass.

glibc's ``malloc`` serves a block above its mmap threshold (at most 32 MB) with a fresh ``mmap``
and gives it back to the system when freed, and it returns freed memory at the top of its heap too;
every pass then touches new pages, and each first touch is a page fault the kernel zero-fills. The
evaluation engine's passes are that kind: at mid size a 1-shot prefill of 12 images has
activations of 12 x 737 x 1,376 floats (49 MB), and the continuation's key/value caches are of the
same order. Measured with ``benchmarks/evaluate_speed.py``'s engine paths (1-shot, choice
scoring, alternating runs): tiny model 560-568 -> 648-671 questions/s, mid-size 6.5-8.4 -> 9.3-9.4;
the MMAD-style loop, whose blocks are small, runs as fast either way. :func:`keep_freed_memory`
makes ``malloc`` serve every block from its heap and keep what is freed, so a pass reuses the
pages of the one before (``MALLOC_MMAP_MAX_=0`` and a large ``MALLOC_TRIM_THRESHOLD_``, set
from inside the process). The resident size then stays at its peak, which the engine reaches on its
first pass anyway. Other C libraries, and other allocators, are left as they are.
"""

from __future__ import annotations

import ctypes
import functools
import platform

# mallopt(3) parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEPT = 2**31 - 1  # mallopt takes an int: about 2 GiB of freed memory at the heap's top is kept


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc's ``malloc`` serve large blocks from its heap and keep freed memory for reuse
    (once per process); False where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library this process already uses
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEPT))
