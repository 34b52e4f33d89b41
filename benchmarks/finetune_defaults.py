"""Do ``ast finetune``'s defaults learn from a new random base as well as a hand-tuned plain loop? Issue 25.

    python benchmarks/finetune_defaults.py [--sets digits-20 sounds-20 ...] [--epochs 16] [--base new:small]
                                           [--stride 16] [--seed 0] [--set-flag lr=5e-4 ...] [--work DIR]

For each data set (``finetune_sets.py``: spoken words from espeak-ng, 5-50 classes, 20-500 clips a class;
generated sounds of 0.3-5 s) and its held-out test set of other draws (another seed), the same new base
(``--base new:SIZE``, transformers' initialisation, ``--seed``) is trained on the same training clips (the
same 10 % held out for validation), for ``--epochs``:

- default: ``ast finetune`` with its defaults (``--set-flag NAME=VALUE`` puts a recipe flag over them,
  to try a candidate default); the best validation epoch is kept, as the command does;
- reference, hand-tuned: a plain loop, AdamW (torch's defaults, weight decay 0.01) at a constant lr,
  batch 32 (the issue's loop), cross-entropy, the last epoch kept; same model (the run's initial model:
  same seed, head and normalisation) and same clips; run at each of ``REFERENCE_LRS``, and the one with
  the best validation accuracy is the reference (the held-out accuracy of each is printed too).

Printed: the machine and its load, then one row a data set: clips, classes, the held-out accuracy
(``ast eval``'s) of the default and of each reference, and the default's difference from the chosen one.
Accuracies only: no timings are compared. ``--stride 16``: 16x16 patches without overlap (the fastest grid
on a CPU); ``--stride 10`` is the authors' grid (the issue's model). Finished default runs are reused
from ``--work``.
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
    val = D.ClipDataset(clips.val, model.config.max_length, pre.mean, pre.std, fbanks=clips.val_fbanks)
    right = 0
    with torch.no_grad():
        for x, y in DataLoader(val, 64):
            right += int((model(x).argmax(-1) == (y.argmax(-1) if y.ndim == 2 else y)).sum())
    return right / max(1, len(val))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--base", default="new:small")
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="the new base's draw and the runs' shuffling")
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
    print(f"# {args.base}, stride {args.stride}, {args.epochs} epochs, seed {args.seed}, default run: {tag}")
    print(f"| data set | training clips | classes | default | reference (lr {lrs}: held-out) | chosen | difference |")
    print("|---|---|---|---|---|---|---|")
    for name in args.sets:
        started = time.monotonic()
        default, best_epoch, refs = run_set(work, name, args, flags, tag)
        chosen = max(refs, key=lambda lr: refs[lr][0]) if refs else None
        ref = refs[chosen][1] if chosen else float("nan")
        _, classes, per_class = SETS[name]
        clips = round(classes * per_class * 0.9)
        cells = " / ".join(f"{refs[lr][1]:.3f}" for lr in args.reference_lrs) if refs else "-"
        print(
            f"| {name} | {clips} | {classes} | {default:.3f} (best epoch {best_epoch}) | {cells} | "
            f"{chosen or 0:g} | {default - ref:+.3f} |",
            flush=True,
        )
        print(f"#   {name}: {time.monotonic() - started:.0f} s, load average {os.getloadavg()[0]:.2f}", flush=True)


def run_set(work: Path, name: str, args, flags: dict, tag: str) -> tuple[float, int, dict]:
    """The default run's held-out accuracy and best epoch, and per reference lr its (validation, held-out)
    accuracies."""
    from ast_cli.evaluation import evaluate
    from ast_cli.finetune_options import FinetuneOptions
    from ast_cli.spec import ModelSpec
    from ast_cli.training import finetune

    train_dir, test_dir = make_set(work, name)
    common = dict(base=args.base, seed=args.seed, fstride=args.stride, tstride=args.stride, precision="fp32", workers=0)
    options = FinetuneOptions(**common, epochs=args.epochs, force=True, **flags)
    out = work / f"run-{name}-{args.base}-{args.stride}-{args.epochs}-{tag}-s{args.seed}"
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if os.environ.get("VERBOSE") else None
    done = out / "benchmark.json"  # a rerun reuses a finished default run
    if not done.exists():
        summary = finetune(str(train_dir), str(out), options, log=log or (lambda _: None), progress=False)
        accuracy = evaluate(ModelSpec(source=str(out), precision="fp32"), str(test_dir))["accuracy"]
        done.write_text(json.dumps({"accuracy": accuracy, "best_epoch": summary["best_epoch"]}))
    result = json.loads(done.read_text())
    refs = {}
    for lr in [] if args.no_reference else args.reference_lrs:
        ref_out = work / f"reference-{name}-{args.base}-{args.stride}-{args.epochs}-{lr:g}-s{args.seed}"
        ref_done = ref_out / "benchmark.json"  # a rerun reuses a finished reference run
        if not ref_done.exists():
            val = reference(train_dir, out, ref_out, FinetuneOptions(**common), args.epochs, lr)
            test = evaluate(ModelSpec(source=str(ref_out), precision="fp32"), str(test_dir))["accuracy"]
            ref_done.write_text(json.dumps({"validation": val, "accuracy": test}))
        cached = json.loads(ref_done.read_text())
        refs[lr] = (cached["validation"], cached["accuracy"])
    return result["accuracy"], result["best_epoch"], refs


if __name__ == "__main__":
    main()
