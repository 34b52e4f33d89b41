"""``ast finetune``, ``ast eval`` and ``ast stats``: the data, the recipe and the flags it fills
(their help rendered from ``recipes.RECIPES`` by ``recipe_text``), the statistics.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..options import StatsMethod
from ..recipe_text import defaults_words, recipe_help
from ..recipes import Recipe as RecipeName

# -- arguments --------------------------------------------------------------------------------------
StatsInputs = Annotated[
    list[str],
    typer.Argument(
        show_default=False,
        metavar="INPUT...",
        help="Audio files and folders (searched recursively).",
    ),
]
ClassFolders = Annotated[
    str,
    typer.Argument(
        show_default=False,
        metavar="DIR",
        help="One sub-folder of audio clips per class (dog/, rain/, ...), named as the model's labels for eval.",
    ),
]

# -- stats ----------------------------------------------------------------------------------------
Method = Annotated[
    StatsMethod,
    typer.Option(
        "--method",
        help="authors: get_norm_stats.py (augmented, mean of batch stats); exact: pooled, no augmentation.",
    ),
]
StatsLength = Annotated[
    int | None,
    typer.Option(
        "--target-length",
        min=1,
        metavar="FRAMES",
        help="Frames each clip is padded or cut to (default: the longest clip's, at most 1024, as finetune chooses).",
    ),
]
StatsBatch = Annotated[
    int,
    typer.Option(
        "--batch-size",
        min=1,
        metavar="N",
        help="Clips a batch (authors): each batch's mean/std count equally.",
    ),
]
StatsFreqm = Annotated[
    int,
    typer.Option(
        "--freqm",
        min=0,
        metavar="BINS",
        help="Frequency mask up to this many bins (authors; 0: none).",
    ),
]
StatsTimem = Annotated[
    int,
    typer.Option(
        "--timem",
        min=0,
        metavar="FRAMES",
        help="Time mask up to this many frames (authors; 0: none).",
    ),
]
StatsMixup = Annotated[
    float,
    typer.Option(
        "--mixup",
        min=0.0,
        max=1.0,
        metavar="P",
        help="Probability of mixing a clip with a random other (authors).",
    ),
]
StatsSeed = Annotated[
    int | None,
    typer.Option(
        "--seed",
        metavar="N",
        help="Seed of the augmentation of --method authors (default: 0, shown with the result).",
    ),
]
WriteStats = Annotated[
    str | None,
    typer.Option(
        "--write",
        metavar="DIR",
        help="Store mean/std in DIR/preprocessor_config.json (other keys kept).",
    ),
]

# -- finetune and eval ----------------------------------------------------------------------------
FinetuneOut = Annotated[
    str,
    typer.Option(
        "--out",
        "-o",
        metavar="DIR",
        show_default=False,
        help="Output folder: a model 'ast tag -m' and transformers load.",
    ),
]
Base = Annotated[
    str,
    typer.Option(
        "--base",
        metavar="MODEL",
        help="Model to start from: anything 'ast tag -m' accepts, or new:tiny, new:small, new:base for a new AST "
        "of that size (64, 192 or 768 wide; 2, 4 or 12 layers) with transformers' random initialisation, drawn "
        "from --seed (--fstride/--tstride: its patch strides, default 10).",
    ),
]
ValDir = Annotated[
    str | None,
    typer.Option(
        "--val",
        metavar="DIR",
        help="Validation folder with the same class folders (default: a split of DIR).",
    ),
]
ValSplit = Annotated[
    float,
    typer.Option(
        "--val-split",
        metavar="SHARE",
        help="Share of each class held out for validation without --val.",
    ),
]
Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        metavar="N",
        help="Seed of the split, the new head, shuffling and augmentation.",
    ),
]
Recipe = Annotated[RecipeName, typer.Option("--recipe", help=recipe_help())]


def _recipe_flag(flag: str, metavar: str, what: str, field: str) -> typer.models.OptionInfo:
    """A flag that ``--recipe`` fills when it is not given: its help says what the default recipes give it."""
    return typer.Option(flag, metavar=metavar, help=f"{what} (default: from --recipe; {defaults_words(field)}).")


TargetLength = Annotated[
    int | None, _recipe_flag("--target-length", "FRAMES", "Input frames (100 a second)", "target_length")
]
FreezeBackbone = Annotated[
    bool,
    typer.Option(
        "--freeze-backbone",
        help="Train the head only, on each clip's embedding computed once and cached (a linear "
        "probe; no augmentation).",
    ),
]
Epochs = Annotated[int | None, _recipe_flag("--epochs", "N", "Training epochs", "epochs")]
LearningRate = Annotated[float | None, _recipe_flag("--lr", "LR", "Peak learning rate, then the recipe's decay", "lr")]
ClipsPerStep = Annotated[int | None, _recipe_flag("--batch-size", "N", "Clips per step and process", "batch_size")]
Mixup = Annotated[
    float | None, _recipe_flag("--mixup", "P", "Probability of mixing a clip's waveform with another's", "mixup")
]
Freqm = Annotated[int | None, _recipe_flag("--freqm", "BINS", "Max mel bins of a SpecAugment frequency mask", "freqm")]
Timem = Annotated[int | None, _recipe_flag("--timem", "FRAMES", "Max frames of a SpecAugment time mask", "timem")]
Warmup = Annotated[int | None, _recipe_flag("--warmup", "STEPS", "Steps of learning-rate warm-up, 0: none", "warmup")]
WeightDecay = Annotated[float | None, _recipe_flag("--weight-decay", "X", "Weight decay", "weight_decay")]
Patience = Annotated[
    int,
    typer.Option(
        "--patience",
        metavar="N",
        help="Stop after this many epochs without a better validation score (0: never).",
    ),
]
LabelsCsv = Annotated[
    str | None,
    typer.Option(
        "--labels",
        metavar="CSV",
        help="Multi-label data: CSV of 'path,label;label' rows, paths relative to DIR.",
    ),
]
NormStats = Annotated[
    str,
    typer.Option(
        "--norm-stats",
        metavar="STATS",
        help="auto (the training clips' mean/std), base (the base model's), MEAN,STD, "
        "or audioset, esc50, speechcommands.",
    ),
]
ResumeTraining = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue an interrupted run in the output folder after its last finished epoch.",
    ),
]
ForceTraining = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Write into a non-empty output folder, replacing an earlier run.",
    ),
]
KeepState = Annotated[
    bool,
    typer.Option(
        "--keep-state",
        help="Keep OUT/.train_state/ (optimizer and RNG states for --resume) when the run finishes; it "
        "is removed otherwise.",
    ),
]
EvalPlot = Annotated[
    str | None,
    typer.Option(
        "--plot",
        metavar="FILE.png",
        help="Also draw the confusion matrix (single-label) or per-class AP bars "
        "(multi-label) into this PNG (needs matplotlib).",
    ),
]
WriteThresholds = Annotated[
    str | None,
    typer.Option(
        "--write-thresholds",
        metavar="FILE",
        help="Also choose each label's threshold on these clips (best F1, or --target-precision) "
        "and write them to FILE, for --thresholds of tag, batch and listen.",
    ),
]
TargetPrecision = Annotated[
    float | None,
    typer.Option(
        "--target-precision",
        metavar="P",
        help="With --write-thresholds: each label's lowest threshold whose precision reaches P (0-1].",
    ),
]
LoaderWorkers = Annotated[
    int,
    typer.Option(
        "--workers",
        min=0,
        metavar="N",
        help="Data-loading processes (0: in the training process).",
    ),
]
ClipsPerPass = Annotated[int, typer.Option("--batch-size", min=1, metavar="N", help="Clips per forward pass.")]

# -- eval against strong labels (detection.py) ----------------------------------------------------
StrongLabels = Annotated[
    str | None,
    typer.Option(
        "--strong-labels",
        metavar="TSV",
        help="Event-level evaluation: a DCASE ground-truth TSV (filename, onset, offset, event_label; "
        "filenames relative to DIR, a folder of recordings). Reports event-based and segment-based F1 "
        "and PSDS (needs the sed extra).",
    ),
]
EventThreshold = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        "-t",
        metavar="SCORE",
        help="With --strong-labels: a label is active where its score is at least this, for F1 (default 0.5).",
    ),
]
EventThresholds = Annotated[
    str | None,
    typer.Option(
        "--thresholds",
        metavar="FILE",
        help="With --strong-labels: each label's own threshold (a file of --write-thresholds, or "
        "label,threshold lines); labels not in it use --threshold.",
    ),
]
Collar = Annotated[
    float | None,
    typer.Option(
        "--collar",
        min=0.0,
        metavar="SECONDS",
        help="With --strong-labels: event-based F1's onset and offset collar (default 0.2, DCASE).",
    ),
]
OffsetCollarRate = Annotated[
    float | None,
    typer.Option(
        "--offset-collar-rate",
        min=0.0,
        metavar="SHARE",
        help="With --strong-labels: the offset collar is at least this share of the event's length "
        "(default 0.2, DCASE).",
    ),
]
Segment = Annotated[
    float | None,
    typer.Option(
        "--segment",
        min=0.0,
        metavar="SECONDS",
        help="With --strong-labels: segment-based F1's segment length (default 1.0).",
    ),
]
