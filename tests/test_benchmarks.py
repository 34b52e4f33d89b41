"""benchmarks/gpu_check.py, the GPU path's one script, on a machine without a GPU: it says why it
skips the GPU parts and exits 0; ``--self-test`` runs every part of it on the CPU with a tiny model,
so the script that will run on a GPU has run here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU even where one is
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )


def test_without_a_gpu_the_gpu_parts_are_skipped_saying_why():
    proc = run()
    assert proc.returncode == 0, proc.stderr
    assert "GPU parts skipped: " in proc.stdout and "--self-test" in proc.stdout
    assert "machine: " in proc.stdout and "--precision auto -> " in proc.stdout  # the CPU, its flags, the precision


@pytest.mark.slow
def test_every_part_of_the_gpu_check_runs_on_the_cpu():
    proc = run("--self-test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert sum("parity" in row for row in rows) >= 2 and all("FAILED" not in row for row in rows)
    assert sum("ast batch" in row for row in rows) == 2  # batch size 8 x workers 0, 2
    assert any("ast finetune" in row for row in rows)
    assert "all parity checks passed" in proc.stdout


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/cpuinfo")
def test_benchmarks_name_the_cpu_flags_that_decide_the_speed():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from common import SPEED_FLAGS, cpu_flags
    finally:
        sys.path.pop(0)
    flags = Path("/proc/cpuinfo").read_text().split()
    assert cpu_flags() == [flag for flag in SPEED_FLAGS if flag in flags]


@pytest.mark.slow
def test_the_attention_kernels_benchmark_runs_every_part_with_a_tiny_model():
    """benchmarks/attention_kernels.py --self-test: the floor at each part's shapes, the profile and
    every kernel tried (torch.compile included), each with its errors against fp32."""
    if not any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++")):
        pytest.skip("torch.compile (inductor) needs a C++ compiler: apt-get install -y g++")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "attention_kernels.py"), "--self-test"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "machine: " in out and "--precision auto -> " in out and "load average at the end" in out
    for part in ("attention QK^T (bmm, bf16)", "GELU (bf16)", "| Linear GEMMs |", "| attention core |"):
        assert part in out
    kernels = [line for line in out.splitlines() if line.startswith("| SDPA") or line.startswith("| torch.compile")]
    assert len(kernels) == 5  # three SDPA rows, two compile modes (max-autotune is left out of the self-test)
    for row in kernels:
        score_err = float(row.split("|")[7])
        assert score_err < 0.05  # the bf16 tolerance of tests/test_inference.py
