"""`ast batch` end to end against transformers' pipeline, on the same full-size model and clips, in one run.

    python benchmarks/batch_throughput.py [--clips 64] [--reference-clips 8] [--rounds 2]

- ast batch (auto precision, default workers), --precision fp32 and --precision int8: the command in a
  child process over a folder of 10-s WAV clips, writing CSV; "end to end" counts from process
  start to exit (imports, model load, decoding, features, model, writing), "steady" is the rate the
  command reports in its summary line (from the first file to the last, after start-up);
- transformers fp32 / bf16 autocast: soundfile + ASTFeatureExtractor + ASTForAudioClassification
  a clip at a time in this process (what its audio-classification pipeline does), on the first
  `--reference-clips` clips (they are slow), after a warm-up.
Methods alternate over `--rounds` rounds so that load from other processes hits all of them alike.
Speed does not depend on the weights, so a random full-size model stands for the released one.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clips, full_size_checkpoint, git_revision, machine
from compare_transformers import transformers_runner

CLIP_SECONDS = 10.0


def ast_batch(folder: Path, model: Path, out: Path, *extra: str) -> tuple[float, float]:
    """(end-to-end seconds, steady files/s from the summary line) of one `ast batch` run."""
    cmd = [sys.executable, "-m", "ast_cli", "batch", str(folder), "-o", str(out), "-m", str(model), "--force", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"ast batch failed ({proc.returncode}): {proc.stderr.strip()}")
    steady = float(re.findall(r"([\d.]+) files/s", proc.stderr)[-1])
    return seconds, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--reference-clips", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-transformers", action="store_true", help="only ast (when transformers is not installed)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ast-batch-bench-"))
    model = full_size_checkpoint()
    paths = clips(work / "clips", args.clips, seconds=CLIP_SECONDS)
    print(f"machine: {machine()}; ast {git_revision()}", file=sys.stderr)

    references = {}
    if not args.no_transformers:
        references = {
            "transformers fp32 (a clip at a time)": transformers_runner(model, bf16=False),
            "transformers bf16 autocast": transformers_runner(model, bf16=True),
        }
        for run in references.values():
            run(paths[0])  # warm-up
    variants = {
        "ast batch (auto: bf16 here)": (),
        "ast batch --precision fp32": ("--precision", "fp32"),
        "ast batch --precision int8 (opt-in)": ("--precision", "int8"),
    }
    ref_seconds = dict.fromkeys(references, 0.0)
    end_to_end = dict.fromkeys(variants, 0.0)
    steady: dict[str, list[float]] = {name: [] for name in variants}
    subset = paths[: args.reference_clips]
    for round_ in range(args.rounds):
        for name, run in references.items():
            start = time.perf_counter()
            for path in subset:
                run(path)
            ref_seconds[name] += time.perf_counter() - start
        for name, extra in variants.items():
            seconds, rate = ast_batch(work / "clips", model, work / f"out-{round_}.csv", "--quiet", *extra)
            end_to_end[name] += seconds
            steady[name].append(rate)

    rows = {name: args.rounds * len(subset) / s for name, s in ref_seconds.items()}
    for name in variants:
        rows[f"{name}, end to end"] = args.rounds * len(paths) / end_to_end[name]
        rows[f"{name}, steady"] = sum(steady[name]) / len(steady[name])
    base32 = rows.get("transformers fp32 (a clip at a time)")
    base16 = rows.get("transformers bf16 autocast")
    print(f"\n{len(paths)} clips of {CLIP_SECONDS:.0f} s, full-size AST (random weights), {args.rounds} rounds\n")
    print("| method | clips/s | audio s/s | x transformers fp32 | x transformers bf16 |")
    print("|---|---|---|---|---|")
    for name, rate in rows.items():
        r32 = f"{rate / base32:.1f}" if base32 else "-"
        r16 = f"{rate / base16:.1f}" if base16 else "-"
        print(f"| {name} | {rate:.2f} | {rate * CLIP_SECONDS:.0f} | {r32} | {r16} |")


if __name__ == "__main__":
    main()
