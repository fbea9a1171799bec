"""gim_zoo.allocator: freed memory is reused instead of faulted in afresh at every step."""

import os
import platform
import subprocess
import sys

import pytest

FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "reuse":
    from gim_zoo.allocator import reuse_freed_memory
    assert reuse_freed_memory() is True
for _ in range(3):  # warm up: the first allocation always faults its pages in
    np.ones(16 * 2**20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):  # 128 MB each, written, then freed: a training step's big tensor
    np.ones(16 * 2**20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode):
    # 4 KB pages: numpy would otherwise ask for transparent huge pages where it can
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0"}
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True,
                         text=True, check=True, env=env)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the setting is glibc's")
def test_reused_memory_costs_no_page_faults_per_allocation():
    default, reused = page_faults("default"), page_faults("reuse")
    assert default > 10 * 30_000, default  # ~32k pages of 4 KB per 128 MB, mapped afresh
    assert reused < default / 20, (reused, default)


def test_returns_false_where_there_is_no_glibc(monkeypatch):
    import ctypes

    from gim_zoo import allocator

    def no_libc(*args, **kwargs):
        raise OSError("no C library here")

    allocator.reuse_freed_memory.cache_clear()
    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    try:
        assert allocator.reuse_freed_memory() is False
    finally:
        allocator.reuse_freed_memory.cache_clear()
