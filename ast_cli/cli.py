"""The ``ast`` command line: thin Typer commands over the core modules.

Importing this module does not import torch (``ast --help`` and shell completion stay instant): each
command imports what it needs. Errors are typed (``errors.py``); ``main`` is the one exit point that
turns them into a one-line message and an exit status, with a traceback only under ``--debug``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import logging
import os
import re
import sys
import traceback
import warnings
from typing import Annotated, Optional

import typer

from . import DEFAULT_MODEL, __version__
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ASTError, Interrupted, UsageError

app = typer.Typer(
    name="ast",
    help="Tag sounds with the Audio Spectrogram Transformer (AST).\n\nExample: ast tag song.wav --top 5",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what shells report for a writer whose reader went away


# -- shared options -------------------------------------------------------------------------------
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        envvar="AST_MODEL",
        help="Hub id, local model folder (config.json + model.safetensors), or the authors' .pth.",
    ),
]
LabelsOpt = Annotated[
    Optional[str], typer.Option("--labels", help="Label names for a .pth model: the authors' class_labels_indices.csv.")
]
TopOpt = Annotated[int, typer.Option("--top", "-k", help="Labels to report per file (0: all).", min=0)]
ThresholdOpt = Annotated[Optional[float], typer.Option("--threshold", "-t", help="Keep labels scoring at least this.")]
WindowOpt = Annotated[
    Optional[float], typer.Option("--window", help="Window length in seconds (default: the model's, 10.24 s).")
]
HopOpt = Annotated[Optional[float], typer.Option("--hop", help="Hop between windows in seconds (default: half a window).")]
AggregateOpt = Annotated[str, typer.Option("--aggregate", help="Combine window scores per label: max or mean.")]
ActivationOpt = Annotated[
    Optional[str],
    typer.Option("--activation", help="sigmoid, softmax or none (default: from the model: sigmoid for multi-label)."),
]
IncludeOpt = Annotated[list[str], typer.Option("--include", help="Only report this label (repeatable, any case).")]
ExcludeOpt = Annotated[list[str], typer.Option("--exclude", help="Never report this label (repeatable, any case).")]
TimelineOpt = Annotated[bool, typer.Option("--timeline", help="Also report labels per window with start/end times.")]
ChannelOpt = Annotated[str, typer.Option("--channel", help="Downmix: 'mean' of all channels, or a channel number from 0.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help="auto, fp32, bf16, fp16 or int8 (auto: bf16 on CPUs with native bf16, fp16 on CUDA; int8: CPU, quantized Linear layers).",
    ),
]
BatchSizeOpt = Annotated[
    Optional[int], typer.Option("--batch-size", help="Windows per forward pass (default: 1 on the CPU, 8 on a GPU).", min=1)
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; warnings and errors only.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]


def command(*args, group: typer.Typer | None = None, **kwargs):
    """``app.command`` (or ``group.command`` of a sub-app) that maps Ctrl-C and a closed stdout pipe to
    our exits (click would print 'Aborted!')."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            try:
                return fn(*a, **kw)
            except KeyboardInterrupt:
                raise Interrupted("interrupted") from None
            except BrokenPipeError:
                _silence_stdout()
                raise typer.Exit(EXIT_BROKEN_PIPE) from None

        return (group or app).command(*args, **kwargs)(wrapper)

    return decorate


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Tag sounds with the Audio Spectrogram Transformer (AST).

    Example: ast tag song.wav --top 5
    """


# -- tag --------------------------------------------------------------------------------------------
@command("tag", no_args_is_help=True)
def tag(
    files: Annotated[list[str], typer.Argument(help="Audio files; '-' reads one from standard input.", show_default=False, metavar="FILES")],
    model: ModelOpt = DEFAULT_MODEL,
    labels: LabelsOpt = None,
    top: TopOpt = 5,
    threshold: ThresholdOpt = None,
    window: WindowOpt = None,
    hop: HopOpt = None,
    aggregate: AggregateOpt = "max",
    activation: ActivationOpt = None,
    include: IncludeOpt = [],  # noqa: B006 (Typer reads the default)
    exclude: ExcludeOpt = [],  # noqa: B006
    timeline: TimelineOpt = False,
    fmt: Annotated[
        Optional[str], typer.Option("--format", "-f", help="table, json, jsonl, csv or tsv (default: table at a terminal, else jsonl).")
    ] = None,
    channel: ChannelOpt = "mean",
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchSizeOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Tag audio files: the labels of each whole recording (sliding windows over long ones).

    Examples:

      ast tag song.wav --top 5

      ast tag *.flac --format jsonl | jq '.labels[0]'
    """
    from .output import FORMATS, RecordWriter, default_format

    fmt = fmt or default_format(sys.stdout)
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if files.count("-") > 1:
        raise UsageError("standard input ('-') can be read only once")
    _setup(quiet)
    from .inference import TagOptions, tag_files

    options = TagOptions(top, threshold, window, hop, aggregate, activation, timeline, include, exclude, channel, batch_size)
    tagger = _load(model, labels, device, precision)
    columns = top or len(tagger.labels)
    writer = RecordWriter(fmt, sys.stdout, columns=columns, timeline=timeline)
    failed = done = 0
    try:
        for record in tag_files(tagger, files, options):
            if "error" in record:
                failed += 1
                _error(record["error"])
            done += 1  # counted before the write: a record being written when Ctrl-C comes is done
            writer.write(record)
    except KeyboardInterrupt:
        writer.close()  # what was written stays a valid document (the JSON array is closed)
        raise Interrupted(f"interrupted after {done} of {len(files)} file(s)") from None
    writer.close()
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


