"""Wall time of short commands, from process start to exit (best of N runs).

    python benchmarks/startup.py [--runs 5]

- `ast --help`, `ast tag --help` and a shell-completion request: no torch import on these paths;
- `ast tag one.wav -m LOCAL_DIR`: the whole job on a full-size local model (10-s clip).
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
from common import clips, full_size_checkpoint, machine  # noqa: E402


def best_of(cmd: list[str], runs: int, env: dict | None = None) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ast = shutil.which("ast") or str(Path(sys.executable).with_name("ast"))
    model = full_size_checkpoint()
    clip = clips(tempfile.mkdtemp(prefix="ast-startup-"), 1)[0]
    completion_env = dict(os.environ, _AST_COMPLETE="complete_bash", COMP_WORDS="ast ta", COMP_CWORD="1")
    rows = {
        "ast --help": best_of([ast, "--help"], args.runs),
        "ast tag --help": best_of([ast, "tag", "--help"], args.runs),
        "completion (bash, 'ast ta<TAB>')": best_of([ast], args.runs, env=completion_env),
        "python -c 'import torch, torchaudio'": best_of([sys.executable, "-c", "import torch, torchaudio"], args.runs),
        "ast tag one.wav -m LOCAL_DIR (full size)": best_of([ast, "tag", str(clip), "-m", str(model), "-f", "jsonl"], args.runs),
    }
    print(f"machine: {machine()}\n")
    print("| command | best wall time (s) |\n|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
