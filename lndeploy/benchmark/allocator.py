"""Keep freed memory in the process, so a benchmark does not time the kernel's page faults.

PyTorch's CPU tensors come from glibc ``malloc``. A large tensor freed at the end of a call is handed
back to the kernel (``munmap``, or a heap trim), and the next call's tensor of the same size faults in
every page again. Measured here (docs/bench.md 'No page faults timed', and ``faults_per_run`` in the
reports): the zoo CNN at batch 32 takes ~2,240 minor faults and 12-30 ms per call with glibc's defaults,
0 faults and ~1.3 ms with the settings below; ``F.layer_norm`` on (8192, 1024) 11.6 ms vs 2.1 ms. ONNX Runtime keeps its
own arena and never pays this, so without the setting the comparison would mostly measure the
allocator, not the backends.

The setting is what PyTorch's CPU tuning advice does with jemalloc/tcmalloc or with the
``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` environment variables: serve large blocks from
the heap (threshold 32 MiB, glibc's maximum) and never trim it. It applies to the whole process and
stays in force after the benchmark (glibc turns its dynamic thresholds off once they are set).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc refuses more than HEAP_MAX_SIZE / 2 = 32 MiB on 64-bit
TRIM_THRESHOLD = 2**31 - 1  # the largest int mallopt takes: never trim


def keep_freed_memory() -> dict:
    """Apply the setting where the C library is glibc; returns what was done, for the report."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return {"applied": False, "reason": "no glibc mallopt here: the C library's defaults are timed"}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mmap_ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    trim_ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return {"applied": mmap_ok and trim_ok, "M_MMAP_THRESHOLD": MMAP_THRESHOLD, "M_TRIM_THRESHOLD": TRIM_THRESHOLD}
