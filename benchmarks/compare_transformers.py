"""ast against transformers on the same full-size model and the same 10-s clips, in one run.

    python benchmarks/compare_transformers.py [--clips 16] [--rounds 4]

Methods (each decodes the WAV files, computes features and runs the model):
- transformers fp32:   soundfile + ASTFeatureExtractor + ASTForAudioClassification, a clip at a time
                       (what its audio-classification pipeline does);
- transformers bf16:   the same under torch.autocast(bfloat16);
- ast fp32 / ast auto: ast_cli.Tagger.tag per clip (auto = bf16 on CPUs with native bf16);
- ast batch:           the `ast batch` command end to end (process start, decoding workers,
                       cross-file batches, CSV writing), when the command exists.
Methods run in interleaved rounds so that load from other processes hits all of them alike; the
table gives clips/s and each method's ratio to transformers. Also printed: the max abs score
difference of ast (auto precision) against transformers fp32 on these clips.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clips, full_size_checkpoint, git_revision, machine


def transformers_runner(model_dir: Path, bf16: bool):
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    fe = ASTFeatureExtractor.from_pretrained(model_dir)
    model = ASTForAudioClassification.from_pretrained(model_dir, attn_implementation="sdpa").eval()

    def run(path: Path) -> np.ndarray:
        wave, sr = sf.read(path, dtype="float32")
        inputs = fe(wave, sampling_rate=sr, return_tensors="pt")
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(**inputs).logits
        return torch.sigmoid(logits.float())[0].numpy()

    return run


def ast_runner(model_dir: Path, precision: str):
    import ast_cli

    tagger = ast_cli.load_model(str(model_dir), device="cpu", precision=precision)

    def run(path: Path) -> np.ndarray:
        labels = tagger.tag(path, top=0)["labels"]
        scores = np.zeros(len(tagger.labels), dtype=np.float32)
        for item in labels:
            scores[item["index"]] = item["score"]
        return scores

    return run


def ast_batch_seconds(model_dir: Path, paths: list[Path], out_dir: Path) -> float | None:
    probe = subprocess.run([sys.executable, "-m", "ast_cli", "batch", "--help"], capture_output=True)
    if probe.returncode != 0:
        return None
    out = out_dir / f"batch-{time.monotonic_ns()}.csv"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "ast_cli", "batch", *map(str, paths), "-o", str(out), "-m", str(model_dir), "--quiet"],
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ast-bench-"))
    model_dir = full_size_checkpoint()
    paths = clips(work / "clips", args.clips)
    print(f"machine: {machine()}; ast {git_revision()}", file=sys.stderr)

    runners = {
        "transformers fp32": transformers_runner(model_dir, bf16=False),
        "transformers bf16 autocast": transformers_runner(model_dir, bf16=True),
        "ast fp32 (Tagger)": ast_runner(model_dir, "fp32"),
        "ast auto (Tagger)": ast_runner(model_dir, "auto"),
    }
    for run in runners.values():  # warm-up: first-call allocations and kernel selection
        run(paths[0])
    seconds = dict.fromkeys(runners, 0.0)
    scores: dict[str, list[np.ndarray]] = {name: [] for name in runners}
    batch_seconds = 0.0
    chunks = np.array_split(np.arange(len(paths)), args.rounds)
    for chunk in chunks:
        for name, run in runners.items():
            start = time.perf_counter()
            scores[name].extend(run(paths[i]) for i in chunk)
            seconds[name] += time.perf_counter() - start
        took = ast_batch_seconds(model_dir, [paths[i] for i in chunk], work)
        batch_seconds = None if took is None else (batch_seconds or 0.0) + took
    results = {name: len(paths) / s for name, s in seconds.items()}
    if batch_seconds:
        results["ast batch (end to end, incl. process start)"] = len(paths) / batch_seconds

    base32 = results["transformers fp32"]
    base16 = results["transformers bf16 autocast"]
    print(f"\n{len(paths)} clips of 10 s, full-size AST (random weights)\n")
    print("| method | clips/s | x transformers fp32 | x transformers bf16 |")
    print("|---|---|---|---|")
    for name, rate in results.items():
        print(f"| {name} | {rate:.2f} | {rate / base32:.2f} | {rate / base16:.2f} |")
    ref = np.stack(scores["transformers fp32"])
    for name in ("ast fp32 (Tagger)", "ast auto (Tagger)", "transformers bf16 autocast"):
        diff = np.abs(np.stack(scores[name]) - ref).max()
        print(f"max |score - transformers fp32 score|, {name}: {diff:.2e}")
    print(json.dumps({"clips": len(paths), "clips_per_s": results}), file=sys.stderr)


if __name__ == "__main__":
    main()
