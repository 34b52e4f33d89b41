"""Does ``ast finetune`` learn from a random base with its defaults? The slower, stronger version of
``tests/test_training.py::test_scratch_recipe_learns_spoken_digits``.

    python benchmarks/spoken_digits.py [--per-class 100] [--test-per-class 30] [--epochs 30] [--init 0.1 0.02]

Ten English digits spoken by espeak-ng (apt install espeak-ng): ``--per-class`` training clips each,
in twelve voices (accents and voice variants), speeds 110-210 words a minute, pitches 20-80, light noise
(``tests/helpers.make_spoken_digits``), and a held-out test set of other draws (another seed). For
each ``--init`` (the std of the random base's weights: 0.02 is transformers' default, 0.1 the tests'),
a random small AST (192 wide, 4 layers, 3 heads, 128 frames, 16x16 patches) is trained with the
defaults (the scratch recipe) and ``--epochs``; printed: validation accuracy per epoch, the best
epoch, the held-out accuracy (``ast eval``) and the time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import git_revision, machine  # noqa: E402
from helpers import espeak, make_spoken_digits  # noqa: E402

ALL_VOICES = (
    "en-us+m1",
    "en-us+f2",
    "en-us+m7",
    "en-gb+m3",
    "en-gb+f4",
    "en-gb+m5",
    "en-gb-scotland+m2",
    "en-gb-scotland+f3",
    "en-029+m4",
    "en-029+f5",
    "en-gb-x-rp+f1",
    "en-gb-x-rp+m6",
)  # twelve accents and voice variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--test-per-class", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--init", type=float, nargs="+", default=[0.1, 0.02])
    parser.add_argument("--work", default=None, help="folder for the clips and runs (default: a new temporary one)")
    args = parser.parse_args()
    if espeak() is None:
        sys.exit("espeak-ng is not installed (apt install espeak-ng)")
    print(f"# {machine()}; git {git_revision()}", flush=True)

    import json

    import torch

    from ast_cli import checkpoints
    from ast_cli.config import ASTConfig, PreprocessorConfig
    from ast_cli.evaluation import evaluate
    from ast_cli.finetune_options import FinetuneOptions
    from ast_cli.model import AST
    from ast_cli.runfolder import METRICS_FILE
    from ast_cli.spec import ModelSpec
    from ast_cli.training import finetune

    work = Path(args.work or tempfile.mkdtemp(prefix="ast-bench-digits-"))
    started = time.perf_counter()
    hard = dict(voices=ALL_VOICES, speeds=(110, 210), pitches=(20, 80))
    make_spoken_digits(work / "train", per_class=args.per_class, seed=0, **hard)
    make_spoken_digits(work / "test", per_class=args.test_per_class, seed=1, **hard)
    print(
        f"spoken digits: {10 * args.per_class} training, {10 * args.test_per_class} test clips made in "
        f"{time.perf_counter() - started:.0f} s"
    )
    for init in args.init:
        base = work / f"base-{init:g}"
        torch.manual_seed(0)
        config = ASTConfig(
            hidden_size=192,
            num_hidden_layers=4,
            num_attention_heads=3,
            intermediate_size=768,
            max_length=128,
            frequency_stride=16,
            time_stride=16,
            initializer_range=init,
        )
        checkpoints.save(AST(config).eval(), PreprocessorConfig(max_length=128), base)
        out = work / f"run-{init:g}"
        started = time.perf_counter()
        options = FinetuneOptions(base=str(base), epochs=args.epochs, force=True, precision="fp32")
        summary = finetune(
            str(work / "train"), str(out), options, log=lambda line: print(line, file=sys.stderr, flush=True)
        )
        seconds = time.perf_counter() - started
        history = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
        test = evaluate(ModelSpec(source=str(out), precision="fp32"), str(work / "test"))
        print(
            f"init std {init:g}: val accuracy by epoch {[round(r['val_accuracy'], 3) for r in history]}; "
            f"best epoch {summary['best_epoch']} ({summary['accuracy']:.3f}); held-out test {test['accuracy']:.3f}; "
            f"{seconds / 60:.1f} min",
            flush=True,
        )


if __name__ == "__main__":
    main()
