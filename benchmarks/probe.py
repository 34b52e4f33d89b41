"""The cached linear probe (``ast finetune --freeze-backbone``) against the probe before issue 17, which
ran the whole frozen backbone over every clip in every epoch.

    python benchmarks/probe.py [--clips 16] [--total 2000] [--seconds 5] [--epochs 25] [--rounds 2]

With the full-size model (random weights: speed does not depend on their values; 768 wide, 12 layers,
``--seconds`` clips, so 498 frames and 590 tokens for 5 s), at ``--precision auto``:
1. the embedding pass, what a probe's first run costs per clip: decoding, fbank and the backbone's
   pooled output, written to the cache (``probe.EmbeddingSet``), on ``--clips`` clips;
2. a head epoch on ``--total`` cached vectors (90 % trained with the probe recipe's batch of 32, 10 %
   scored), the loop ``ast finetune`` runs (``trainer.Trainer.train_epoch``), and reading ``--total`` vectors
   back from the cache (a re-run);
3. an epoch of the old probe: each training clip through the frozen backbone and the head, backward
   through the head only, plus the validation clips' forward pass, measured on ``--clips`` clips.
1 and 3 alternate for ``--rounds`` rounds (the best of each counts: other work on the machine slows
some rounds). Seconds for ``--total`` clips are extrapolated from the measured clips per second (said
in the output).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clips, full_size_checkpoint, git_revision, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16, help="clips measured through the backbone")
    parser.add_argument("--total", type=int, default=2000, help="the data set the numbers are for")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"# {machine()}; git {git_revision()}", flush=True)

    from ast_cli import checkpoints, probe
    from ast_cli import data as D
    from ast_cli.config import PreprocessorConfig
    from ast_cli.devices import precision_name, resolve_precision
    from ast_cli.recipes import RECIPES, Recipe
    from ast_cli.trainer import HEAD, Trainer, World

    device = torch.device("cpu")
    dtype = resolve_precision("auto", device)
    work = Path(tempfile.mkdtemp(prefix="ast-bench-probe-"))
    os.environ["AST_CACHE_DIR"] = str(work / "cache")
    paths = clips(work / "clips", args.clips, seconds=args.seconds)
    frames = int(args.seconds * 100) - 2  # kaldi frames of 25 ms every 10 ms
    base = checkpoints.load(str(full_size_checkpoint()), max_length=frames)
    model = base.model.eval()
    model.reset_classifier(10)
    pre = PreprocessorConfig(max_length=frames, mean=-4.27, std=4.57)
    labelled = D.LabelledSet(
        str(work), [f"c{i}" for i in range(10)], [D.LabelledClip(str(p), (i % 10,)) for i, p in enumerate(paths)]
    )
    print(
        f"full-size model, {frames} frames, {precision_name(dtype)}, torch threads {torch.get_num_threads()}",
        flush=True,
    )

    # 1. the embedding pass (the first run's cost per clip)
    probe.EmbeddingSet(
        model, D.LabelledSet(labelled.root, labelled.labels, labelled.clips[:2]), None, pre, "warm-up", device, dtype, 8
    )
    dataset = D.ClipDataset(labelled, frames, pre.mean, pre.std, num_mel_bins=128)
    old_head = {name: p.detach().clone() for name, p in model.named_parameters() if name.startswith(HEAD)}
    embed_rates, old_rates = [], []
    for round_ in range(args.rounds):
        started = time.perf_counter()
        probe.EmbeddingSet(model, labelled, None, pre, f"bench-{round_}", device, dtype, 8)
        embed_rates.append(args.clips / (time.perf_counter() - started))
        old_rates.append(old_probe_rate(model, dataset, device, dtype))  # 3. below
        print(
            f"round {round_ + 1}: embedding pass {embed_rates[-1]:.2f} clips/s, old probe "
            f"{old_rates[-1]:.2f} training clips/s",
            flush=True,
        )
    embed_rate, old_rate = max(embed_rates), max(old_rates)
    model.load_state_dict(old_head, strict=False)
    model.eval()
    print(f"embedding pass: {embed_rate:.2f} clips/s (best of {args.rounds} rounds on {args.clips} clips)", flush=True)

    # 2. a head epoch on cached vectors, and reading them back
    started = time.perf_counter()
    for _ in range(3):
        probe.EmbeddingSet(model, labelled, None, pre, "bench-0", device, dtype, 8)
    read_rate = 3 * args.clips / (time.perf_counter() - started)
    values = RECIPES[Recipe("probe")]
    n_train = int(args.total * 0.9)
    vectors = torch.randn(args.total, model.config.hidden_size)
    targets = torch.nn.functional.one_hot(torch.arange(args.total) % 10, 10).float()
    train_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(vectors[:n_train], targets[:n_train]), values.batch_size, shuffle=True
    )
    val_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(vectors[n_train:], targets[n_train:]), 2 * values.batch_size
    )
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(HEAD))
    trainer = Trainer(
        model,
        values,
        loss="CE",
        steps_per_epoch=len(train_loader),
        device=device,
        dtype=dtype,
        world=World(),
        scored=probe.Head(model),
    )
    seconds = []
    model_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as ast finetune trains a probe's head (training._batches)
    for epoch in range(5):
        started = time.perf_counter()
        trainer.train_epoch(train_loader, f"head {epoch}")
        trainer.validate(val_loader, args.total - n_train)
        seconds.append(time.perf_counter() - started)
    head_epoch = sorted(seconds)[len(seconds) // 2]
    print(
        f"head epoch on {args.total} cached vectors: {head_epoch:.3f} s (median of 5); reading {args.total} vectors: "
        f"{args.total / read_rate:.2f} s",
        flush=True,
    )

    torch.set_num_threads(model_threads)
    old_epoch = (
        n_train / old_rate + (args.total - n_train) / embed_rate
    )  # the old probe also ran the validation clips through the backbone
    print(
        f"old probe: {old_rate:.2f} training clips/s (best of {args.rounds} rounds on {args.clips} clips)", flush=True
    )

    first = args.total / embed_rate + args.epochs * head_epoch
    rerun = args.total / read_rate + args.epochs * head_epoch
    print(
        f"\nfor {args.total} clips of {args.seconds:g} s and {args.epochs} epochs (extrapolated from the rates above):"
    )
    print(
        f"  old --freeze-backbone: {old_epoch:.0f} s an epoch, {args.epochs * old_epoch / 60:.0f} min in all, every run"
    )
    print(
        f"  cached probe, first run: {args.total / embed_rate:.0f} s of embeddings + {args.epochs} x "
        f"{head_epoch:.2f} s = "
        f"{first / 60:.1f} min ({args.epochs * old_epoch / first:.0f}x faster)"
    )
    print(f"  cached probe, a re-run (also --force): {rerun:.1f} s ({args.epochs * old_epoch / rerun:.0f}x faster)")


def old_probe_rate(model, dataset, device, dtype) -> float:
    """3. The old probe's training clips per second: every clip through the frozen backbone and the head
    (batches of 8), backward through the head only, an AdamW step."""
    from ast_cli.recipes import RECIPES, Recipe
    from ast_cli.trainer import HEAD, Trainer, World

    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(HEAD))
    loader = torch.utils.data.DataLoader(dataset, 8)
    trainer = Trainer(
        model, RECIPES[Recipe.probe], loss="CE", steps_per_epoch=len(loader), device=device, dtype=dtype, world=World()
    )
    started = time.perf_counter()
    trainer.train_epoch(loader, "old probe")
    return len(dataset) / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
