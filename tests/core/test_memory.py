"""Keeping freed memory: large blocks are reused instead of faulted in again (counted, not timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cai_dsl.core.memory import OPT_OUT_ENV, keep_freed_memory

# allocate and free a 64 MB block (over glibc's largest mmap threshold) ten times, counting minor page faults
_PROBE = """
import json, resource, sys
from cai_dsl.core.memory import keep_freed_memory
applied = keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = bytearray(64 << 20); del block  # the first time always maps
before = faults()
for _ in range(10):
    block = bytearray(64 << 20)  # zero-filled: every page is touched
    del block
print(json.dumps({"applied": applied, "faults": faults() - before}))
"""


def _probe(opt_out: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != OPT_OUT_ENV}
    if opt_out:
        env[OPT_OUT_ENV] = "1"
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_blocks_are_reused_without_page_faults():
    default, kept = _probe(opt_out=True), _probe(opt_out=False)
    assert default["applied"] is False and kept["applied"] is True
    pages = 10 * (64 << 20) // 4096
    assert default["faults"] > pages // 2  # each block faulted in again
    assert kept["faults"] < pages // 20  # the same memory reused


def test_opt_out_leaves_malloc_alone(monkeypatch):
    monkeypatch.setenv(OPT_OUT_ENV, "1")
    assert keep_freed_memory() is False


_TRIM_PROBE = """
import json, sys
from cai_dsl.core.memory import keep_freed_memory, release_freed_memory
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
keep_freed_memory()
blocks = [bytearray(8 << 20) for _ in range(32)]  # 256 MB on the heap
before = rss()
del blocks
kept = rss()
released = release_freed_memory()
print(json.dumps({"before": before, "kept": kept, "released": released, "after": rss()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_release_hands_kept_memory_back():
    env = {k: v for k, v in os.environ.items() if k != OPT_OUT_ENV}
    done = subprocess.run([sys.executable, "-c", _TRIM_PROBE], env=env, capture_output=True, text=True, check=True)
    r = json.loads(done.stdout)
    assert r["kept"] > r["before"] - 64  # freed, but still mapped (kept for reuse)
    assert r["released"] and r["after"] < r["kept"] - 200  # handed back
