"""bf16 and int8 against fp32: score differences, top-k agreement of trained models, and speed.

    python benchmarks/precision.py [--train-per-class 12] [--test-per-class 4] [--clips 8] [--rounds 3]

1. The full-size AudioSet-shaped model (random weights, 527 sigmoid outputs) on the benchmark's
   10-s clips: the max abs score difference of each precision from fp32.
2. Trained models, saved in Hub layout and loaded back with each precision through
   `ast_cli.load_model` (the path of `ast tag --precision`), scored on held-out clips of 12 classes
   of generated sound (common.SOUND_CLASSES): accuracy, top-1 and top-5 agreement with fp32 (same
   best label; same set of five best labels), max abs score difference.
   - a small AST (4 layers, 192 wide, 2.56-s window) trained end to end by `ast_cli.training`
     (softmax): margins like those of a trained model, but 4 layers of rounding, not 12;
   - the full-size random backbone with a new head (LayerNorm + Linear, sigmoid) trained on its fp32
     embeddings: 12 layers of rounding, but a head that must amplify the tiny differences between
     random embeddings, so it also amplifies bf16's rounding: a pessimistic bound.
   A random head would give near-equal scores, whose order any rounding flips.
3. Speed: seconds per window of the full-size model alone (`Tagger.logits`), batches of 1 and 8
   windows, precisions interleaved in rounds, best of the rounds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SOUND_CLASSES, class_clips, clips, full_size_checkpoint, git_revision, machine

PRECISIONS = ("fp32", "bf16", "int8")


def scores(tagger, paths) -> torch.Tensor:
    """(clips, labels) unrounded scores of each clip's single window."""
    from ast_cli.inference import TagOptions

    options = TagOptions(top=0)
    return torch.stack([tagger.run(path, options).scores[0] for path in paths])


def train_head(model, embeddings: torch.Tensor, labels: torch.Tensor, steps: int = 300) -> None:
    """A fresh LayerNorm + Linear head on fixed fp32 embeddings, one-hot BCE (sigmoid scores, as AudioSet)."""
    torch.manual_seed(0)
    model.reset_classifier(len(SOUND_CLASSES))
    model.fc_norm.reset_parameters()
    head = torch.nn.Sequential(model.fc_norm, model.head)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    targets = torch.nn.functional.one_hot(labels, len(SOUND_CLASSES)).float()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(embeddings), targets)
        loss.backward()
        optimizer.step()


def head_trained(work: Path, train: list[tuple[Path, int]]) -> Path:
    import ast_cli
    from ast_cli.checkpoints import save
    from ast_cli.inference import TagOptions

    tagger = ast_cli.load_model(str(full_size_checkpoint()), device="cpu", precision="fp32")
    windows = [next(iter(tagger.windows(path, TagOptions())[0])).features for path, _ in train]
    embeddings = torch.cat([tagger.embeddings(torch.stack(windows[i : i + 8])) for i in range(0, len(windows), 8)])
    model = tagger.model
    train_head(model, embeddings, torch.tensor([label for _, label in train]))
    model.config = model.config.replace(id2label=dict(enumerate(SOUND_CLASSES)))
    return save(model, tagger.preprocessor, work / "head-trained")


def small_trained(work: Path, data_dir: Path, epochs: int) -> Path:
    from ast_cli.checkpoints import save
    from ast_cli.config import ASTConfig, PreprocessorConfig
    from ast_cli.model import AST
    from ast_cli.training import FinetuneOptions, finetune

    torch.manual_seed(0)
    config = ASTConfig(
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=3,
        intermediate_size=768,
        max_length=256,
        id2label={0: "base"},
    )
    base = save(AST(config), PreprocessorConfig(max_length=256), work / "small-base")
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
    result = finetune(str(data_dir), str(work / "small-trained"), options, log=lambda _: None)
    print(
        f"small AST: best epoch {result['best_epoch']} of {epochs}, validation accuracy {result['accuracy']:.2f}",
        file=sys.stderr,
    )
    return work / "small-trained"


