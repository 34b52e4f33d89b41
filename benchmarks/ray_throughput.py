"""`ast batch --engine ray` against `--engine local` on the same full-size model and 10-s clips.

    python benchmarks/ray_throughput.py [--clips 32] [--small 8] [--rounds 1]

Each configuration runs over `--clips` clips and over the first `--small` of them, in a child
process, end to end (process start to exit). The steady rate is the marginal one,
(clips - small) / (T(clips) - T(small)): the start-up (imports, model load, for Ray also the cluster,
the Dataset's workers and the actors' model load) cancels out, and Ray's output, which arrives a
block of windows at a time, needs no watching. Start-up = T(clips) - clips / steady.

1. This machine: `--engine local` and `--engine ray` (a Ray started for the run), alternating over
   `--rounds`, both with `--threads` = the cores (on a busy machine the local engine would otherwise
   leave the CPUs others hold, and the comparison would be of thread counts); also `ray.init()` alone.
2. The two-node loopback cluster of the tests (`ray start`, 1 CPU a node): 1 actor against 2.
Speed does not depend on the weights, so a random full-size model stands for the released one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import clips, full_size_checkpoint, git_revision, machine
from helpers import ray_cluster

CLIP_SECONDS = 10.0


def run(folder: Path, model: Path, out: Path, *extra: str, env: dict | None = None) -> float:
    """End-to-end seconds of one `ast batch` in a child process."""
    cmd = [
        sys.executable,
        "-m",
        "ast_cli",
        "batch",
        str(folder),
        "-o",
        str(out),
        "-m",
        str(model),
        "--force",
        "-q",
        *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"ast batch {' '.join(extra)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return time.perf_counter() - start


def measure(folders: dict[int, Path], model: Path, work: Path, *extra: str, env: dict | None = None) -> dict:
    """Steady clips/s (marginal) and start-up seconds of one configuration, from a small and a full run."""
    (small, small_dir), (n, full_dir) = sorted(folders.items())
    t_small = run(small_dir, model, work / "small.csv", *extra, env=env)
    t_full = run(full_dir, model, work / "full.csv", *extra, env=env)
    steady = (n - small) / (t_full - t_small)
    return {"total": t_full, "small": t_small, "steady": steady, "startup": t_full - n / steady}


def row(name: str, r: dict) -> str:
    return f"| {name} | {r['total']:.1f} s | {r['small']:.1f} s | {r['steady']:.3f} | {r['startup']:.1f} s |"


def ray_init_seconds() -> float:
    import ray

    start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="error")
    seconds = time.perf_counter() - start
    ray.shutdown()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--small", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ast-ray-bench-"))
    try:
        compare(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compare(args: argparse.Namespace, work: Path) -> None:
    model = full_size_checkpoint()
    paths = clips(work / "clips", args.clips, seconds=CLIP_SECONDS)
    (work / "first").mkdir()
    for path in paths[: args.small]:
        os.symlink(path, work / "first" / path.name)
    folders = {args.clips: work / "clips", args.small: work / "first"}
    print(f"machine: {machine()}; ast {git_revision()}", flush=True)
    local_ray = {**os.environ, "RAY_ADDRESS": ""}  # a Ray started for the run
    same = ("--threads", str(os.cpu_count()))  # the model on every core in both engines, whatever else runs

    results: dict[str, list[dict]] = {"local": [], "ray": []}
    for _ in range(args.rounds):
        results["local"].append(measure(folders, model, work, *same))
        results["ray"].append(measure(folders, model, work, *same, "--engine", "ray", env=local_ray))
    best = {name: max(runs, key=lambda r: r["steady"]) for name, runs in results.items()}
    init = ray_init_seconds()

    head = f"| engine | end to end, {args.clips} clips | end to end, {args.small} clips | steady clips/s | start-up |"
    print(
        f"\n{args.clips} clips of {CLIP_SECONDS:g} s, full-size model, --precision auto, this machine "
        f"({args.rounds} round(s), best)"
    )
    print(head + "\n|---|---|---|---|---|")
    for name, r in best.items():
        print(row(f"`--engine {name}`", r))
    ratio = best["ray"]["steady"] / best["local"]["steady"]
    print(
        f"\nsteady ray / local: {ratio:.2f}; end to end ray / local: "
        f"{best['local']['total'] / best['ray']['total']:.2f}"
    )
    print(
        f"Ray's start-up: {best['ray']['startup'] - best['local']['startup']:.1f} s more than local; "
        f"ray.init() of a local Ray alone {init:.1f} s"
    )

    print("\ntwo-node loopback cluster (ray start, 1 CPU a node), --engine ray --ray-address 127.0.0.1:PORT --actors N")
    print(head.replace("engine", "actors") + "\n|---|---|---|---|---|", flush=True)
    with ray_cluster(nodes=2, cpus=1, object_store_mb=200) as (address, env):
        for actors in (1, 2):
            r = measure(
                folders, model, work, "--engine", "ray", "--ray-address", address, "--actors", str(actors), env=env
            )
            print(row(str(actors), r), flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
