"""How long a command that needs an uncached model takes to say the Hub cannot be reached, and what it prints.

    python benchmarks/offline.py [--baseline DIR] [--runs 3]

The Hub is made unreachable by pointing HF_ENDPOINT at a closed port on the loopback address (a fresh,
empty HF_HOME, HF_HUB_OFFLINE unset), so huggingface_hub would retry as it does on a dead network.
`--baseline DIR` also runs another source tree of the package (e.g. `git worktree add DIR REV`) with
DIR first on PYTHONPATH, interleaved with this one. Prints, per command: best wall time, stderr lines,
exit status.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "ast tag examples/siren.wav": ["tag", str(ROOT / "examples" / "siren.wav")],
    "ast labels": ["labels"],
    "ast models download ID": ["models", "download", "MIT/ast-finetuned-audioset-10-10-0.4593"],
}


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(tree: Path, args: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    env = {**env, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ast_cli", *args], env=env, capture_output=True, text=True, cwd=tree)
    return time.perf_counter() - start, len(proc.stderr.splitlines()), proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another source tree of the package, run side by side")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    trees = {"this tree": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}; endpoint {env['HF_ENDPOINT']} (closed)\n")
    best: dict[tuple[str, str], tuple[float, int, int]] = {}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            for tree_name, tree in trees.items():
                with tempfile.TemporaryDirectory() as home:
                    result = run(tree, command, {**env, "HF_HOME": home})
                key = (name, tree_name)
                if key not in best or result[0] < best[key][0]:
                    best[key] = result
    print(f"{'command':<28} {'tree':<10} {'wall s':>7} {'stderr lines':>13} {'exit':>5}")
    for (name, tree_name), (seconds, lines, code) in best.items():
        print(f"{name:<28} {tree_name:<10} {seconds:>7.2f} {lines:>13} {code:>5}")


if __name__ == "__main__":
    main()