def agreement(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    """Share of clips whose k best labels are the same set under both score matrices."""
    top_a, top_b = a.topk(k).indices.sort().values, b.topk(k).indices.sort().values
    return (top_a == top_b).all(1).float().mean().item()


def speed(model_dir: Path, rounds: int) -> dict[tuple[str, int], float]:
    import ast_cli

    taggers = {p: ast_cli.load_model(str(model_dir), device="cpu", precision=p) for p in PRECISIONS}
    torch.manual_seed(0)
    x = torch.randn(8, taggers["fp32"].window_frames, 128)
    best = {(p, b): float("inf") for p in PRECISIONS for b in (1, 8)}
    for tagger in taggers.values():  # first call: oneDNN kernel selection, allocations
        tagger.logits(x[:1])
    for _ in range(rounds):
        for p, b in best:
            start = time.perf_counter()
            taggers[p].logits(x[:b])
            best[p, b] = min(best[p, b], (time.perf_counter() - start) / b)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--train-per-class", type=int, default=12, help="training clips per class (the full-size head uses 4 of them)"
    )
    parser.add_argument("--test-per-class", type=int, default=4, help="held-out clips per class")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of the small AST")
    parser.add_argument("--clips", type=int, default=8, help="10-s benchmark clips for part 1")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import ast_cli

    print(f"machine: {machine()}; ast {git_revision()}\n")
    work = Path(tempfile.mkdtemp(prefix="ast-precision-"))

    random_dir = full_size_checkpoint()
    bench = clips(work / "clips", args.clips)
    reference = None
    print("| random full-size model, 10-s clips | max abs score diff vs fp32 | top-5 agreement |\n|---|---|---|")
    for p in PRECISIONS:
        got = scores(ast_cli.load_model(str(random_dir), device="cpu", precision=p), bench)
        reference = got if reference is None else reference
        print(f"| {p} | {(got - reference).abs().max():.1e} | {agreement(got, reference, 5):.2f} |")

    train = class_clips(work / "train", args.train_per_class)
    test = class_clips(work / "test", args.test_per_class, seed=1)
    models = {
        "small AST trained end to end": small_trained(work, work / "train", args.epochs),
        "full-size random backbone, trained head": head_trained(work, train[:: max(args.train_per_class // 4, 1)]),
    }
    print(
        f"\n| trained model, {len(SOUND_CLASSES)} classes, {len(test)} held-out clips | precision | "
        "accuracy | top-1 agreement | top-5 agreement | max abs score diff |"
    )
    print("|---|---|---|---|---|---|")
    for name, model_dir in models.items():
        reference = None
        for p in PRECISIONS:
            tagger = ast_cli.load_model(str(model_dir), device="cpu", precision=p)
            got = scores(tagger, [path for path, _ in test])
            reference = got if reference is None else reference
            predicted = [tagger.labels[i] for i in got.argmax(1).tolist()]  # finetune sorts the class names
            accuracy = sum(
                name == SOUND_CLASSES[label] for name, (_, label) in zip(predicted, test, strict=True)
            ) / len(test)
            top1 = (got.argmax(1) == reference.argmax(1)).float().mean().item()
            print(
                f"| {name} | {p} | {accuracy:.2f} | {top1:.2f} | {agreement(got, reference, 5):.2f} | "
                f"{(got - reference).abs().max():.1e} |"
            )

    best = speed(random_dir, args.rounds)
    print(
        "\n| precision | s per window, batch 1 | s per window, batch 8 | speed-up vs fp32 (batch 1) "
        "|\n|---|---|---|---|"
    )
    for p in PRECISIONS:
        print(f"| {p} | {best[p, 1]:.2f} | {best[p, 8]:.2f} | {best['fp32', 1] / best[p, 1]:.2f} |")


if __name__ == "__main__":
    main()
