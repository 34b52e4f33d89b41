"""Do ``ast finetune``'s defaults learn from a new random base as well as a plain training loop? Issue 25.

    python benchmarks/finetune_defaults.py [--sets digits-20 digits-50 digits5-50 digits-100 digits-200] [--epochs 8]
                                           [--base new:small] [--stride 16] [--set-flag lr=5e-4 ...]

For each data set of spoken words (espeak-ng, ``tests/helpers.make_spoken_digits``: voices, speeds,
pitches and light noise drawn per clip) and a held-out test set of other draws (another seed), the same
new base (``--base new:SIZE``, transformers' initialisation, ``--seed 0``) is trained twice on the same
training clips (the same 10 % held out for validation), for ``--epochs``:

- default: ``ast finetune`` with its defaults (``--set-flag NAME=VALUE`` puts a recipe flag over them,
  to try a candidate default); the best validation epoch is kept, as the command does;
- reference: a plain loop, AdamW (torch's defaults, weight decay 0.01) at a constant lr 5e-4, batch 32,
  cross-entropy, the last epoch kept; same model (the run's initial model: same seed, head and
  normalisation) and same clips.

Printed: the machine and its load, then one row a data set: clips, classes, the held-out accuracy
(``ast eval``) of each and their difference. Accuracies only: no timings are compared.
``--stride 16``: 16x16 patches without overlap (64 patches at 128 frames, the fastest grid on a CPU);
``--stride 10`` is the authors' grid (the issue's model).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import git_revision, machine  # noqa: E402
from helpers import espeak, make_spoken_digits  # noqa: E402
from spoken_digits import ALL_VOICES  # noqa: E402

# name: (classes, training clips a class, voices); the test sets hold 20 clips a class
SETS = {
    "digits-20": (10, 20, ALL_VOICES[:6]),
    "digits-50": (10, 50, ALL_VOICES),
    "digits5-50": (5, 50, ALL_VOICES),
    "digits-100": (10, 100, ALL_VOICES),
    "digits-200": (10, 200, ALL_VOICES),
}
REFERENCE_LR, REFERENCE_BATCH = 5e-4, 32  # the plain AdamW loop
TEST_PER_CLASS = 20


def make_set(work: Path, name: str) -> tuple[Path, Path]:
    """The training and test folders of data set ``name`` (made once; a subset of classes is copied)."""
    classes, per_class, voices = SETS[name]
    hard = dict(voices=voices, speeds=(110, 210), pitches=(20, 80))
    folders = []
    for part, n, seed in (("train", per_class, 0), ("test", TEST_PER_CLASS, 1)):
        full = work / f"words-{per_class if part == 'train' else n}-{len(voices)}-{part}"
        make_spoken_digits(full, per_class=n, seed=seed, **hard)
        target = work / name / part
        if not target.exists():
            target.mkdir(parents=True)
            for digit in sorted(p.name for p in full.iterdir() if p.is_dir())[:classes]:
                shutil.copytree(full / digit, target / digit)
        folders.append(target)
    return folders[0], folders[1]


def reference(train_dir: Path, default_out: Path, out: Path, options, epochs: int) -> None:
    """The plain loop on the default run's initial model and training clips; the last epoch saved."""
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
    loader = DataLoader(items, REFERENCE_BATCH, shuffle=True, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=REFERENCE_LR)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    checkpoints.save(model.eval(), pre, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--base", default="new:small")
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--set-flag", nargs="*", default=[], help="NAME=VALUE: a recipe flag over the defaults")
    parser.add_argument("--no-reference", action="store_true", help="the default runs only")
    parser.add_argument("--work", default=None, help="folder for the clips and runs (default: a new temporary one)")
    args = parser.parse_args()
    if espeak() is None:
        sys.exit("espeak-ng is not installed (apt install espeak-ng)")
    print(f"# {machine()}; git {git_revision()}", flush=True)

    from ast_cli.evaluation import evaluate
    from ast_cli.finetune_options import FinetuneOptions
    from ast_cli.spec import ModelSpec
    from ast_cli.training import finetune

    flags = {k: float(v) if "." in v or "e" in v else int(v) for k, v in (f.split("=", 1) for f in args.set_flag)}
    work = Path(args.work or tempfile.mkdtemp(prefix="ast-bench-defaults-"))
    tag = ",".join(f"{k}={v}" for k, v in flags.items()) or "defaults"
    print(f"# {args.base}, stride {args.stride}, {args.epochs} epochs, default run: {tag}")
    print("| data set | training clips | classes | default | reference | difference |")
    print("|---|---|---|---|---|---|")
    for name in args.sets:
        train_dir, test_dir = make_set(work, name)
        common = dict(base=args.base, seed=0, fstride=args.stride, tstride=args.stride, precision="fp32", workers=0)
        options = FinetuneOptions(**common, epochs=args.epochs, force=True, **flags)
        out = work / f"run-{name}-{tag}"
        log = (lambda line: print(line, file=sys.stderr, flush=True)) if os.environ.get("VERBOSE") else None
        summary = finetune(str(train_dir), str(out), options, log=log or (lambda _: None), progress=False)
        default = evaluate(ModelSpec(source=str(out), precision="fp32"), str(test_dir))["accuracy"]
        ref = float("nan")
        if not args.no_reference:
            ref_out = work / f"reference-{name}"
            reference(train_dir, out, ref_out, FinetuneOptions(**common), args.epochs)
            ref = evaluate(ModelSpec(source=str(ref_out), precision="fp32"), str(test_dir))["accuracy"]
        classes, per_class, _ = SETS[name]
        clips = round(classes * per_class * 0.9)
        print(
            f"| {name} | {clips} | {classes} | {default:.3f} (best epoch {summary['best_epoch']}) | {ref:.3f} "
            f"| {default - ref:+.3f} |",
            flush=True,
        )
    print(f"# load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
