"""Memory and time of `ast tag` on long recordings: peak RSS stays flat, time grows linearly.

    python benchmarks/long_recording.py [--minutes 10 60] [--model DIR]

Writes a 44.1-kHz stereo FLAC of each length (generated sound), then runs
`ast tag FILE -m MODEL --format jsonl` in a child process and reads its peak RSS (ru_maxrss).
The default model is the full-size random-weight AST (350 MB of weights resident).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import full_size_checkpoint, machine

SR = 44100


def write_long(path: Path, minutes: float) -> Path:
    """Written a minute at a time: the benchmark itself must not hold the recording either."""
    rng = np.random.default_rng(0)
    t = np.arange(60 * SR) / SR
    with sf.SoundFile(path, "w", SR, 2, format="FLAC", subtype="PCM_16") as f:
        for minute in range(int(minutes)):
            tone = 0.3 * np.sin(2 * np.pi * (200 + 20 * minute) * t)
            noise = 0.05 * rng.standard_normal((len(t), 2))
            f.write((tone[:, None] + noise).astype(np.float32))
    return path


def run(path: Path, model: Path) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ast_cli", "tag", str(path), "-m", str(model), "-f", "jsonl", "--quiet"],
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"ast tag failed with status {status}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024  # KiB -> MiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    model = args.model or full_size_checkpoint()
    work = Path(tempfile.mkdtemp(prefix="ast-long-"))
    print(f"machine: {machine()}\n")
    print("| recording | wall time (s) | s per audio minute | peak RSS (MiB) |\n|---|---|---|---|")
    for minutes in args.minutes:
        path = write_long(work / f"long_{minutes:g}min.flac", minutes)
        seconds, rss = run(path, model)
        print(f"| {minutes:g} min, 44.1 kHz stereo FLAC | {seconds:.1f} | {seconds / minutes:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