# -- batch ----------------------------------------------------------------------------------------
@command("batch", no_args_is_help=True)
def batch(
    inputs: Annotated[
        list[str], typer.Argument(help="Audio files, folders (searched recursively) and glob patterns ('data/**/*.flac').", show_default=False, metavar="INPUT...")
    ] = [],  # noqa: B006
    out: Annotated[str, typer.Option("--output", "-o", help="Output file ('-': standard output), or a folder for --format audacity.", show_default=False)] = "-",
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="csv, tsv, json, jsonl or audacity (default: from OUT's extension; jsonl on stdout).")] = None,
    files_from: Annotated[Optional[str], typer.Option("--files-from", help="Also the paths in this file, one a line ('-': standard input).")] = None,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Search folders recursively.")] = True,
    ext: Annotated[list[str], typer.Option("--ext", help="Extensions to take from folders, e.g. --ext wav,flac (default: what libsndfile reads, plus ffmpeg's when installed).")] = [],  # noqa: B006
    relative: Annotated[bool, typer.Option("--relative", help="Write paths of files found in a folder relative to that folder.")] = False,
    model: ModelOpt = DEFAULT_MODEL,
    labels: LabelsOpt = None,
    top: TopOpt = 5,
    threshold: ThresholdOpt = None,
    window: WindowOpt = None,
    hop: HopOpt = None,
    aggregate: AggregateOpt = "max",
    activation: ActivationOpt = None,
    include: IncludeOpt = [],  # noqa: B006
    exclude: ExcludeOpt = [],  # noqa: B006
    timeline: TimelineOpt = False,
    merge: Annotated[bool, typer.Option("--merge", help="Join consecutive windows carrying a label into one event (start, end, label, score); implies --timeline.")] = False,
    all_scores: Annotated[bool, typer.Option("--all-scores", help="Every label's score: one CSV column per label; 'scores' in JSON.")] = False,
    channel: ChannelOpt = "mean",
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchSizeOpt = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Decoding processes beside the model (0: in the main process) (default: none on a CPU of 2 cores, 1 per 8 cores; most cores for a GPU).")] = None,
    unordered: Annotated[bool, typer.Option("--unordered", help="Write files as they finish, not in input order.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT: skip the files already in it and append the rest (same settings only).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="K/N: tag only shard K (0 to N-1) of N, by a stable hash of each path.")] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Tag whole collections into CSV, TSV, JSON, JSON Lines or Audacity labels: streaming, resumable.

    Examples:

      ast batch recordings/ -o tags.csv

      find /data -name '*.flac' | ast batch --files-from - -o - | jq .labels[0]

      ast batch recordings/ -o tags.csv --resume          (after a stop: adds only what is missing)

      ast batch recordings/ -o part-$SLURM_ARRAY_TASK_ID.jsonl --shard $SLURM_ARRAY_TASK_ID/8
    """
    from .inputs import InputSpec, parse_extensions, parse_shard
    from .output import format_from_path

    fmt = fmt or (format_from_path(out, default="") if out != "-" else "jsonl")
    if not fmt:
        raise UsageError(f"cannot tell the output format from {out!r}", hint="give --format csv, tsv, json, jsonl or audacity")
    spec = InputSpec(inputs, files_from, recursive, parse_extensions(ext), relative, parse_shard(shard))
    _setup(quiet)
    from .batch import BatchOptions, run_batch
    from .inference import TagOptions

    options = BatchOptions(out, fmt, workers, unordered, resume, force, progress=not quiet)
    tag_options = TagOptions(
        top, threshold, window, hop, aggregate, activation, timeline, include, exclude, channel, batch_size, all_scores, merge
    )
    summary = run_batch(_load(model, labels, device, precision), spec, tag_options, options)
    raise typer.Exit(EXIT_FAILED if summary.failed else EXIT_OK)


# -- stats ------------------------------------------------------------------------------------------
@command("stats", no_args_is_help=True)
def stats(
    data: Annotated[list[str], typer.Argument(help="Audio files and folders (searched recursively).", show_default=False, metavar="DATA")] = [],  # noqa: B006
    files_from: Annotated[
        Optional[str], typer.Option("--files-from", help="Also the paths in this file, one a line ('-': stdin).")
    ] = None,
    method: Annotated[
        str,
        typer.Option("--method", help="authors (get_norm_stats.py: augmented, mean of batch stats) or exact (pooled, no augmentation)."),
    ] = "authors",
    target_length: Annotated[int, typer.Option("--target-length", help="Frames each clip is padded or cut to.", min=1)] = 1024,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Clips a batch (authors): each batch's mean/std count equally.", min=1)
    ] = 1000,
    freqm: Annotated[int, typer.Option("--freqm", help="Frequency mask up to this many bins (authors; 0: none).", min=0)] = 24,
    timem: Annotated[int, typer.Option("--timem", help="Time mask up to this many frames (authors; 0: none).", min=0)] = 192,
    mixup: Annotated[
        float, typer.Option("--mixup", help="Probability of mixing a clip with a random other (authors).", min=0.0, max=1.0)
    ] = 0.5,
    seed: Annotated[
        Optional[int], typer.Option("--seed", help="Seed of the augmentation, to repeat a run (default: a fresh one, shown in the table).")
    ] = None,
    channel: ChannelOpt = "mean",
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    write: Annotated[
        Optional[str], typer.Option("--write", help="Store mean/std in DIR/preprocessor_config.json (other keys kept).")
    ] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Log-mel mean and std of a dataset, for normalising its input (the authors' get_norm_stats.py).

    Example: ast stats data/train --format json       ast stats data/ --method exact --write my-model/
    """
    if fmt not in ("table", "json"):
        raise UsageError(f"--format must be table or json, got {fmt!r}")
    _setup(quiet)
    from .stats import check_options, collect_audio, compute_stats, render, write_stats

    check_options(method, target_length, batch_size, freqm, timem, mixup)
    paths = collect_audio(data, files_from)
    options = dict(target_length=target_length, batch_size=batch_size, freqm=freqm, timem=timem, mixup=mixup, seed=seed)
    result = compute_stats(paths, method, channel=channel, progress=not quiet, **options)
    if write:
        write_stats(result, write, target_length)
    render(result, fmt, sys.stdout)


# -- export -----------------------------------------------------------------------------------------
@command("export", no_args_is_help=True)
def export(
    model: Annotated[str, typer.Argument(help="Hub id, local model folder, or the authors' .pth.", show_default=False, metavar="MODEL")],
    out: Annotated[
        str, typer.Option("--output", "-o", help="File (onnx, torchscript) or folder (hub) to write.", show_default=False)
    ],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx, torchscript or hub.")] = "onnx",
    with_frontend: Annotated[
        bool,
        typer.Option("--with-frontend", help="Graph takes 16 kHz waveforms and computes the log-mel itself (onnx, torchscript; not hub)."),
    ] = False,
    precision: Annotated[str, typer.Option("--precision", help="fp32; fp16 (onnx, torchscript); bf16 (torchscript).")] = "fp32",
    verify: Annotated[
        Optional[bool],
        typer.Option("--verify/--no-verify", help="Run the export against PyTorch (default: on when its runtime is installed)."),
    ] = None,
    labels: LabelsOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT.")] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Export a model for other runtimes: ONNX, TorchScript, or a clean Hub-layout folder.

    onnx, torchscript: input 'features', the normalised log-mel (batch, frames, mel bins) as 'ast tag' makes it.

    --with-frontend: input 'waveform' instead, 16 kHz mono (batch, samples >= 400); not for hub.

    Output 'scores' (batch, labels), the model's activation included (sigmoid for AudioSet); batch axis dynamic.

    hub: config.json, model.safetensors, preprocessor_config.json for transformers (also from a .pth); fp32.

    Example: ast export MIT/ast-finetuned-audioset-10-10-0.4593 -o ast.onnx --with-frontend
    """
    _setup(quiet)
    from .export import check_options, export as run_export

    check_options(fmt, precision, with_frontend)
    options = dict(with_frontend=with_frontend, precision=precision, verify=verify, labels=labels, force=force)
    status = None if quiet else (lambda message: print(f"ast: {message}", file=sys.stderr, flush=True))
    result = run_export(model, out, fmt, status=status, **options)
    for line in result.summary():
        typer.echo(line)


# -- finetune ---------------------------------------------------------------------------------------
@command("finetune", no_args_is_help=True)
def finetune(
    data_dir: Annotated[str, typer.Argument(help="One sub-folder of audio clips per class (dog/, rain/, ...).", show_default=False)],
    out_dir: Annotated[str, typer.Option("--out", "-o", help="Output folder: a model 'ast tag -m' and transformers load.", show_default=False)],
    base: Annotated[str, typer.Option("--base", help="Model to start from: anything 'ast tag -m' accepts.")] = DEFAULT_MODEL,
    val: Annotated[Optional[str], typer.Option("--val", help="Validation folder with the same class folders (default: a split of DATA_DIR).")] = None,
    val_split: Annotated[float, typer.Option("--val-split", help="Share of each class held out for validation without --val.")] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split, the new head, shuffling and augmentation.")] = 0,
    target_length: Annotated[Optional[int], typer.Option("--target-length", help="Input frames (100 a second) (default: the longest clip, at most the base model's).")] = None,
    freeze_backbone: Annotated[bool, typer.Option("--freeze-backbone", help="Train the head only (a fast linear probe; try --lr 1e-3).")] = False,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs (authors' ESC-50 recipe: 25).")] = 25,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (ESC-50 from AudioSet: 1e-5); x0.85 per epoch from epoch 6 to 21.")] = 1e-5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per step and process (ESC-50: 48).")] = 48,
    mixup: Annotated[float, typer.Option("--mixup", help="Probability of mixing a clip's waveform with another's (ESC-50: 0, AudioSet: 0.5).")] = 0.0,
    freqm: Annotated[int, typer.Option("--freqm", help="Max mel bins of a SpecAugment frequency mask (authors' advice: 48).")] = 48,
    timem: Annotated[Optional[int], typer.Option("--timem", help="Max frames of a SpecAugment time mask (default: 20% of --target-length).")] = None,
    warmup: Annotated[Optional[int], typer.Option("--warmup", help="Steps of linear learning-rate warm-up (default: 1000, at most one epoch).")] = None,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="Adam weight decay (authors: 5e-7).")] = 5e-7,
    patience: Annotated[int, typer.Option("--patience", help="Stop after this many epochs without a better validation score (0: never).")] = 0,
    labels: Annotated[Optional[str], typer.Option("--labels", help="Multi-label data: CSV of 'path,label;label' rows, paths relative to DATA_DIR.")] = None,
    norm_stats: Annotated[str, typer.Option("--norm-stats", help="auto (the training clips' mean/std), base (the base model's) or MEAN,STD.")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in OUT_DIR after its last finished epoch.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty OUT_DIR, replacing an earlier run.")] = False,
    workers: Annotated[int, typer.Option("--workers", help="Data-loading processes (0: in the training process).")] = 2,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fine-tune an AST on a folder-per-class dataset; the best epoch is kept in OUT_DIR.

    Example: ast finetune sounds/ -o my-model --epochs 10      then: ast tag -m my-model clip.wav
    Several devices: torchrun --nproc-per-node 2 -m ast_cli finetune sounds/ -o my-model
    """
    _setup(quiet)
    from .training import FinetuneOptions
    from .training import finetune as run

    options = FinetuneOptions(
        base=base, val_dir=val, val_split=val_split, seed=seed, target_length=target_length, freeze_backbone=freeze_backbone,
        epochs=epochs, lr=lr, batch_size=batch_size, mixup=mixup, freqm=freqm, timem=timem, warmup=warmup,
        weight_decay=weight_decay, patience=patience, labels_csv=labels, norm_stats=norm_stats, resume=resume, force=force,
        device=device, precision=precision, workers=workers,
    )  # fmt: skip
    run(data_dir, out_dir, options, log=None if not quiet else (lambda _: None))


# -- eval -------------------------------------------------------------------------------------------
@command("eval", no_args_is_help=True)
def evaluate(
    data_dir: Annotated[str, typer.Argument(help="One sub-folder of clips per class, named as the model's labels.", show_default=False)],
    model: ModelOpt = DEFAULT_MODEL,
    labels: Annotated[Optional[str], typer.Option("--labels", help="Multi-label data: CSV of 'path,label;label' rows, paths relative to DATA_DIR.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchSizeOpt = 16,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Score a model on labelled clips: accuracy, macro-F1, per-class accuracy and the confusion matrix;
    mAP, mAUC and d-prime for multi-label data (--labels).

    Example: ast eval test-sounds/ -m my-model --format json
    """
    if fmt not in ("table", "json"):
        raise UsageError(f"--format must be table or json, got {fmt!r}")
    _setup(quiet)
    import json

    from .evaluation import evaluate as run
    from .metrics import render

    report = run(data_dir, model, labels, device=device, precision=precision, batch_size=batch_size)
    typer.echo(json.dumps(report, indent=2) if fmt == "json" else render(report))


# -- embed ------------------------------------------------------------------------------------------
@command("embed", no_args_is_help=True)
def embed(
    files: Annotated[list[str], typer.Argument(help="Audio files; '-' reads one from standard input.", show_default=False, metavar="FILES")],
    out: Annotated[
        str, typer.Option("--output", "-o", help="OUT.jsonl, OUT.npy (files x D) or OUT.npz; '-': JSON Lines on stdout.", show_default=False)
    ],
    model: ModelOpt = DEFAULT_MODEL,
    window: WindowOpt = None,
    hop: HopOpt = None,
    timeline: Annotated[bool, typer.Option("--timeline", help="Also the embedding of every window, with start/end times (jsonl, npz).")] = False,
    channel: ChannelOpt = "mean",
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchSizeOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT.")] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Embeddings of audio files: the model's pooled vector before the classifier, per file and per window.

    Pooled: (cls + distillation) / 2 after the last LayerNorm (transformers' pooler_output). A file's embedding is the mean over its windows, cut as 'ast tag' cuts them; --timeline adds each window's.

    .npy: one row per file, in order (NaN for a file that failed). .npz: also paths, durations and the windows. .jsonl: one record a line. OUT is written when complete and never overwritten without --force.

    Examples:

      ast embed *.wav -o embeddings.npy

      ast embed long.flac -o long.jsonl --timeline
    """
    if files.count("-") > 1:
        raise UsageError("standard input ('-') can be read only once")
    _setup(quiet)
    from .embedding import check_output, embed_files, write_embeddings
    from .inference import TagOptions

    check_output(out, timeline, force)
    options = TagOptions(window=window, hop=hop, channel=channel, batch_size=batch_size)
    tagger = _load(model, None, device, precision)
    failed = write_embeddings(embed_files(tagger, files, options), out, timeline, len(files), on_error=_error)
    if not quiet and out != "-":
        print(f"ast: {len(files) - failed} of {len(files)} file(s) embedded ({tagger.config.hidden_size} dimensions) in {out}", file=sys.stderr)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


# -- labels -----------------------------------------------------------------------------------------
@command("labels")
def labels_command(
    pattern: Annotated[
        Optional[str],
        typer.Argument(help="Only labels matching this: a case-insensitive substring or regular expression.", show_default=False, metavar="PATTERN"),
    ] = None,
    model: ModelOpt = DEFAULT_MODEL,
    labels: LabelsOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List a model's labels: index<TAB>label, one a line, for grep and scripts.

    Reads config.json only, never the weights (a .pth is read for its head size; name its outputs with --labels). Exit status 1 when PATTERN matches no label.

    Examples:

      ast labels dog

      ast labels -m MIT/ast-finetuned-speech-commands-v2 '^(yes|no)$'
    """
    _setup(quiet, import_torch=False)  # config.json only: starts as fast as --help (a .pth imports torch itself)
    from .labels import model_labels
    from .output import label_lines

    lines = label_lines(model_labels(model, labels=labels), pattern)
    for line in lines:
        typer.echo(line)
    if not lines and not quiet:
        print(f"ast: no label of {model} matches {pattern!r}", file=sys.stderr)
    raise typer.Exit(EXIT_OK if lines else EXIT_FAILED)


# -- models -----------------------------------------------------------------------------------------
models_app = typer.Typer(
    name="models",
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(models_app, name="models")
AllModelsOpt = Annotated[bool, typer.Option("--all", help="Every cached model repository, not only AST models.")]
ModelsFormatOpt = Annotated[str, typer.Option("--format", "-f", help="table or json.")]


@models_app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    all_models: AllModelsOpt = False,
    fmt: ModelsFormatOpt = "table",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Models in the Hugging Face cache (HF_HOME): list them (the default), download one for offline use, remove one.

    Lists the AST models (their config.json says model_type audio-spectrogram-transformer); --all lists every cached model repository.

    Examples:

      ast models

      ast models download MIT/ast-finetuned-audioset-10-10-0.4593

      ast models rm MIT/ast-finetuned-audioset-12-12-0.447
    """
    if ctx.invoked_subcommand is None:
        models_list(all_models=all_models, fmt=fmt, quiet=quiet, debug=debug)


@command("list", group=models_app)
def models_list(all_models: AllModelsOpt = False, fmt: ModelsFormatOpt = "table", quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """List the cached AST models (--all: every model): id, size on disk, snapshot folder (usable with -m).

    Example: ast models list --format json
    """
    if fmt not in ("table", "json"):
        raise UsageError(f"--format must be table or json, got {fmt!r}")
    _setup(quiet)
    from .hub import cache_dir, cached_models
    from .output import render_models

    found = cached_models(include_all=all_models)
    render_models(found, fmt, sys.stdout)
    if not found and fmt == "table" and not quiet:
        print(f"ast: no {'' if all_models else 'AST '}models in the Hugging Face cache ({cache_dir()})", file=sys.stderr)


@command("download", group=models_app, no_args_is_help=True)
def models_download(
    model_id: Annotated[str, typer.Argument(help="Hub model id.", show_default=False, metavar="ID")],
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fetch a Hub model into the cache for offline use: config.json, the weights, preprocessor_config.json.

    Nothing else of the repository is fetched; a cached model costs no network call. Prints id, size and snapshot folder.

    Example: ast models download MIT/ast-finetuned-audioset-10-10-0.4593
    """
    _setup(quiet)
    from .hub import download
    from .output import human_size

    model = download(model_id)
    typer.echo(f"{model.repo_id}\t{human_size(model.size_bytes)}\t{model.path}")


@command("rm", group=models_app, no_args_is_help=True)
def models_rm(
    model_ids: Annotated[list[str], typer.Argument(help="Cached model ids ('ast models' lists them).", show_default=False, metavar="ID...")],
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Delete cached models (every revision) from the Hugging Face cache, without asking; says what was removed.

    Example: ast models rm MIT/ast-finetuned-audioset-12-12-0.447
    """
    _setup(quiet)
    from .hub import remove
    from .output import human_size

    for model_id in model_ids:
        model = remove(model_id)
        typer.echo(f"removed {model.repo_id} ({human_size(model.size_bytes)}, {model.path.parent.parent})")


# -- helpers ----------------------------------------------------------------------------------------
def _load(model: str, labels: str | None, device: str, precision: str):
    from . import load_model

    return load_model(model, labels=labels, device=device, precision=precision)


def _setup(quiet: bool, import_torch: bool = True) -> None:
    """Progress bars and warnings go to stderr; --quiet keeps warnings but drops bars. Then torch."""
    if quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"ast: warning: {_one_line(str(message))}", file=sys.stderr)

    warnings.showwarning = show
    if import_torch:
        _import_torch()


def _import_torch() -> None:
    """Import torch with the garbage collector off, then freeze what the import made: those objects
    live as long as the process, and every full collection walked them again (the collector took
    0.9 s of a 3-s ``ast tag`` of one clip, 0.06 s frozen). glibc's malloc thresholds are fixed first
    (``allocator``), before torch allocates anything."""
    from . import allocator

    allocator.tune()
    gc.disable()
    try:
        import torch  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()


def _error(message: str) -> None:
    print(f"ast: error: {_one_line(message)}", file=sys.stderr, flush=True)


def _one_line(text: str) -> str:
    """Control characters (a newline or an escape sequence in a file name) escaped, so every message
    stays one line and cannot drive the terminal; so are the lone surrogates of a file name that is not
    UTF-8, which a strict stderr could not encode."""
    return re.sub("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]", lambda m: repr(m.group())[1:-1], text)


@contextlib.contextmanager
def _debug_log(enabled: bool):
    """With --debug, the core's debug records (tracebacks of the files that failed) on stderr."""
    if not enabled:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ast: debug: %(message)s"))
    logger = logging.getLogger("ast_cli")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _keep_undecodable_names() -> None:
    """Write file names that are not valid UTF-8 back as their bytes (as Python does in the C locale)
    rather than failing on them; JSON escapes them itself (output.to_json)."""
    try:
        sys.stdout.reconfigure(errors="surrogateescape")
    except (AttributeError, ValueError, OSError):
        pass


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


_exit_status = EXIT_FAILED  # what _end_process exits with when main() did not return (an uncaught error)


def _end_process() -> None:
    """End the process without the interpreter's teardown, which frees torch's objects one by one:
    0.7-1 s after ``import torch`` alone, a quarter of an ``ast tag`` of one clip (benchmarks/startup.py).
    Registered before any other exit handler, so it runs after all of them (atexit is LIFO)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: the status already says what happened
            pass
    os._exit(_exit_status)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ast`` script and ``python -m ast_cli``. Returns the exit status.

    Called as the program (no ``argv``), the process then ends as soon as the exit handlers have run
    (``_end_process``); called with ``argv`` (tests, embedding) it only returns."""
    global _exit_status
    if argv is None:
        atexit.register(_end_process)
    _exit_status = _run(sys.argv[1:] if argv is None else argv)
    return _exit_status


def _run(args: list[str]) -> int:
    debug = "--debug" in args
    _keep_undecodable_names()
    try:
        with _debug_log(debug):
            app(args=args, prog_name="ast")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_FAILED)
    except ASTError as exc:
        if debug:
            traceback.print_exc()
        _error(str(exc)) if not isinstance(exc, Interrupted) else print(f"ast: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ast: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # a bug, not a user error: still one line; the traceback with --debug
        if debug:
            traceback.print_exc()
        _error(f"unexpected {type(exc).__name__}: {exc} (a bug in ast: please report it with the output of the same command with --debug)")
        return EXIT_FAILED
    return EXIT_OK
