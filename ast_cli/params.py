"""The command line's parameters, declared once: each flag's name, metavar, help and limits.

``cli.py`` builds its commands from these ``Annotated`` aliases, so one flag reads the same in every
command that takes it. A closed choice is typed by its ``options`` Enum: Typer validates it, ``--help``
shows ``<a|b|c>`` and shell completion offers the values. No torch here.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .options import (
    Activation, Aggregate, BatchFormat, Device, ExportFormat, ExportPrecision, FeatureFrontend, Precision, RecordFormat, ReportFormat, SampleFormat,
    StatsMethod, Engine,
    Recipe as RecipeName,
)  # fmt: skip

# -- arguments --------------------------------------------------------------------------------------
AudioFiles = Annotated[
    list[str], typer.Argument(help="Audio files and folders (searched recursively); '-' reads one file from standard input.", show_default=False, metavar="INPUT...")
]
BatchInputs = Annotated[
    list[str],
    typer.Argument(help="Audio files, folders (searched recursively) and glob patterns ('data/**/*.flac').", show_default=False, metavar="INPUT..."),
]
StatsInputs = Annotated[list[str], typer.Argument(help="Audio files and folders (searched recursively).", show_default=False, metavar="INPUT...")]
ClassFolders = Annotated[
    str, typer.Argument(help="One sub-folder of audio clips per class (dog/, rain/, ...), named as the model's labels for eval.", show_default=False, metavar="DIR")
]
ModelArg = Annotated[str, typer.Argument(help="Hub id, local model folder, or the authors' .pth.", show_default=False, metavar="MODEL")]
LabelPattern = Annotated[
    Optional[str],
    typer.Argument(help="Only labels matching this: a case-insensitive substring or regular expression.", show_default=False, metavar="PATTERN"),
]
ModelId = Annotated[str, typer.Argument(help="Hub model id.", show_default=False, metavar="ID")]
ModelIds = Annotated[list[str], typer.Argument(help="Cached model ids ('ast models' lists them).", show_default=False, metavar="ID...")]

# -- the model ------------------------------------------------------------------------------------
Model = Annotated[
    str,
    typer.Option("--model", "-m", envvar="AST_MODEL", metavar="MODEL", help="Hub id, local model folder (config.json + model.safetensors), or the authors' .pth."),
]
LabelNames = Annotated[Optional[str], typer.Option("--labels", metavar="CSV", help="Label names for a .pth model: the authors' class_labels_indices.csv.")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Where the model runs (auto: CUDA, else Metal, else the CPU).")]
PrecisionOpt = Annotated[
    Precision,
    typer.Option("--precision", help="auto: bf16 on CPUs with native bf16, fp16 on CUDA, else fp32; int8: CPU, quantized Linear layers."),
]
FStride = Annotated[Optional[int], typer.Option("--fstride", min=1, metavar="N", help="An authors' .pth: the frequency stride it was trained with (default: what its weights say).")]
TStride = Annotated[Optional[int], typer.Option("--tstride", min=1, metavar="N", help="An authors' .pth: the time stride it was trained with (default: what its weights say).")]
InputTdim = Annotated[
    Optional[int], typer.Option("--input-tdim", min=1, metavar="FRAMES", help="An authors' .pth: the input frames it was trained with (default: what its weights say).")
]
ModelNormStats = Annotated[
    Optional[str],
    typer.Option("--norm-stats", metavar="STATS", help="Normalise with MEAN,STD or the authors' audioset, esc50 or speechcommands statistics (default: the model's own)."),
]
WindowsPerPass = Annotated[
    Optional[int], typer.Option("--batch-size", min=1, metavar="N", help="Windows per forward pass (default: 1 on the CPU, 8 on a GPU).")
]

# -- what a tag reports ---------------------------------------------------------------------------
Top = Annotated[int, typer.Option("--top", "-k", min=0, metavar="K", help="Labels to report per file (0: all).")]
Threshold = Annotated[Optional[float], typer.Option("--threshold", "-t", metavar="SCORE", help="Keep labels scoring at least this.")]
Window = Annotated[Optional[float], typer.Option("--window", metavar="SECONDS", help="Window length (default: the model's, 10.24 s).")]
Hop = Annotated[Optional[float], typer.Option("--hop", metavar="SECONDS", help="Hop between windows (default: half a window).")]
AggregateOpt = Annotated[Aggregate, typer.Option("--aggregate", help="Combine window scores per label.")]
ActivationOpt = Annotated[Optional[Activation], typer.Option("--activation", help="Logits to scores (default: from the model: sigmoid for multi-label).")]
Include = Annotated[list[str], typer.Option("--include", metavar="LABEL", help="Only report this label (repeatable, any case).")]
Exclude = Annotated[list[str], typer.Option("--exclude", metavar="LABEL", help="Never report this label (repeatable, any case).")]
Timeline = Annotated[bool, typer.Option("--timeline", help="Also report labels per window with start/end times.")]
Merge = Annotated[
    bool, typer.Option("--merge", help="Join consecutive windows carrying a label into one event (start, end, label, score); implies --timeline.")
]
AllScores = Annotated[bool, typer.Option("--all-scores", help="Every label's score: one CSV column per label; 'scores' in JSON.")]
FrontendOpt = Annotated[FeatureFrontend, typer.Option("--frontend", help="transformers: ASTFeatureExtractor's features; authors: each window's waveform mean removed first, as the authors' loader does.")]
Channel = Annotated[str, typer.Option("--channel", metavar="CHANNEL", help="Downmix: 'mean' of all channels, or a channel number from 0.")]

# -- outputs --------------------------------------------------------------------------------------
TagFormat = Annotated[Optional[RecordFormat], typer.Option("--format", "-f", help="Output format (default: table at a terminal, else jsonl).")]
BatchFormatOpt = Annotated[Optional[BatchFormat], typer.Option("--format", "-f", help="Output format (default: from OUT's extension; jsonl on stdout).")]
Report = Annotated[ReportFormat, typer.Option("--format", "-f", help="How to print the result.")]
BatchOutput = Annotated[
    str, typer.Option("--output", "-o", metavar="OUT", show_default=False, help="Output file ('-': standard output), or a folder for --format audacity.")
]
Force = Annotated[bool, typer.Option("--force", help="Overwrite OUT.")]

# -- which files ----------------------------------------------------------------------------------
FilesFrom = Annotated[Optional[str], typer.Option("--files-from", metavar="FILE", help="Also the paths in this file, one a line ('-': standard input).")]
Recursive = Annotated[bool, typer.Option("--recursive/--no-recursive", help="Search folders recursively.")]
Extensions = Annotated[list[str], typer.Option("--ext", metavar="EXT", help="Extensions to take from folders, e.g. --ext wav,flac (default: what libsndfile reads, plus ffmpeg's when installed).")]
Relative = Annotated[bool, typer.Option("--relative", help="Write paths of files found in a folder relative to that folder.")]
Shard = Annotated[Optional[str], typer.Option("--shard", metavar="K/N", help="Tag only shard K (0 to N-1) of N, by a stable hash of each path.")]

# -- batch runs -----------------------------------------------------------------------------------
Workers = Annotated[
    Optional[int],
    typer.Option("--workers", min=0, metavar="N", help="Decoding processes beside the model (0: in the main process) (default: none on a CPU of 2 cores, 1 per 8 cores; most cores for a GPU)."),
]
Unordered = Annotated[bool, typer.Option("--unordered", help="Write files as they finish, not in input order.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue OUT: skip the files already in it and append the rest (same settings only).")]

# -- batch on a Ray cluster -----------------------------------------------------------------------
EngineOpt = Annotated[Engine, typer.Option("--engine", help="local: decode workers and the model on this machine; ray: Ray's CPU tasks decode, model actors tag (pip install 'ast-cli[ray]').")]
RayAddress = Annotated[
    Optional[str],
    typer.Option("--ray-address", metavar="ADDRESS", help="The Ray cluster, HOST:PORT or auto (default: $RAY_ADDRESS or a running cluster, else a Ray started for the run)."),
]
Actors = Annotated[Optional[int], typer.Option("--actors", min=1, metavar="N", help="Model replicas (default: one per GPU of the cluster, else one per node using its cores).")]
GpusPerActor = Annotated[Optional[float], typer.Option("--gpus-per-actor", min=0.0, metavar="N", help="GPUs each model actor holds (default: 1 where the cluster has GPUs, else 0).")]

# -- stats ----------------------------------------------------------------------------------------
Method = Annotated[StatsMethod, typer.Option("--method", help="authors: get_norm_stats.py (augmented, mean of batch stats); exact: pooled, no augmentation.")]
StatsLength = Annotated[
    Optional[int],
    typer.Option("--target-length", min=1, metavar="FRAMES", help="Frames each clip is padded or cut to (default: the longest clip's, at most 1024, as finetune chooses).")
]
StatsBatch = Annotated[int, typer.Option("--batch-size", min=1, metavar="N", help="Clips a batch (authors): each batch's mean/std count equally.")]
StatsFreqm = Annotated[int, typer.Option("--freqm", min=0, metavar="BINS", help="Frequency mask up to this many bins (authors; 0: none).")]
StatsTimem = Annotated[int, typer.Option("--timem", min=0, metavar="FRAMES", help="Time mask up to this many frames (authors; 0: none).")]
StatsMixup = Annotated[float, typer.Option("--mixup", min=0.0, max=1.0, metavar="P", help="Probability of mixing a clip with a random other (authors).")]
StatsSeed = Annotated[Optional[int], typer.Option("--seed", metavar="N", help="Seed of the augmentation of --method authors (default: 0, shown with the result).")]
WriteStats = Annotated[Optional[str], typer.Option("--write", metavar="DIR", help="Store mean/std in DIR/preprocessor_config.json (other keys kept).")]

# -- embed ----------------------------------------------------------------------------------------
EmbedOutput = Annotated[str, typer.Option("--output", "-o", metavar="OUT", show_default=False, help="OUT.jsonl, OUT.npy (files x D) or OUT.npz; '-': JSON Lines on stdout.")]
EmbedTimeline = Annotated[bool, typer.Option("--timeline", help="Also the embedding of every window, with start/end times (jsonl, npz).")]

# -- export ---------------------------------------------------------------------------------------
ExportOutput = Annotated[str, typer.Option("--output", "-o", metavar="OUT", show_default=False, help="File (onnx, torchscript) or folder (hub) to write.")]
ExportFormatOpt = Annotated[ExportFormat, typer.Option("--format", "-f", help="What to write.")]
WithFrontend = Annotated[
    bool, typer.Option("--with-frontend", help="Graph takes 16 kHz waveforms and computes the log-mel itself (onnx, torchscript; not hub).")
]
ExportPrecisionOpt = Annotated[ExportPrecision, typer.Option("--precision", help="fp16: onnx, torchscript; bf16: torchscript.")]
Verify = Annotated[Optional[bool], typer.Option("--verify/--no-verify", help="Run the export against PyTorch (default: on when its runtime is installed).")]

# -- finetune and eval ----------------------------------------------------------------------------
FinetuneOut = Annotated[str, typer.Option("--out", "-o", metavar="DIR", show_default=False, help="Output folder: a model 'ast tag -m' and transformers load.")]
Base = Annotated[str, typer.Option("--base", metavar="MODEL", help="Model to start from: anything 'ast tag -m' accepts.")]
ValDir = Annotated[Optional[str], typer.Option("--val", metavar="DIR", help="Validation folder with the same class folders (default: a split of DIR).")]
ValSplit = Annotated[float, typer.Option("--val-split", metavar="SHARE", help="Share of each class held out for validation without --val.")]
Seed = Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the split, the new head, shuffling and augmentation.")]
Recipe = Annotated[
    RecipeName,
    typer.Option(
        "--recipe",
        help="Where the flags not given take their values; the first line of the run names the recipe it chose. "
        "default: pretrained for an AudioSet-trained base (527 labels, the authors' Hub ids or .pth), scratch for any other, "
        "probe with --freeze-backbone. pretrained: the authors' advice for new data on their ESC-50 settings (Adam, lr 1e-5, 25 epochs, "
        "batch 48, freqm 48, timem 20% of the frames, x0.85 per epoch from epoch 6); scratch: training a random or small model "
        "(AdamW, weight decay 0.05, lr 1e-3 x 192 / the base's width, 30 epochs, batch 16, no masking, one epoch of warm-up, "
        "cosine to 0); probe: the head on cached embeddings (AdamW, lr 1e-3, 50 epochs, batch 32, cosine); the authors' runs, "
        "as they ran them: esc50, speechcommands, audioset, audioset-balanced (docs/finetune.md, Recipes).",
    ),
]
TargetLength = Annotated[
    Optional[int],
    typer.Option("--target-length", metavar="FRAMES", help="Input frames (100 a second) (default: from --recipe; for default, the longest clip, at most the base model's)."),
]
FreezeBackbone = Annotated[
    bool, typer.Option("--freeze-backbone", help="Train the head only, on each clip's embedding computed once and cached (a linear probe; no augmentation).")
]
Epochs = Annotated[Optional[int], typer.Option("--epochs", metavar="N", help="Training epochs (default: from --recipe; pretrained 25, scratch 30, probe 50).")]
LearningRate = Annotated[
    Optional[float],
    typer.Option("--lr", metavar="LR", help="Peak learning rate, then the recipe's decay (default: from --recipe; pretrained 1e-5, scratch 1e-3 x 192 / width, probe 1e-3)."),
]
ClipsPerStep = Annotated[Optional[int], typer.Option("--batch-size", metavar="N", help="Clips per step and process (default: from --recipe; pretrained 48, scratch 16, probe 32).")]
Mixup = Annotated[
    Optional[float], typer.Option("--mixup", metavar="P", help="Probability of mixing a clip's waveform with another's (default: from --recipe; 0 for pretrained and scratch).")
]
Freqm = Annotated[Optional[int], typer.Option("--freqm", metavar="BINS", help="Max mel bins of a SpecAugment frequency mask (default: from --recipe; pretrained 48, scratch 0).")]
Timem = Annotated[
    Optional[int], typer.Option("--timem", metavar="FRAMES", help="Max frames of a SpecAugment time mask (default: from --recipe; pretrained 20% of --target-length, scratch 0).")
]
Warmup = Annotated[
    Optional[int],
    typer.Option("--warmup", metavar="STEPS", help="Steps of learning-rate warm-up, 0: none (default: from --recipe; 1000, at most one epoch, for pretrained, scratch and probe)."),
]
WeightDecay = Annotated[
    Optional[float], typer.Option("--weight-decay", metavar="X", help="Weight decay (default: from --recipe; the authors' 5e-7 with Adam, scratch 0.05 with AdamW, probe 1e-4).")
]
Patience = Annotated[int, typer.Option("--patience", metavar="N", help="Stop after this many epochs without a better validation score (0: never).")]
LabelsCsv = Annotated[Optional[str], typer.Option("--labels", metavar="CSV", help="Multi-label data: CSV of 'path,label;label' rows, paths relative to DIR.")]
NormStats = Annotated[
    str, typer.Option("--norm-stats", metavar="STATS", help="auto (the training clips' mean/std), base (the base model's), MEAN,STD, or audioset, esc50, speechcommands.")
]
ResumeTraining = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in the output folder after its last finished epoch.")]
ForceTraining = Annotated[bool, typer.Option("--force", help="Write into a non-empty output folder, replacing an earlier run.")]
KeepState = Annotated[
    bool, typer.Option("--keep-state", help="Keep OUT/.train_state/ (optimizer and RNG states for --resume) when the run finishes; it is removed otherwise.")
]
EvalPlot = Annotated[
    Optional[str], typer.Option("--plot", metavar="FILE.png", help="Also draw the confusion matrix (single-label) or per-class AP bars (multi-label) into this PNG (needs matplotlib).")
]
LoaderWorkers = Annotated[int, typer.Option("--workers", min=0, metavar="N", help="Data-loading processes (0: in the training process).")]
ClipsPerPass = Annotated[int, typer.Option("--batch-size", min=1, metavar="N", help="Clips per forward pass.")]

# -- listen ---------------------------------------------------------------------------------------
ListenSource = Annotated[
    Optional[str], typer.Argument(help="'-': standard input (a WAV stream, raw PCM with --raw, or what ffmpeg decodes); nothing: the microphone.", show_default=False, metavar="[-]")
]
ListenHop = Annotated[float, typer.Option("--hop", metavar="SECONDS", help="Seconds of audio between two results.")]
Events = Annotated[bool, typer.Option("--events", help="Only changes: a label rising to --threshold (start), and staying below it for --hold seconds (end).")]
Hold = Annotated[float, typer.Option("--hold", metavar="SECONDS", help="With --events: how long a label stays below --threshold before it ends.")]
Raw = Annotated[bool, typer.Option("--raw", help="Standard input is raw PCM (as arecord -t raw and ffmpeg -f s16le write): give --rate and --channels.")]
Rate = Annotated[Optional[int], typer.Option("--rate", min=1, metavar="HZ", help="With --raw: the sample rate.")]
Channels = Annotated[Optional[int], typer.Option("--channels", min=1, metavar="N", help="With --raw: the number of channels.")]
SampleFormatOpt = Annotated[SampleFormat, typer.Option("--sample-format", help="With --raw: the samples' encoding.")]
InputDevice = Annotated[Optional[str], typer.Option("--input-device", metavar="NAME|INDEX", help="The microphone (default: the system's; see --list-devices).")]
ListDevices = Annotated[bool, typer.Option("--list-devices", help="List the input devices and exit.")]

# -- models ---------------------------------------------------------------------------------------
AllModels = Annotated[bool, typer.Option("--all", help="Every cached model repository, not only AST models.")]

# -- every command --------------------------------------------------------------------------------
Threads = Annotated[
    Optional[int],
    typer.Option(
        "--threads", min=1, metavar="N",
        help="Threads for the model (default: the CPUs this process may use, less one per worker; OMP_NUM_THREADS if set). Per-file decoding and features always use one.",
    ),
]  # fmt: skip
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; warnings and errors only.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
