"""Short clips: padding to the full window against `--crop-short`, speed and scores, in one run.

    python benchmarks/crop_short.py [--rounds 5] [--train-per-class 12] [--epochs 15] [--test-per-class 4]

1. Speed: one window of the full-size model (random weights, `Tagger.logits` as `ast tag` runs it,
   `--precision auto`) for clips of 1, 2 and 5 s: padded to 1024 frames, and cropped to the frames
   whose patches cover the clip (`windows.cropped_frames`). Padded and cropped take turns in every
   round; best of the rounds, and the speed-up padded / cropped.
2. Scores, padded against cropped, on generated clips of 12 classes of sound (common.SOUND_CLASSES):
   the largest score difference, top-1 and top-5 agreement (same best label; same set of five
   best), and accuracy both ways:
   - a small AST (4 layers, 192 wide, a 256-frame window) trained end to end by `ast_cli.training`
     (fp32, as benchmarks/precision.py) on 2-s clips, tested on 0.5-s and 1-s clips (20 % and 40 %
     of its window, as 2-s and 4-s clips are of 10.24 s): a model whose scores mean something;
     the cropped window with the patches' own positions (`--crop-short`) and, for comparison, with
     the authors' way of fitting a position table to a shorter input (`layouts.adapt_pos_embed`:
     cut around the centre). (The same model with the full 1024-frame window, trained on 10-s
     clips, learnt too little in a few minutes here: 0.33 validation accuracy after 5 epochs.)
   - the full-size model with random weights on 1-s and 2-s clips: labelled as such; near-equal
     random scores make its agreement a pessimistic number, not a measure of a trained model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ast_cli import threads

threads.openmp_environment()  # as the ast process does, before torch loads
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SOUND_CLASSES, class_clips, full_size_checkpoint, git_revision, machine  # noqa: E402

SECONDS = (1.0, 2.0, 5.0)


def frames_of(seconds: float) -> int:
    """fbank frames of a clip: 25-ms frames every 10 ms."""
    return 1 + (int(seconds * 16000) - 400) // 160


def speed(tagger, rounds: int) -> list[tuple[float, int, float, float]]:
    """(clip seconds, cropped frames, best padded s, best cropped s) a window."""
    from ast_cli.windows import cropped_frames

    c = tagger.config
    torch.manual_seed(0)
    x = torch.randn(1, tagger.window_frames, c.num_mel_bins)
    crops = {s: cropped_frames(frames_of(s), c.max_length, c.patch_size, c.time_stride) for s in SECONDS}
    runs = {("padded", None): x, **{("cropped", s): x[:, :n] for s, n in crops.items()}}
    for features in runs.values():  # warm-up: kernel selection for each shape
        tagger.logits(features)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for key, features in runs.items():
            start = time.perf_counter()
            tagger.logits(features)
            best[key] = min(best[key], time.perf_counter() - start)
    return [(s, crops[s], best["padded", None], best["cropped", s]) for s in SECONDS]


def small_trained(work: Path, data_dir: Path, epochs: int) -> Path:
    from ast_cli.checkpoints import save
    from ast_cli.config import ASTConfig, PreprocessorConfig
    from ast_cli.model import AST
    from ast_cli.training import FinetuneOptions, finetune

    out = work / "small-trained"
    if (out / "model.safetensors").exists():
        return out
    torch.manual_seed(0)
    config = ASTConfig(
        hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768, max_length=256
    )
    base = save(AST(config.replace(id2label={0: "base"})), PreprocessorConfig(max_length=256), work / "small-base")
    options = FinetuneOptions(
        base=str(base),
        epochs=epochs,
        lr=1e-3,
        batch_size=16,
        freqm=0,
        timem=0,
        val_split=0.2,
        device="cpu",
        precision="fp32",
        workers=0,
    )
    result = finetune(str(data_dir), str(out), options, log=lambda _: None)
    print(f"small AST: best epoch {result['best_epoch']} of {epochs}, validation accuracy {result['accuracy']:.2f}")
    return out


def centre_scores(tagger, path: Path) -> torch.Tensor:
    """The cropped window with the position table cut around its centre (the authors' adaptation)."""
    from ast_cli.config import patch_grid
    from ast_cli.inference import TagOptions
    from ast_cli.layouts import adapt_pos_embed

    c = tagger.config
    window = next(iter(tagger.windows(path, TagOptions(crop_short=True))[0])).features[None]  # (1, T', F)
    grid = patch_grid(c.num_mel_bins, window.shape[1], c.patch_size, c.frequency_stride, c.time_stride)
    pos = adapt_pos_embed(tagger.model.pos_embed.detach(), c.grid, grid)
    with torch.inference_mode(), torch.autocast("cpu", tagger.dtype, enabled=tagger.dtype != torch.float32):
        return tagger.activate(tagger.model(window, pos).float(), None)[0]


def agreement(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    top_a, top_b = a.topk(k).indices.sort().values, b.topk(k).indices.sort().values
    return (top_a == top_b).all(1).float().mean().item()


def score_rows(tagger, tests: list[tuple[Path, int]], name: str, trained: bool) -> list[str]:
    from ast_cli.inference import TagOptions

    labels = torch.tensor([tagger.labels.index(SOUND_CLASSES[label]) if trained else -1 for _, label in tests])
    padded = torch.stack([tagger.run(p, TagOptions(top=0)).scores[0] for p, _ in tests])
    variants = {
        "`--crop-short` (positions as padded)": [tagger.run(p, TagOptions(crop_short=True)).scores[0] for p, _ in tests]
    }
    if trained:  # a trained model: its accuracy, and the authors' way of fitting the table for comparison
        variants["cropped, table cut around its centre"] = [centre_scores(tagger, p) for p, _ in tests]
    rows = []
    for variant, scores in variants.items():
        cropped = torch.stack(scores)
        accuracy = [f"{(s.argmax(1) == labels).float().mean():.2f}" if trained else "-" for s in (padded, cropped)]
        rows.append(
            f"| {name} | {variant} | {(padded - cropped).abs().max():.3f} | {agreement(padded, cropped, 1):.2f} | "
            f"{agreement(padded, cropped, 5):.2f} | {accuracy[0]} | {accuracy[1]} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--train-per-class", type=int, default=12)
    parser.add_argument("--test-per-class", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ast-bench-crop")
    args = parser.parse_args()
    from ast_cli import allocator
    from ast_cli.inference import load_model

    allocator.tune()
    torch.set_num_threads(threads.available_cpus())
    print(f"machine: {machine()}; ast {git_revision()}; torch threads {torch.get_num_threads()}\n")
    full = load_model(str(full_size_checkpoint()), device="cpu", precision="auto")
    print(
        f"{full.precision}, best of {args.rounds}:\n\n"
        "| clip | frames cropped to | padded, s a window | cropped, s | speed-up |"
    )
    print("|---|---|---|---|---|")
    for seconds, frames, padded, cropped in speed(full, args.rounds):
        print(f"| {seconds:g} s | {frames} of 1024 | {padded:.3f} | {cropped:.3f} | {padded / cropped:.1f}x |")

    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.work / "train").exists():
        class_clips(args.work / "train", args.train_per_class, seconds=2.0)
    small = load_model(str(small_trained(args.work, args.work / "train", args.epochs)), device="cpu", precision="auto")
    print(
        f"\nscores, padded against cropped ({len(SOUND_CLASSES)} classes, {args.test_per_class} clips each, "
        f"{full.precision}):\n"
    )
    print(
        "| model, clips | cropped how | max score diff | top-1 agreement | top-5 agreement | accuracy: padded "
        "| cropped |"
    )
    print("|---|---|---|---|---|---|---|")
    for seconds in (0.5, 1.0):
        tests = class_clips(args.work / f"test-{seconds:g}s", args.test_per_class, seconds=seconds, seed=1)
        for row in score_rows(small, tests, f"small AST, 2.56-s window, trained; {seconds:g}-s clips", trained=True):
            print(row)
    for seconds in (1.0, 2.0):
        tests = class_clips(args.work / f"test-{seconds:g}s", args.test_per_class, seconds=seconds, seed=1)
        for row in score_rows(full, tests, f"full-size, **random weights**; {seconds:g}-s clips", trained=False):
            print(row)
    print(f"\nload average at the end: {' '.join(f'{v:.2f}' for v in __import__('os').getloadavg())}")


if __name__ == "__main__":
    main()
