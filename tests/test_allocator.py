"""The ast process's malloc thresholds: freed activation-sized blocks stay in the heap for the next window."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, resource, sys
from ast_cli import allocator
tuned = allocator.tune() if sys.argv[1] == 'tune' else False
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
size = 8 << 20  # an activation of one window: 1214 x 3072 bf16 is 7.1 MiB

def faults_of_one_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_one_block()  # the heap grows once
print(tuned, max(faults_of_one_block() for _ in range(3)))
"""


def probe(env: dict, tune: bool = True) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "tune" if tune else "leave"], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not (k.startswith("MALLOC_") and k.endswith("_"))}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_heap_reuses_freed_blocks_without_page_faults():
    tuned, faults = probe(clean_env())
    if not tuned:
        pytest.skip("not glibc: tune() leaves malloc alone")
    pages = (8 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert faults < pages // 20
    _, untuned = probe(clean_env(), tune=False)  # glibc's adaptive defaults give the block back each time
    assert untuned > pages // 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_users_malloc_settings_win():
    tuned, _ = probe({**clean_env(), "MALLOC_ARENA_MAX": "2", "MALLOC_TOP_PAD_": "0"})
    assert tuned is False
