"""The command line's parameters, declared once: each flag's name, metavar, help and limits.

The command modules (``commands/``) declare their parameters with these ``Annotated`` aliases, so one
flag reads the same in every command that takes it. A closed choice is typed by its ``options`` Enum:
Typer validates it, ``--help`` shows ``<a|b|c>`` and shell completion offers the values. No torch here.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .options import (
    Activation,
    Aggregate,
    BatchFormat,
    Device,
    Engine,
    ExportFormat,
    ExportPrecision,
    FeatureFrontend,
    Precision,
    RecordFormat,
    ReportFormat,
    SampleFormat,
    StatsMethod,
)
from .recipe_text import defaults_words, recipe_help
from .recipes import Recipe as RecipeName

# -- arguments --------------------------------------------------------------------------------------
AudioFiles = Annotated[
    list[str],
    typer.Argument(
        show_default=False,
        metavar="INPUT...",
        help="Audio files and folders (searched recursively); '-' reads one file from standard input.",
    ),
]
BatchInputs = Annotated[
    list[str],
    typer.Argument(
        show_default=False,
        metavar="INPUT...",
        help="Audio files, folders (searched recursively) and glob patterns ('data/**/*.flac').",
    ),
]
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
ModelArg = Annotated[
    str,
    typer.Argument(
        show_default=False,
        metavar="MODEL",
        help="Hub id, local model folder, or the authors' .pth.",
    ),
]
LabelPattern = Annotated[
    str | None,
    typer.Argument(
        show_default=False,
        metavar="PATTERN",
        help="Only labels matching this: a case-insensitive substring or regular expression.",
    ),
]
ModelId = Annotated[str, typer.Argument(help="Hub model id.", show_default=False, metavar="ID")]
ModelIds = Annotated[
    list[str],
    typer.Argument(
        show_default=False,
        metavar="ID...",
        help="Cached model ids ('ast models' lists them).",
    ),
]

# -- the model ------------------------------------------------------------------------------------
Model = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        envvar="AST_MODEL",
        metavar="MODEL",
        help="Hub id, local model folder (config.json + model.safetensors), or the authors' .pth.",
    ),
]
LabelNames = Annotated[
    str | None,
    typer.Option(
        "--labels",
        metavar="CSV",
        help="Label names for a .pth model: the authors' class_labels_indices.csv.",
    ),
]
DeviceOpt = Annotated[
    Device,
    typer.Option(
        "--device",
        help="Where the model runs (auto: CUDA, else Metal, else the CPU).",
    ),
]
PrecisionOpt = Annotated[
    Precision,
    typer.Option(
        "--precision",
        help="auto: bf16 on CPUs with native bf16, fp16 on CUDA, else fp32; int8: CPU, quantized Linear layers.",
    ),
]
FStride = Annotated[
    int | None,
    typer.Option(
        "--fstride",
        min=1,
        metavar="N",
        help="An authors' .pth: the frequency stride it was trained with (default: what its weights say).",
    ),
]
TStride = Annotated[
    int | None,
    typer.Option(
        "--tstride",
        min=1,
        metavar="N",
        help="An authors' .pth: the time stride it was trained with (default: what its weights say).",
    ),
]
InputTdim = Annotated[
    int | None,
    typer.Option(
        "--input-tdim",
        min=1,
        metavar="FRAMES",
        help="An authors' .pth: the input frames it was trained with (default: what its weights say).",
    ),
]
ModelNormStats = Annotated[
    str | None,
    typer.Option(
        "--norm-stats",
        metavar="STATS",
        help="Normalise with MEAN,STD or the authors' audioset, esc50 or "
        "speechcommands statistics (default: the model's own).",
    ),
]
WindowsPerPass = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=1,
        metavar="N",
        help="Windows per forward pass (default: 1 on the CPU, 8 on a GPU).",
    ),
]

# -- what a tag reports ---------------------------------------------------------------------------
Top = Annotated[int, typer.Option("--top", "-k", min=0, metavar="K", help="Labels to report per file (0: all).")]
Threshold = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        "-t",
        metavar="SCORE",
        help="Keep labels scoring at least this.",
    ),
]
Window = Annotated[
    float | None,
    typer.Option(
        "--window",
        metavar="SECONDS",
        help="Window length (default: the model's, 10.24 s).",
    ),
]
Hop = Annotated[
    float | None,
    typer.Option(
        "--hop",
        metavar="SECONDS",
        help="Hop between windows (default: half a window).",
    ),
]
AggregateOpt = Annotated[Aggregate, typer.Option("--aggregate", help="Combine window scores per label.")]
ActivationOpt = Annotated[
    Activation | None,
    typer.Option(
        "--activation",
        help="Logits to scores (default: from the model: sigmoid for multi-label).",
    ),
]
Include = Annotated[
    list[str],
    typer.Option(
        "--include",
        metavar="LABEL",
        help="Only report this label (repeatable, any case).",
    ),
]
Exclude = Annotated[
    list[str],
    typer.Option(
        "--exclude",
        metavar="LABEL",
        help="Never report this label (repeatable, any case).",
    ),
]
Timeline = Annotated[bool, typer.Option("--timeline", help="Also report labels per window with start/end times.")]
Merge = Annotated[
    bool,
    typer.Option(
        "--merge",
        help="Join consecutive windows carrying a label into one event (start, end, label, score); implies --timeline.",
    ),
]
AllScores = Annotated[
    bool,
    typer.Option(
        "--all-scores",
        help="Every label's score: one CSV column per label; 'scores' in JSON.",
    ),
]
FrontendOpt = Annotated[
    FeatureFrontend,
    typer.Option(
        "--frontend",
        help="transformers: ASTFeatureExtractor's features; authors: each window's waveform mean removed "
        "first, as the authors' loader does.",
    ),
]
Channel = Annotated[
    str,
    typer.Option(
        "--channel",
        metavar="CHANNEL",
        help="Downmix: 'mean' of all channels, or a channel number from 0.",
    ),
]

# -- outputs --------------------------------------------------------------------------------------
TagFormat = Annotated[
    RecordFormat | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format (default: table at a terminal, else jsonl).",
    ),
]
BatchFormatOpt = Annotated[
    BatchFormat | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format (default: from OUT's extension; jsonl on stdout).",
    ),
]
Report = Annotated[ReportFormat, typer.Option("--format", "-f", help="How to print the result.")]
BatchOutput = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        metavar="OUT",
        show_default=False,
        help="Output file ('-': standard output), or a folder for --format audacity.",
    ),
]
Force = Annotated[bool, typer.Option("--force", help="Overwrite OUT.")]

# -- which files ----------------------------------------------------------------------------------
FilesFrom = Annotated[
    str | None,
    typer.Option(
        "--files-from",
        metavar="FILE",
        help="Also the paths in this file, one a line ('-': standard input).",
    ),
]
Recursive = Annotated[bool, typer.Option("--recursive/--no-recursive", help="Search folders recursively.")]
Extensions = Annotated[
    list[str],
    typer.Option(
        "--ext",
        metavar="EXT",
        help="Extensions to take from folders, e.g. --ext wav,flac (default: what libsndfile "
        "reads, plus ffmpeg's when installed).",
    ),
]
Relative = Annotated[
    bool,
    typer.Option(
        "--relative",
        help="Write paths of files found in a folder relative to that folder.",
    ),
]
Shard = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="K/N",
        help="Tag only shard K (0 to N-1) of N, by a stable hash of each path.",
    ),
]

# -- batch runs -----------------------------------------------------------------------------------
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=0,
        metavar="N",
        help="Decoding processes beside the model (0: in the main process) (default: "
        "none on a CPU of 2 cores, 1 per 8 cores; most cores for a GPU).",
    ),
]
Unordered = Annotated[bool, typer.Option("--unordered", help="Write files as they finish, not in input order.")]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue OUT: skip the files already in it and append the rest (same settings only).",
    ),
]

# -- batch on a Ray cluster -----------------------------------------------------------------------
EngineOpt = Annotated[
    Engine,
    typer.Option(
        "--engine",
        help="local: decode workers and the model on this machine; ray: Ray's CPU tasks decode, model "
        "actors tag (pip install 'ast-cli[ray]').",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="ADDRESS",
        help="The Ray cluster, HOST:PORT or auto (default: $RAY_ADDRESS or a "
        "running cluster, else a Ray started for the run).",
    ),
]
Actors = Annotated[
    int | None,
    typer.Option(
        "--actors",
        min=1,
        metavar="N",
        help="Model replicas (default: one per GPU of the cluster, else one per node using its cores).",
    ),
]
GpusPerActor = Annotated[
    float | None,
    typer.Option(
        "--gpus-per-actor",
        min=0.0,
        metavar="N",
        help="GPUs each model actor holds (default: 1 where the cluster has GPUs, else 0).",
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

# -- embed ----------------------------------------------------------------------------------------
EmbedOutput = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        metavar="OUT",
        show_default=False,
        help="OUT.jsonl, OUT.npy (files x D) or OUT.npz; '-': JSON Lines on stdout.",
    ),
]
EmbedTimeline = Annotated[
    bool,
    typer.Option(
        "--timeline",
        help="Also the embedding of every window, with start/end times (jsonl, npz).",
    ),
]

# -- export ---------------------------------------------------------------------------------------
ExportOutput = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        metavar="OUT",
        show_default=False,
        help="File (onnx, torchscript) or folder (hub) to write.",
    ),
]
ExportFormatOpt = Annotated[ExportFormat, typer.Option("--format", "-f", help="What to write.")]
WithFrontend = Annotated[
    bool,
    typer.Option(
        "--with-frontend",
        help="Graph takes 16 kHz waveforms and computes the log-mel itself (onnx, torchscript; not hub).",
    ),
]
ExportPrecisionOpt = Annotated[
    ExportPrecision,
    typer.Option(
        "--precision",
        help="fp16: onnx, torchscript; bf16: torchscript.",
    ),
]
Verify = Annotated[
    bool | None,
    typer.Option(
        "--verify/--no-verify",
        help="Run the export against PyTorch (default: on when its runtime is installed).",
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
        help="Model to start from: anything 'ast tag -m' accepts.",
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

# -- listen ---------------------------------------------------------------------------------------
ListenSource = Annotated[
    str | None,
    typer.Argument(
        show_default=False,
        metavar="[-]",
        help="'-': standard input (a WAV stream, raw PCM with --raw, or what ffmpeg decodes); nothing: the microphone.",
    ),
]
ListenHop = Annotated[float, typer.Option("--hop", metavar="SECONDS", help="Seconds of audio between two results.")]
Events = Annotated[
    bool,
    typer.Option(
        "--events",
        help="Only changes: a label rising to --threshold (start), and staying below it for --hold seconds (end).",
    ),
]
Hold = Annotated[
    float,
    typer.Option(
        "--hold",
        metavar="SECONDS",
        help="With --events: how long a label stays below --threshold before it ends.",
    ),
]
Raw = Annotated[
    bool,
    typer.Option(
        "--raw",
        help="Standard input is raw PCM (as arecord -t raw and ffmpeg -f s16le write): give --rate and --channels.",
    ),
]
Rate = Annotated[int | None, typer.Option("--rate", min=1, metavar="HZ", help="With --raw: the sample rate.")]
Channels = Annotated[
    int | None,
    typer.Option(
        "--channels",
        min=1,
        metavar="N",
        help="With --raw: the number of channels.",
    ),
]
SampleFormatOpt = Annotated[SampleFormat, typer.Option("--sample-format", help="With --raw: the samples' encoding.")]
InputDevice = Annotated[
    str | None,
    typer.Option(
        "--input-device",
        metavar="NAME|INDEX",
        help="The microphone (default: the system's; see --list-devices).",
    ),
]
ListDevices = Annotated[bool, typer.Option("--list-devices", help="List the input devices and exit.")]

# -- models ---------------------------------------------------------------------------------------
AllModels = Annotated[bool, typer.Option("--all", help="Every cached model repository, not only AST models.")]

# -- every command --------------------------------------------------------------------------------
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        metavar="N",
        help="Threads for the model (default: the CPUs this process may use, less one "
        "per worker; OMP_NUM_THREADS if set). Per-file decoding and features always use one.",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; warnings and errors only.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
