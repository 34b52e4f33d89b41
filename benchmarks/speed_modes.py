"""Every opt-in speed mode against the default path: speed on the full-size model, agreement on a model
trained here. Issue 27.

    python benchmarks/speed_modes.py [--rounds 5] [--epochs 20] [--train-per-class 24] [--test-per-class 6]
                                     [--work DIR] [--skip-speed] [--skip-agreement]

1. Speed: one window of the full-size model (768 wide, 12 layers, random weights: speed does not
   depend on them; `common.full_size_checkpoint`), batch 1, `Tagger.logits` as `ast tag` runs it:
   the default (`--precision auto`), `--keep-tokens 0.7` and `0.5`, `--precision int8`,
   `--crop-short` on 1-s and 2-s clips, and `--crop-short` with `--keep-tokens 0.7`. After a warm-up
   call each, the modes take turns in every round; best and median of the rounds, the speed-up over
   the default (best against best) and the ratio to the floor: the full window's FLOPs, and the
   mode's own, at the bf16 matrix-product rate measured at the model's shapes in this run
   (`limit.py`; int8 against the bf16 rate too). The FLOPs of each
   mode (Linear layers and attention, as `limit.py` counts them) are computed from the token counts
   each layer sees (`model.pruning_layers`, `model.kept_tokens`) and printed against the default's.
2. Agreement: a model fine-tuned here with `ast finetune --base new:small` (4 layers, 192 wide, the
   authors' 10/10 strides, a 1024-frame window) on generated 10.24-s clips of 12 classes
   (`common.SOUND_CLASSES`): 1 to 3 events of the clip's class at random times over background
   noise, so the content is spread over the window. Trained once into WORK/model and reused. On
   held-out clips (another seed) each mode is compared with the default path of the same model:
   top-1 agreement, top-5 overlap (mean |top-5 and top-5 in common| / 5), the largest and the mean
   absolute score difference (softmax scores), and the accuracy of each. Also on 1-s and 2-s clips
   (one event over noise), padded to the window as by default, where the padding's patches are the
   ones pruning should drop first. A diagnostic row (not a flag) prunes in the last of the rule's
   layers only (layer 3 of the model's 4).
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

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ast_cli import threads

threads.openmp_environment()  # as the ast process does, before torch loads
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SOUND_CLASSES, SR, class_sound, full_size_checkpoint, git_revision, machine  # noqa: E402
from crop_short import frames_of  # noqa: E402
from limit import matmul_tflops  # noqa: E402

KEEP_RATES = (0.7, 0.5)


def window_flops(patches: int, rate: float, depth: int = 12, width: int = 768, mlp: int = 3072) -> float:
    """FLOPs of one window's Linear layers and attention (2 per multiply-add) with token pruning at
    ``rate``: in a pruning layer, q/k/v, attention and its projection see the tokens that come in, the
    MLP the kept ones; the class tokens' attention row is counted too."""
    from ast_cli.model import kept_tokens, pruning_layers

    pruning = pruning_layers(depth) if rate < 1 else ()
    n, total = patches, 0.0
    for layer in range(depth):
        tokens = n + 2
        total += 2 * tokens * width * 4 * width + 4 * tokens * tokens * width  # qkv, proj; QK^T, PV
        if layer in pruning:
            total += 2 * 2 * tokens * width  # the class tokens' scores
            n = kept_tokens(n, rate)
        total += 2 * (n + 2) * width * mlp * 2  # fc1, fc2
    return total


