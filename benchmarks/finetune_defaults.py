"""Do ``ast finetune``'s defaults learn from a new random base as well as a hand-tuned plain loop? Issue 25.

    python benchmarks/finetune_defaults.py [--sets digits-20 sounds-20 ...] [--epochs 16] [--base new:small]
                                           [--stride 16] [--seeds 0 1 2] [--set-flag lr=5e-4 ...] [--work DIR]

For each data set (``finetune_sets.py``: spoken words from espeak-ng, 5-50 classes, 20-500 clips a class;
generated sounds of 0.3-5 s) and its held-out test set of other draws (another seed), and for each seed,
the same new base (``--base new:SIZE``, transformers' initialisation, drawn from the seed) is trained on
the same training clips (the same 10 % held out for validation), for ``--epochs``:

- default: ``ast finetune`` with its defaults (``--set-flag NAME=VALUE`` puts a recipe flag over them,
  to try a candidate default). Its model is the epoch the command keeps (the latest within one standard
  error of the highest validation accuracy); every epoch is also scored on the test set (``finetune``'s
  ``on_epoch``), which gives what two other rules would have kept: the first highest validation epoch
  (the rule before) and the last epoch;
- reference, hand-tuned: a plain loop, AdamW (torch's defaults, weight decay 0.01) at a constant lr,
  batch 32 (the issue's loop), cross-entropy, the last epoch kept; same model (the run's initial model:
  same seed, head and normalisation) and same clips; run at each of ``REFERENCE_LRS``, and the one with
  the best validation accuracy is the reference (the held-out accuracy of each is printed too).

Printed: the machine and its load, then one row a data set: clips, classes, the held-out accuracy
(``ast eval``'s) of the default (mean over the seeds, then each seed's), of the two other epoch rules, of
the chosen reference, and the difference of the means. Accuracies only: no timings are compared.
``--stride 16``: 16x16 patches without overlap (the fastest grid on a CPU); ``--stride 10`` is the authors'
grid (the issue's model). Finished runs are reused from ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import git_revision, machine
from finetune_sets import SETS, make_set
from helpers import espeak

REFERENCE_BATCH = 32  # the plain AdamW loop (at lr 5e-4)
REFERENCE_LRS = (1e-4, 3e-4, 1e-3)  # the hand-tuned reference: the plain loop at each, the best on validation


def reference(train_dir: Path, default_out: Path, out: Path, options, epochs: int, lr: float) -> float:
    """The plain loop on the default run's initial model and training clips at ``lr``; the last epoch
    saved to ``out``; returns its accuracy on the run's validation clips."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from ast_cli import checkpoints
    from ast_cli import data as D
    from ast_cli.preparation import initial_model, load_base, load_data

    base = load_base(options)
    clips = load_data(str(train_dir), options, keep_fbanks=True)
    model, pre = initial_model(base, options, clips.train, clips.frames, default_out)  # its norm_stats.json
    items = D.ClipDataset(clips.train, model.config.max_length, pre.mean, pre.std, fbanks=clips.fbanks)
    loader = DataLoader(items, REFERENCE_BATCH, shuffle=True, generator=torch.Generator().manual_seed(options.seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    checkpoints.save(model.eval(), pre, out)
    return accuracy(
        model, D.ClipDataset(clips.val, model.config.max_length, pre.mean, pre.std, fbanks=clips.val_fbanks)
    )


def accuracy(model, items) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on a ``ClipDataset``."""
    import torch
    from torch.utils.data import DataLoader

    right = 0
    with torch.no_grad():
        for x, y in DataLoader(items, 64):
            right += int((model(x).argmax(-1) == (y.argmax(-1) if y.ndim == 2 else y)).sum())
    return right / max(1, len(items))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--base", default="new:small")
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument(
        "--seeds", "--seed", nargs="+", type=int, default=[0], help="each: the base's draw, the shuffle"
    )
    parser.add_argument("--set-flag", nargs="*", default=[], help="NAME=VALUE: a recipe flag over the defaults")
    parser.add_argument("--no-reference", action="store_true", help="the default runs only")
    parser.add_argument("--reference-lrs", nargs="+", type=float, default=REFERENCE_LRS, help="the reference's grid")
    parser.add_argument("--work", default=None, help="folder for the clips and runs (default: a new temporary one)")
    args = parser.parse_args()
    if espeak() is None:
        sys.exit("espeak-ng is not installed (apt install espeak-ng)")
    print(f"# {machine()}; git {git_revision()}", flush=True)
    flags = {k: float(v) if "." in v or "e" in v else int(v) for k, v in (f.split("=", 1) for f in args.set_flag)}
    work = Path(args.work or tempfile.mkdtemp(prefix="ast-bench-defaults-"))
    tag = ",".join(f"{k}={v}" for k, v in flags.items()) or "defaults"
    lrs = " / ".join(f"{lr:g}" for lr in args.reference_lrs)
    seeds = " ".join(map(str, args.seeds))
    print(f"# {args.base}, stride {args.stride}, {args.epochs} epochs, seeds {seeds}, default run: {tag}")
    print(
        f"| data set | training clips | classes | default: kept (each seed) | first highest | last | "
        f"reference: chosen of lr {lrs} (each seed) | default - reference |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.sets:
        started = time.monotonic()
        runs = [run_set(work, name, args, flags, tag, seed) for seed in args.seeds]
        default = [r["accuracy"] for r in runs]
        first = [r["per_epoch"][first_highest(r["val"])] for r in runs]
        last = [r["per_epoch"][-1] for r in runs]
        refs = [chosen(r["references"]) for r in runs] if not args.no_reference else []
        _, classes, per_class = SETS[name]
        clips = round(classes * per_class * 0.9)
        difference = f"{mean(default) - mean(refs):+.3f}" if refs else "-"
        print(
            f"| {name} | {clips} | {classes} | {cell(default)} | {mean(first):.3f} | {mean(last):.3f} | "
            f"{cell(refs) if refs else '-'} | {difference} |",
            flush=True,
        )
        for seed, r in zip(args.seeds, runs, strict=True):
            each = " / ".join(f"{lr:g}: {v:.3f} (val {val:.3f})" for lr, (val, v) in r["references"].items())
            print(f"#   seed {seed}: kept epoch {r['best_epoch']}; references {each or '-'}")
        print(f"#   {name}: {time.monotonic() - started:.0f} s, load average {os.getloadavg()[0]:.2f}", flush=True)


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def cell(values: list[float]) -> str:
    """The mean, then each seed's value."""
    each = ", ".join(f"{v:.3f}" for v in values)
    return f"**{mean(values):.3f}** ({each})" if len(values) > 1 else f"**{values[0]:.3f}**"


def first_highest(accuracies: list[float]) -> int:
    """The epoch (index) kept before the one-standard-error rule: the first highest validation accuracy."""
    return accuracies.index(max(accuracies))


def chosen(references: dict[float, tuple[float, float]]) -> float:
    """The held-out accuracy of the reference lr with the best validation accuracy (the first on a tie)."""
    return max(references.values(), key=lambda vt: vt[0])[1]


def run_set(work: Path, name: str, args, flags: dict, tag: str, seed: int) -> dict:
    """One seed of data set ``name``: the default run's held-out accuracy, its kept epoch, every epoch's
    validation and held-out accuracy, and per reference lr its (validation, held-out) accuracies."""

    from ast_cli import data as D
    from ast_cli.evaluation import evaluate
    from ast_cli.finetune_options import FinetuneOptions
    from ast_cli.spec import ModelSpec
    from ast_cli.training import finetune

    train_dir, test_dir = make_set(work, name)
    common = dict(base=args.base, seed=seed, fstride=args.stride, tstride=args.stride, precision="fp32", workers=0)
    options = FinetuneOptions(**common, epochs=args.epochs, force=True, **flags)
    out = work / f"run-{name}-{args.base}-{args.stride}-{args.epochs}-{tag}-s{seed}"
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if os.environ.get("VERBOSE") else None
    done = out / "benchmark.json"  # a rerun reuses a finished default run
    if not done.exists():
        test, fbanks, _ = D.scan(D.discover(str(test_dir), None), keep=True, progress=False)
        per_epoch: list[float] = []

        def score_epoch(model, pre, record) -> None:  # every epoch on the held-out clips (in eval mode)
            per_epoch.append(
                accuracy(model, D.ClipDataset(test, model.config.max_length, pre.mean, pre.std, fbanks=fbanks))
            )

        summary = finetune(
            str(train_dir), str(out), options, log=log or (lambda _: None), progress=False, on_epoch=score_epoch
        )
        accuracy = evaluate(ModelSpec(source=str(out), precision="fp32"), str(test_dir))["accuracy"]
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        result = {
            "accuracy": accuracy,
            "best_epoch": summary["best_epoch"],
            "per_epoch": per_epoch,
            "val": [r["val_accuracy"] for r in history],
        }
        done.write_text(json.dumps(result))
    result = json.loads(done.read_text())
    refs = {}
    for lr in [] if args.no_reference else args.reference_lrs:
        ref_out = work / f"reference-{name}-{args.base}-{args.stride}-{args.epochs}-{lr:g}-s{seed}"
        ref_done = ref_out / "benchmark.json"  # a rerun reuses a finished reference run
        if not ref_done.exists():
            val = reference(train_dir, out, ref_out, FinetuneOptions(**common), args.epochs, lr)
            test_accuracy = evaluate(ModelSpec(source=str(ref_out), precision="fp32"), str(test_dir))["accuracy"]
            ref_done.write_text(json.dumps({"validation": val, "accuracy": test_accuracy}))
        cached = json.loads(ref_done.read_text())
        refs[lr] = (cached["validation"], cached["accuracy"])
    return {**result, "references": refs}


if __name__ == "__main__":
    main()
