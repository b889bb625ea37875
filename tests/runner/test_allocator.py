"""``keep_freed_memory`` (glibc): memory a step frees stays in the process, so the next step takes no page faults."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

# A training step's pattern, through glibc's malloc itself: a dozen 4 MB buffers allocated, written and
# all freed, over and over. With torch tensors the default's fault count depends on which small
# allocations (tensor metadata) land above the buffers on the heap, so it varies from run to run;
# here nothing else allocates in between. The end-to-end effect on a fit is scripts/bench_runner.py's.
CHILD = """
import ctypes, json, resource, sys
from runner.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
SIZE, N = 4 << 20, 12
ptrs = (ctypes.c_void_p * N)()
def step():
    for i in range(N):
        ptrs[i] = libc.malloc(SIZE)
        ctypes.memset(ptrs[i], 1, SIZE)  # every page written
    for i in range(N):
        libc.free(ptrs[i])
step(); step()  # the first steps grow the heap either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's; elsewhere it returns False")
def test_freed_step_memory_is_reused_without_page_faults() -> None:
    default, kept = _faults("default"), _faults("keep")
    assert kept["applied"] is True
    # glibc's defaults hand the 48 MB back after every step and fault every 4 kB page in again
    # (20 steps x 12k pages); kept, the pages stay mapped
    assert default["faults"] > 20 * 12 * 1024 * 0.5, default
    assert kept["faults"] < default["faults"] / 20, (default, kept)
