"""The thread policy under contention: the same `ast batch`, `ast stats` and short `ast finetune` runs
on the machine as it is and under a reproducible background load, with the default threads against
`OMP_NUM_THREADS=1`, side by side in one run.

    python benchmarks/contention.py [--files 300] [--busy N] [--rounds 1] [--baseline DIR]

- The load: `--busy` processes (default: the usable CPUs) that spin in pure Python, started before
  and stopped after the loaded measurements of each command; nothing else of this script runs meanwhile.
- The work: a small random AST (hidden 192, 4 layers, 3 heads, 1.28-s windows, 12 labels; speed does
  not depend on the weights) over `--files` generated 1-s clips at 44.1 kHz (so decoding, resampling
  and the fbank are all in it); `ast stats` over the same clips; `ast finetune` for one epoch over
  12 classes x 20 clips.
- `--baseline DIR`: also time a checkout of an earlier ast (e.g. `git worktree add /tmp/base 2ef45fb`)
  with its default threads, quiet and loaded, so "no slower than before" is measured in the same run.
Each cell is the wall time of the whole command in a child process (imports and model load
included), the median of `--rounds` (the settings interleaved within each round; the baseline runs
`--baseline-rounds`). The last column is default / best: the target is <= 1.2 under load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import class_clips, clips, git_revision, machine

ROOT = Path(__file__).resolve().parents[1]


def small_model(directory: Path) -> Path:
    import torch

    from ast_cli.checkpoints import save
    from ast_cli.config import ASTConfig, PreprocessorConfig
    from ast_cli.model import AST

    torch.manual_seed(0)
    config = ASTConfig(
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=3,
        intermediate_size=768,
        max_length=128,
        id2label={i: f"class {i}" for i in range(12)},
    )
    save(AST(config), PreprocessorConfig(max_length=128), directory)
    return directory


class Load:
    """`n` processes spinning on the CPU while in the ``with`` block."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        time.sleep(1.0)  # let them reach full speed
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
            proc.wait()


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:5])} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--busy", type=int, default=None, help="background processes (default: the usable CPUs)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--baseline", type=Path, default=None, help="a checkout of an earlier ast to time beside this one"
    )
    parser.add_argument(
        "--baseline-rounds", type=int, default=1, help="rounds of the baseline (it can be slow under load)"
    )
    parser.add_argument(
        "--conditions",
        default="as is,loaded",
        help="'as is' (the machine as it is), 'loaded' (with --busy spinners), or both",
    )
    args = parser.parse_args()

    from ast_cli.threads import available_cpus

    busy = args.busy or available_cpus()
    print(f"machine: {machine()}; ast {git_revision()}; background load: {busy} spinning processes\n")
    work = Path(tempfile.mkdtemp(prefix="ast-contention-"))
    model = small_model(work / "model")
    clips(work / "clips", args.files, seconds=1.0, sr=44100)
    class_clips(work / "classes", per_class=20, seconds=1.0)
    jobs = {
        f"ast batch, {args.files} 1-s clips": [
            "batch",
            str(work / "clips"),
            "-o",
            str(work / "out.csv"),
            "-m",
            str(model),
            "--force",
            "-q",
        ],
        f"ast stats, {args.files} clips": ["stats", str(work / "clips"), "--format", "json", "-q"],
        "ast finetune, 1 epoch of 240 clips": [
            "finetune",
            str(work / "classes"),
            "-o",
            str(work / "ft"),
            "--base",
            str(model),
            "--epochs",
            "1",
            "--force",
            "-q",
        ],
    }
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    settings = {"default": (clean, ROOT), "OMP_NUM_THREADS=1": ({**clean, "OMP_NUM_THREADS": "1"}, ROOT)}
    if args.baseline:
        settings["baseline default"] = ({**clean, "PYTHONPATH": str(args.baseline)}, args.baseline)
    results: dict[tuple[str, str, str], float] = {}
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip() in ("as is", "loaded")]
    for condition in conditions:
        for name, argv in jobs.items():
            times: dict[str, list[float]] = {setting: [] for setting in settings}
            with Load(busy if condition == "loaded" else 0):
                for round_ in range(args.rounds):  # the settings interleaved, so that changes in load hit them alike
                    for setting, (env, cwd) in settings.items():
                        if setting.startswith("baseline") and round_ >= args.baseline_rounds:
                            continue
                        times[setting].append(timed([sys.executable, "-m", "ast_cli", *argv], env, cwd))
                        print(f"  {condition:6} {name:38} {setting:18} {times[setting][-1]:7.1f} s", file=sys.stderr)
            for setting in settings:
                results[(condition, name, setting)] = statistics.median(times[setting])
    try:
        load_now = os.getloadavg()[0]
    except OSError:
        load_now = float("nan")
    columns = [f"{condition}: {setting}" for condition in conditions for setting in settings]
    print("| work | " + " | ".join(columns) + "".join(f" | {c}: default / best" for c in conditions) + " |")
    print("|---|" + "---|" * (len(columns) + len(conditions)))
    for name in jobs:
        cells = [f"{results[(c, name, s)]:.1f} s" for c in conditions for s in settings]
        ratios = []
        for condition in conditions:
            best = min(results[(condition, name, s)] for s in ("default", "OMP_NUM_THREADS=1"))
            ratios.append(f"{results[(condition, name, 'default')] / best:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    print(f"\nload average {load_now:.2f} at the end (the busy processes stopped)")


if __name__ == "__main__":
    main()
