"""Latency of `ast listen`: from the moment audio is written to the pipe to the moment its record is
printed, on the full-size model, at --hop 1 and --hop 2, with a feeder writing at real-time pace.

    python benchmarks/listen_latency.py [--seconds 30] [--hops 1 2]

Prints the CPU, the precision `auto` chose, the load, and per hop: records, skipped hops, median and
p95 latency, and the real-time factor (seconds of compute per second of audio). A hop the CPU keeps
up with skips none.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import full_size_checkpoint, machine

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 0.05  # seconds of audio a write


def run(model: Path, hop: float, seconds: float) -> dict:
    rate = 16000
    t = np.arange(int(rate * seconds)) / rate
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    cmd = [
        sys.executable,
        "-m",
        "ast_cli",
        "listen",
        "-",
        "--raw",
        "--rate",
        "16000",
        "--channels",
        "1",
        "--hop",
        str(hop),
        "-m",
        str(model),
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    written: dict[float, float] = {}  # audio seconds -> when it was written
    time.sleep(8.0)  # the process imports torch and loads the model before it reads

    def feed() -> None:
        step = int(rate * CHUNK)
        start = time.monotonic()
        for i in range(0, len(audio), step):
            proc.stdin.write(audio[i : i + step].tobytes())
            proc.stdin.flush()
            written[round((i + step) / rate, 3)] = time.monotonic()
            time.sleep(max(0.0, start + (i + step) / rate - time.monotonic()))
        proc.stdin.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    latencies = []
    for line in proc.stdout:
        now = time.monotonic()
        end = json.loads(line)["end_s"]
        if end in written:
            latencies.append(now - written[end])
    feeder.join()
    err = proc.stderr.read().decode()
    proc.wait()
    summary = err.strip().splitlines()[-1] if err.strip() else ""
    skipped = int(summary.split(" skipped")[0].rsplit(" ", 1)[-1]) if " skipped" in summary else -1
    return {
        "hop": hop,
        "records": len(latencies),
        "skipped": skipped,
        "median": float(np.median(latencies)) if latencies else float("nan"),
        "p95": float(np.percentile(latencies, 95)) if latencies else float("nan"),
        "summary": summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--hops", type=float, nargs="+", default=[1.0, 2.0])
    args = parser.parse_args()
    import ast_cli

    model = full_size_checkpoint()
    tagger = ast_cli.load_model(str(model), device="cpu")
    print(f"machine: {machine()}; precision auto -> {tagger.precision}; load average {os.getloadavg()[0]:.2f}\n")
    print(f"{'hop s':>6} {'records':>8} {'skipped':>8} {'median s':>9} {'p95 s':>7}")
    for hop in args.hops:
        r = run(model, hop, args.seconds)
        print(
            f"{r['hop']:>6.1f} {r['records']:>8} {r['skipped']:>8} {r['median']:>9.2f} {r['p95']:>7.2f}  "
            f"  {r['summary']}"
        )


if __name__ == "__main__":
    main()