def speed(rounds: int) -> None:
    from ast_cli.inference import load_model
    from ast_cli.windows import cropped_frames

    model_dir = str(full_size_checkpoint())
    default = load_model(model_dir, device="cpu", precision="auto")
    pruned = {rate: load_model(model_dir, device="cpu", precision="auto", keep_tokens=rate) for rate in KEEP_RATES}
    int8 = load_model(model_dir, device="cpu", precision="int8")
    x = torch.randn(1, 1024, 128, generator=torch.Generator().manual_seed(0))
    crop = {s: cropped_frames(frames_of(s), 1024, 16, 10) for s in (1.0, 2.0)}
    patches = {s: 12 * ((crop[s] - 16) // 10 + 1) for s in crop}  # 12 frequency patches a time step
    runs = {  # name: (call, patches, keep rate)
        f"default ({default.precision})": (lambda: default.logits(x), 1212, 1.0),
        **{f"--keep-tokens {r}": (lambda t=t: t.logits(x), 1212, r) for r, t in pruned.items()},
        "--precision int8": (lambda: int8.logits(x), 1212, 1.0),
        **{
            f"--crop-short, {s:g}-s clip": (lambda n=n: default.logits(x[:, :n]), patches[s], 1.0)
            for s, n in crop.items()
        },
        "--crop-short --keep-tokens 0.7, 2-s clip": (lambda: pruned[0.7].logits(x[:, : crop[2.0]]), patches[2.0], 0.7),
    }
    rate = matmul_tflops(torch.bfloat16, 5) * 1e12
    full = window_flops(1212, 1.0)
    for call, _, _ in runs.values():  # warm-up: kernel selection for each shape
        call()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (call, _, _) in runs.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    base = min(seconds[next(iter(runs))])
    print(
        f"bf16 matrix products at the model's shapes: {rate / 1e12:.3f} TFLOP/s; floor of a full window "
        f"({full / 1e12:.3f} TFLOP): {full / rate:.3f} s; load average after: {os.getloadavg()[0]:.2f}\n"
    )
    print(
        f"| mode | patch tokens in | FLOPs vs default | s a window, best of {rounds} | median | speed-up | "
        "x the full window's floor | x its own floor |\n|---|---|---|---|---|---|---|---|"
    )
    for name, (_, n, keep) in runs.items():
        best = min(seconds[name])
        print(
            f"| {name} | {n} | {window_flops(n, keep) / full:.2f} | {best:.3f} | "
            f"{statistics.median(seconds[name]):.3f} | {base / best:.2f}x | {best / (full / rate):.2f} | "
            f"{best / (window_flops(n, keep) / rate):.2f} |"
        )


def event_clips(directory: Path, per_class: int, seconds: float, events: tuple[int, int], seed: int) -> list:
    """``per_class`` clips of each class: 1-s to 2-s events of the class (as many as ``events`` allows,
    each shorter than the clip) at random times over background noise; WAV in a folder per class
    (made once). Returns (path, class index) pairs."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    out = []
    for label, kind in enumerate(SOUND_CLASSES):
        (directory / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = directory / kind / f"{i:03d}.wav"
            out.append((path, label))
            if path.exists():
                continue
            x = rng.uniform(0.003, 0.03) * rng.standard_normal(n)  # background
            for _ in range(int(rng.integers(events[0], events[1] + 1))):
                length = min(n, int(rng.uniform(1.0, 2.0) * SR))
                at = int(rng.integers(0, n - length + 1))
                x[at : at + length] += class_sound(kind, length, rng) * rng.uniform(0.1, 0.8) * np.hanning(length)
            sf.write(path, np.clip(x, -1, 1).astype(np.float32), SR, subtype="PCM_16")
    return out


def trained_model(work: Path, per_class: int, epochs: int) -> Path:
    """``ast finetune --base new:small`` on the generated 10.24-s clips, once per WORK."""
    out = work / "model"
    if (out / "model.safetensors").exists():
        print(f"(the model trained earlier in {out})")
        return out
    data = work / "train"
    event_clips(data, per_class, 10.24, (1, 3), seed=0)
    command = [sys.executable, "-m", "ast_cli", "finetune", str(data), "-o", str(out), "--base", "new:small"]
    command += ["--target-length", "1024", "--epochs", str(epochs), "--seed", "0", "--workers", "0", "--force"]
    start = time.monotonic()
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    print(f"ast finetune: {time.monotonic() - start:.0f} s")
    return out


def agreement_rows(reference: torch.Tensor, scores: dict[str, torch.Tensor], labels: torch.Tensor) -> list[str]:
    top1 = reference.argmax(1)
    top5 = reference.topk(5).indices
    rows = [f"| default (reference) | 1.00 | 1.00 | 0 | 0 | {(top1 == labels).float().mean():.2f} |"]
    for name, s in scores.items():
        overlap = (s.topk(5).indices[:, :, None] == top5[:, None, :]).any(2).float().sum(1).mean() / 5
        diff = (s - reference).abs()
        rows.append(
            f"| {name} | {(s.argmax(1) == top1).float().mean():.2f} | {overlap:.2f} | {diff.max():.3f} | "
            f"{diff.mean():.4f} | {(s.argmax(1) == labels).float().mean():.2f} |"
        )
    return rows


def scored(tagger, crop: bool, last_only: bool, paths: list[Path]) -> torch.Tensor:
    """(clips, C) scores of the first window of each path; ``last_only``: pruning in the last of the
    layers the rule names only (layer 3 of 4), to see whether pruning early is what costs."""
    from ast_cli import model
    from ast_cli.options import TagOptions

    rule = model.pruning_layers
    if last_only:
        model.pruning_layers = lambda depth: rule(depth)[-1:]
    try:
        return torch.stack([tagger.run(p, TagOptions(crop_short=crop)).scores[0] for p in paths])
    finally:
        model.pruning_layers = rule


def agreement(work: Path, per_class: int, epochs: int, test_per_class: int) -> None:
    from ast_cli.inference import load_model
    from ast_cli.options import TagOptions

    model = str(trained_model(work, per_class, epochs))
    default = load_model(model, device="cpu", precision="auto")
    pruned = {r: load_model(model, device="cpu", precision="auto", keep_tokens=r) for r in KEEP_RATES}
    modes = {  # name: (tagger, --crop-short, pruning in the last layer only)
        "fp32 (for scale: the default's precision)": (load_model(model, device="cpu", precision="fp32"), False, False),
        "--precision int8": (load_model(model, device="cpu", precision="int8"), False, False),
        **{f"--keep-tokens {r}": (t, False, False) for r, t in pruned.items()},
        **{
            f"--keep-tokens {r}, in the last of its layers only (diagnostic)": (t, False, True)
            for r, t in pruned.items()
        },
    }
    tests = {"10.24-s clips, 1-3 events": event_clips(work / "test-10s", test_per_class, 10.24, (1, 3), seed=1)}
    for seconds in (1.0, 2.0):
        tests[f"{seconds:g}-s clips, padded"] = event_clips(
            work / f"test-{seconds:g}s", test_per_class, seconds, (1, 1), 2
        )
    for name, clips in tests.items():
        labels = torch.tensor([default.labels.index(SOUND_CLASSES[label]) for _, label in clips])  # its order
        reference = torch.stack([default.run(p, TagOptions()).scores[0] for p, _ in clips])
        runs = dict(modes)
        if "padded" in name:
            runs["--crop-short"] = (default, True, False)
            runs["--crop-short --keep-tokens 0.7"] = (pruned[0.7], True, False)
        scores = {mode: scored(*run, [p for p, _ in clips]) for mode, run in runs.items()}
        print(
            f"\n{name}: {len(clips)} held-out clips, {len(SOUND_CLASSES)} classes (chance 0.08), against the default\n"
        )
        print("| mode | top-1 agreement | top-5 overlap | max score diff | mean score diff | accuracy |")
        print("|---|---|---|---|---|---|")
        print("\n".join(agreement_rows(reference, scores, labels)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--train-per-class", type=int, default=24)
    parser.add_argument("--test-per-class", type=int, default=6)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ast-bench-speed-modes")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-agreement", action="store_true")
    args = parser.parse_args()
    from ast_cli import allocator

    allocator.tune()  # as the ast process does
    torch.set_num_threads(threads.available_cpus())
    print(f"machine: {machine()}; ast {git_revision()}; torch threads {torch.get_num_threads()}\n")
    if not args.skip_speed:
        speed(args.rounds)
    if not args.skip_agreement:
        args.work.mkdir(parents=True, exist_ok=True)
        agreement(args.work, args.train_per_class, args.epochs, args.test_per_class)
    print(f"\nload average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
