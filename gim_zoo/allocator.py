"""Keep freed memory in the process, so big per-step tensors stop costing page faults.

Why: with glibc's default settings, TensorFlow's large per-step tensors (a batch of 128
images is 6,272 patches: module activations of 100 MB and more) are handed back to the
operating system when freed and mapped afresh at the next step. Every first touch of a
fresh page is a page fault, so the system time per image grows with the batch: on the
2-core machines here a training step at batch 128 cost about 25% more per image than at
batch 32, with the same user time (benchmarks/throughput.py measures both settings).

`reuse_freed_memory()` tells glibc's malloc to use one arena, never to serve allocations
with mmap and never to trim the heap, so the memory of one step is reused by the next.
The process keeps its peak memory until it exits; that is the trade. The training,
probe and benchmark scripts call it at start; call it in your own training script, as
early as possible (before TensorFlow starts its threads). Linux with glibc only: elsewhere
it does nothing and returns False.
"""

import ctypes
import ctypes.util
import functools

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_NEVER = 2**31 - 1  # the largest int mallopt takes


@functools.lru_cache(maxsize=None)
def reuse_freed_memory():
    """Apply the settings once per process; True when glibc accepted all three."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl and macOS lack it)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER))
    return all([mallopt(param, value) == 1 for param, value in settings])
