"""benchmarks/gpu_check.py, the GPU path's one script, on a machine without a GPU: it says why it
skips the GPU parts and exits 0; ``--self-test`` runs every part of it on the CPU with a tiny model,
so the script that will run on a GPU has run here."""

from __future__ import annotations

import os
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
