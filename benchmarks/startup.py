"""Wall time of short commands, from process start to exit (best of N interleaved runs).

    python benchmarks/startup.py [--runs 5] [--baseline DIR]

- `ast --help`, `ast tag --help` and a shell-completion request: no torch import on these paths;
- `ast tag one.wav -m LOCAL_DIR`: the whole job on a full-size local model (10-s clip).

`--baseline DIR` also times another source tree of the package (e.g. `git archive HEAD~3 | tar -x
-C DIR`), run by the same `ast` script with DIR first on PYTHONPATH. Each round runs every command
of every tree once, so load from other processes hits both alike; the columns are best-of-N wall
and CPU (user + system) times.
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
from common import clips, full_size_checkpoint, machine

ROOT = Path(__file__).resolve().parents[1]


def seconds(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run. On a busy machine the CPU time is the
    steadier of the two: waiting for a core counts in the wall time only."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another source tree of ast_cli to time alongside this one")
    args = parser.parse_args()
    ast = shutil.which("ast") or str(Path(sys.executable).with_name("ast"))
    model = full_size_checkpoint()
    clip = clips(tempfile.mkdtemp(prefix="ast-startup-"), 1)[0]
    completion = {"_AST_COMPLETE": "complete_bash", "COMP_WORDS": "ast ta", "COMP_CWORD": "1"}
    commands = {  # name -> (argv, extra environment)
        "ast --help": ([ast, "--help"], {}),
        "ast tag --help": ([ast, "tag", "--help"], {}),
        "completion (bash, 'ast ta<TAB>')": ([ast], completion),
        "python -c 'import torch, torchaudio'": ([sys.executable, "-c", "import torch, torchaudio"], {}),
        "ast tag one.wav -m LOCAL_DIR (full size)": ([ast, "tag", str(clip), "-m", str(model), "-f", "jsonl"], {}),
    }
    trees = {"this tree": ROOT}
    if args.baseline:
        trees = {"baseline": args.baseline.resolve(), **trees}
    header = machine()
    wall = {(name, tree): float("inf") for name in commands for tree in trees}
    cpu = dict(wall)
    for _ in range(args.runs):
        for name, (cmd, extra) in commands.items():
            for tree, path in trees.items():
                env = dict(
                    os.environ, **extra, PYTHONPATH=os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")])
                )
                w, c = seconds(cmd, env)
                wall[name, tree], cpu[name, tree] = min(wall[name, tree], w), min(cpu[name, tree], c)
    print(f"machine: {header}, {os.getloadavg()[0]:.2f} at the end\n")
    print("| command | " + " | ".join(f"{tree}: wall (s) | {tree}: CPU (s)" for tree in trees) + " |")
    print("|---|" + "---|---|" * len(trees))
    for name in commands:
        print(f"| {name} | " + " | ".join(f"{wall[name, tree]:.2f} | {cpu[name, tree]:.2f}" for tree in trees) + " |")


if __name__ == "__main__":
    main()
