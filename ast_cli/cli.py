"""The ``ast`` command line: each command parses its flags (``params.py``), builds its options by
keyword (``options.py``), calls one core function and maps the result to an exit status.

Importing this module does not import torch: ``ast --help`` and shell completion stay instant, and
each command imports its core when it runs. The process around the commands (the one exit point,
--quiet/--debug, the torch import, the fast end) is ``process.py``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from . import process
from .errors import EXIT_FAILED, EXIT_OK, UsageError
from .hub import DEFAULT_MODEL
from .options import (
    Aggregate, BatchFormat, BatchOptions, Device, Engine, ExportFormat, FeatureFrontend, ExportOptions, ExportPrecision, FinetuneOptions,
    ListenOptions, Precision, RawFormat, ReportFormat, SampleFormat, StatsMethod, StatsOptions, TagOptions, fields_of,
)  # fmt: skip
from .spec import ModelSpec
from .params import *  # noqa: F403 (the parameter declarations: one module, read as a table)
from .version import __version__

app = typer.Typer(
    name="ast",
    help="Tag sounds with the Audio Spectrogram Transformer (AST).\n\nExample: ast tag song.wav --top 5",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: flags without '<bool>', choices as <a|b|c>, no rich import
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
models_app = typer.Typer(name="models", invoke_without_command=True, rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(models_app, name="models")


def command(name: str, *, group: typer.Typer = app, needs_torch: bool = True, **kwargs):
    """Register a command whose --quiet/--debug, errors and torch import ``process.guard`` handles."""
    return lambda fn: group.command(name, no_args_is_help=kwargs.pop("no_args_is_help", True), **kwargs)(
        process.guard(fn, needs_torch=needs_torch)
    )


def main(argv: list[str] | None = None) -> int:
    """The ``ast`` script and ``python -m ast_cli``; returns the exit status."""
    return process.main(app, argv)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version and exit.")] = False) -> None:
    """Tag sounds with the Audio Spectrogram Transformer (AST).

    Example: ast tag song.wav --top 5
    """


def _load(spec: ModelSpec):
    from .inference import load_model

    return load_model(spec)


def _exit(failed: int) -> None:
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _stdin_once(files: list[str]) -> None:
    if files.count("-") > 1:
        raise UsageError("standard input ('-') can be read only once")


# -- tag --------------------------------------------------------------------------------------------
@command("tag")
def tag(
    files: AudioFiles, model: Model = DEFAULT_MODEL, labels: LabelNames = None, top: Top = 5, threshold: Threshold = None,
    window: Window = None, hop: Hop = None, aggregate: AggregateOpt = Aggregate.max, activation: ActivationOpt = None,
    include: Include = [], exclude: Exclude = [], timeline: Timeline = False, fmt: TagFormat = None,  # noqa: B006
    channel: Channel = "mean", device: DeviceOpt = Device.auto, precision: PrecisionOpt = Precision.auto,
    batch_size: WindowsPerPass = None, frontend: FrontendOpt = FeatureFrontend.transformers, norm_stats: ModelNormStats = None,
    fstride: FStride = None, tstride: TStride = None, input_tdim: InputTdim = None,
    threads: Threads = None, quiet: Quiet = False, debug: Debug = False,
) -> None:  # fmt: skip
    """Tag audio files and folders: the labels of each whole recording (sliding windows over long ones).

    Examples:

      ast tag song.wav --top 5

      ast tag recordings/ --format csv > tags.csv

      ast tag *.flac --format jsonl | jq '.labels[0]'
    """
    from .inputs import with_folders
    from .output import default_format
    from .tagging import run_tag

    files = with_folders(files)
    _stdin_once(files)
    options = TagOptions(**fields_of(TagOptions, locals()))
    tagger = _load(ModelSpec(source=model, labels=labels, device=device, precision=precision, norm_stats=norm_stats,
                             fstride=fstride, tstride=tstride, input_tdim=input_tdim, frontend=frontend))
    _exit(run_tag(tagger, files, options, fmt=fmt or default_format(sys.stdout), stream=sys.stdout, on_error=process.error))


# -- batch ------------------------------------------------------------------------------------------
@command("batch")
def batch(
    inputs: BatchInputs = [], out: BatchOutput = "-", fmt: BatchFormatOpt = None, files_from: FilesFrom = None,  # noqa: B006
    recursive: Recursive = True, ext: Extensions = [], relative: Relative = False, shard: Shard = None,  # noqa: B006
    model: Model = DEFAULT_MODEL, labels: LabelNames = None, top: Top = 5, threshold: Threshold = None, window: Window = None,
    hop: Hop = None, aggregate: AggregateOpt = Aggregate.max, activation: ActivationOpt = None, include: Include = [],  # noqa: B006
    exclude: Exclude = [], timeline: Timeline = False, merge: Merge = False, all_scores: AllScores = False,  # noqa: B006
    channel: Channel = "mean", device: DeviceOpt = Device.auto, precision: PrecisionOpt = Precision.auto,
    batch_size: WindowsPerPass = None, workers: Workers = None, unordered: Unordered = False, resume: Resume = False,
    force: Force = False, frontend: FrontendOpt = FeatureFrontend.transformers, norm_stats: ModelNormStats = None,
    fstride: FStride = None, tstride: TStride = None, input_tdim: InputTdim = None, engine: EngineOpt = Engine.local,
    ray_address: RayAddress = None, actors: Actors = None, gpus_per_actor: GpusPerActor = None,
    threads: Threads = None, quiet: Quiet = False, debug: Debug = False,
) -> None:  # fmt: skip
    """Tag whole collections into CSV, TSV, JSON, JSON Lines or Audacity labels: streaming, resumable.

    Examples:

      ast batch recordings/ -o tags.csv

      find /data -name '*.flac' | ast batch --files-from - -o - | jq .labels[0]

      ast batch recordings/ -o tags.csv --resume          (after a stop: adds only what is missing)

      ast batch recordings/ -o part-$SLURM_ARRAY_TASK_ID.jsonl --shard $SLURM_ARRAY_TASK_ID/8

      ast batch /shared/recordings -o tags.jsonl --engine ray --ray-address auto      (on a Ray cluster)
    """
    from .batch import run_batch
    from .inputs import InputSpec, parse_extensions, parse_shard
    from .output import format_from_path

    fmt = fmt or (format_from_path(out) if out != "-" else BatchFormat.jsonl)
    if not fmt:
        raise UsageError(f"cannot tell the output format from {out!r}", hint="give --format csv, tsv, json, jsonl or audacity")
    spec = InputSpec(items=inputs, files_from=files_from, recursive=recursive, extensions=parse_extensions(ext), relative=relative,
                     shard=parse_shard(shard))  # fmt: skip
    options = BatchOptions(**fields_of(BatchOptions, locals()), progress=not quiet)
    tag_options = TagOptions(**fields_of(TagOptions, locals()))
    tagger = _load(ModelSpec(source=model, labels=labels, device=device, precision=precision, norm_stats=norm_stats,
                             fstride=fstride, tstride=tstride, input_tdim=input_tdim, frontend=frontend))
    _exit(run_batch(tagger, spec, tag_options, options).failed)


# -- stats ------------------------------------------------------------------------------------------
@command("stats")
def stats(
    data: StatsInputs = [], files_from: FilesFrom = None, method: Method = StatsMethod.authors, target_length: StatsLength = None,  # noqa: B006
    batch_size: StatsBatch = 1000, freqm: StatsFreqm = 24, timem: StatsTimem = 192, mixup: StatsMixup = 0.5, seed: StatsSeed = None,
    channel: Channel = "mean", fmt: Report = ReportFormat.table, write: WriteStats = None,
    threads: Threads = None, quiet: Quiet = False, debug: Debug = False,
) -> None:  # fmt: skip
    """Log-mel mean and std of a dataset, for normalising its input (the authors' get_norm_stats.py).

    Example: ast stats data/train --format json       ast stats data/ --method exact --write my-model/
    """
    import dataclasses

    from .stats import collect_audio, compute_stats, render_stats, write_stats

    options = StatsOptions(**fields_of(StatsOptions, locals()))
    result = compute_stats(collect_audio(data, files_from), **dataclasses.asdict(options), progress=not quiet)
    if write:
        write_stats(result, write)
    render_stats(result, fmt, sys.stdout)


# -- export -----------------------------------------------------------------------------------------
@command("export")
def export(
    model: ModelArg, out: ExportOutput, fmt: ExportFormatOpt = ExportFormat.onnx, with_frontend: WithFrontend = False,
    precision: ExportPrecisionOpt = ExportPrecision.fp32, verify: Verify = None, labels: LabelNames = None, force: Force = False,
    norm_stats: ModelNormStats = None, fstride: FStride = None, tstride: TStride = None, input_tdim: InputTdim = None,
    threads: Threads = None, quiet: Quiet = False, debug: Debug = False,
) -> None:  # fmt: skip
    """Export a model for other runtimes: ONNX, TorchScript, or a clean Hub-layout folder.

    onnx, torchscript: input 'features', the normalised log-mel (batch, frames, mel bins) as 'ast tag' makes it, or with --with-frontend 'waveform', 16 kHz mono (batch, samples >= 400); output 'scores' (batch, labels), the model's activation included; batch axis dynamic. hub: config.json, model.safetensors, preprocessor_config.json for transformers (also from a .pth); fp32.

    Example: ast export MIT/ast-finetuned-audioset-10-10-0.4593 -o ast.onnx --with-frontend
    """
    from . import export as core

    options = ExportOptions(**fields_of(ExportOptions, locals()))
    spec = ModelSpec(source=model, labels=labels, norm_stats=norm_stats, fstride=fstride, tstride=tstride, input_tdim=input_tdim)
    result = core.export(spec, out, options, status=None if quiet else process.status)
    for line in result.summary():
        typer.echo(line)


# -- finetune ---------------------------------------------------------------------------------------
@command("finetune")
def finetune(
    data_dir: ClassFolders, out_dir: FinetuneOut, base: Base = DEFAULT_MODEL, recipe: Recipe = "default", val: ValDir = None,
    val_split: ValSplit = 0.1, seed: Seed = 0, target_length: TargetLength = None, freeze_backbone: FreezeBackbone = False,
    epochs: Epochs = None, lr: LearningRate = None, batch_size: ClipsPerStep = None, mixup: Mixup = None, freqm: Freqm = None,
    timem: Timem = None, warmup: Warmup = None, weight_decay: WeightDecay = None, patience: Patience = 0, labels: LabelsCsv = None,
    norm_stats: NormStats = "auto", resume: ResumeTraining = False, force: ForceTraining = False, keep_state: KeepState = False, workers: LoaderWorkers = 2,
    device: DeviceOpt = Device.auto, precision: PrecisionOpt = Precision.auto, fstride: FStride = None, tstride: TStride = None,
    input_tdim: InputTdim = None, threads: Threads = None, quiet: Quiet = False, debug: Debug = False,
) -> None:  # fmt: skip
    """Fine-tune an AST on a folder-per-class dataset; the best epoch is kept in the output folder.

    --recipe default is the authors' advice for new data from an AudioSet-trained base, a from-scratch recipe from any
    other (the first line says which); esc50, speechcommands, audioset and audioset-balanced are the authors' runs as
    they ran them. A flag given wins over the recipe.

    Example: ast finetune sounds/ -o my-model --epochs 10      then: ast tag -m my-model clip.wav
    The authors' ESC-50 run: ast finetune esc50/ -o esc-model --recipe esc50 --norm-stats esc50
    Several devices: torchrun --nproc-per-node 2 -m ast_cli finetune sounds/ -o my-model
    """
    from . import training

    options = FinetuneOptions(**fields_of(FinetuneOptions, locals()), val_dir=val, labels_csv=labels)
    training.finetune(data_dir, out_dir, options, log=(lambda _: None) if quiet else (lambda line: typer.echo(line, err=True)), progress=not quiet, command=process.command_line())


# -- eval -------------------------------------------------------------------------------------------
@command("eval")
def evaluate(
    data_dir: ClassFolders, model: Model = DEFAULT_MODEL, labels: LabelsCsv = None, fmt: Report = ReportFormat.table,
    device: DeviceOpt = Device.auto, precision: PrecisionOpt = Precision.auto, batch_size: ClipsPerPass = 16,
    norm_stats: ModelNormStats = None, fstride: FStride = None, tstride: TStride = None, input_tdim: InputTdim = None,
    plot: EvalPlot = None, threads: Threads = None, quiet: Quiet = False, debug: Debug = False,
) -> None:  # fmt: skip
    """Score a model on labelled clips: accuracy, macro-F1, per-class accuracy and the confusion matrix;
    mAP, mAUC and d-prime for multi-label data (--labels).

    Example: ast eval test-sounds/ -m my-model --format json --plot confusion.png
    """
    import json

    from .evaluation import evaluate as run
    from .metrics import format_report

    spec = ModelSpec(source=model, device=device, precision=precision, norm_stats=norm_stats, fstride=fstride, tstride=tstride,
                     input_tdim=input_tdim)  # --labels names the data's labels, not the model's
    report = run(spec, data_dir, labels_csv=labels, batch_size=batch_size, plot=plot)
    typer.echo(json.dumps(report, indent=2) if fmt == ReportFormat.json else format_report(report))


# -- embed ------------------------------------------------------------------------------------------
@command("embed")
def embed(
    files: AudioFiles, out: EmbedOutput, model: Model = DEFAULT_MODEL, window: Window = None, hop: Hop = None,
    timeline: EmbedTimeline = False, channel: Channel = "mean", device: DeviceOpt = Device.auto, precision: PrecisionOpt = Precision.auto,
    batch_size: WindowsPerPass = None, force: Force = False, frontend: FrontendOpt = FeatureFrontend.transformers,
    labels: LabelNames = None, norm_stats: ModelNormStats = None, fstride: FStride = None, tstride: TStride = None,
    input_tdim: InputTdim = None, threads: Threads = None, quiet: Quiet = False, debug: Debug = False,
) -> None:  # fmt: skip
    """Embeddings of audio files: the model's pooled vector before the classifier, per file and per window.

    Pooled: (cls + distillation) / 2 after the last LayerNorm (transformers' pooler_output), averaged over the windows 'ast tag' cuts. .npy: one row per file, in order (NaN for a file that failed); .npz: also paths, durations and windows; .jsonl: one record a line. OUT is written when complete, never overwritten without --force.

    Examples: ast embed *.wav -o embeddings.npy      ast embed long.flac -o long.jsonl --timeline
    """
    from .embedding import check_output, embed_files, write_embeddings
    from .inputs import with_folders

    files = with_folders(files)
    _stdin_once(files)
    check_output(out, timeline, force)
    options = TagOptions(window=window, hop=hop, channel=channel, batch_size=batch_size)
    tagger = _load(ModelSpec(source=model, labels=labels, device=device, precision=precision, norm_stats=norm_stats,
                             fstride=fstride, tstride=tstride, input_tdim=input_tdim, frontend=frontend))
    dims = tagger.config.hidden_size
    failed = write_embeddings(embed_files(tagger, files, options), out, timeline, len(files), dims, on_error=process.error)
    if not quiet and out != "-":
        process.status(f"{len(files) - failed} of {len(files)} file(s) embedded ({dims} dimensions) in {out}")
    _exit(failed)


# -- listen -----------------------------------------------------------------------------------------
@command("listen", no_args_is_help=False)
def listen(
    source: ListenSource = None, model: Model = DEFAULT_MODEL, labels: LabelNames = None, top: Top = 5, threshold: Threshold = None,
    window: Window = None, hop: ListenHop = 1.0, events: Events = False, hold: Hold = 2.0, activation: ActivationOpt = None,
    include: Include = [], exclude: Exclude = [], channel: Channel = "mean", raw: Raw = False, rate: Rate = None,  # noqa: B006
    channels: Channels = None, sample_format: SampleFormatOpt = SampleFormat.s16le, input_device: InputDevice = None,
    list_devices: ListDevices = False, device: DeviceOpt = Device.auto, precision: PrecisionOpt = Precision.auto,
    norm_stats: ModelNormStats = None, threads: Threads = None, quiet: Quiet = False, debug: Debug = False,
) -> None:  # fmt: skip
    """Tag live audio as it arrives: every --hop seconds, the last --window seconds; JSON Lines off a terminal.

    Examples:

      ffmpeg -i URL -f s16le -ac 1 -ar 16000 - | ast listen - --raw --rate 16000 --channels 1 --events --threshold 0.5

      ast listen --events --threshold 0.6 --include Dog | while read -r event; do notify-send "$event"; done
    """
    from . import listen as live

    if list_devices:
        return typer.echo("\n".join(live.list_devices()))
    if raw and (rate is None or channels is None):
        raise UsageError("--raw needs --rate and --channels", hint="e.g. --raw --rate 16000 --channels 1 --sample-format s16le")
    how = ListenOptions(source=source, input_device=input_device, hop=hop, events=events, hold=hold,
                        raw=RawFormat(rate=rate, channels=channels, sample_format=sample_format) if raw else None)  # fmt: skip
    if source is None:
        live.import_sounddevice()  # before the model loads: say at once what to install
    options = TagOptions(top=top, threshold=threshold, window=window, activation=activation, include=include, exclude=exclude, channel=channel)
    tagger = _load(ModelSpec(source=model, labels=labels, device=device, precision=precision, norm_stats=norm_stats))
    summary = live.Summary()
    try:
        live.run_listen(tagger, options, how, stream=sys.stdout, summary=summary, warn=lambda m: process.status(f"warning: {m}"))
    except KeyboardInterrupt:
        process.status(summary.line())
        raise
    if not quiet:
        process.status(summary.line())


# -- labels -----------------------------------------------------------------------------------------
@command("labels", needs_torch=False, no_args_is_help=False)
def labels_command(pattern: LabelPattern = None, model: Model = DEFAULT_MODEL, labels: LabelNames = None, quiet: Quiet = False, debug: Debug = False) -> None:
    """List a model's labels: index<TAB>label, one a line, for grep and scripts.

    Reads config.json only, never the weights (a .pth is read for its head size; name its outputs with --labels). Exit status 1 when PATTERN matches no label.

    Examples:

      ast labels dog

      ast labels -m MIT/ast-finetuned-speech-commands-v2 '^(yes|no)$'
    """
    from .labels import label_lines, model_labels

    lines = label_lines(model_labels(model, labels=labels), pattern)
    for line in lines:
        typer.echo(line)
    if not lines and not quiet:
        process.status(f"no label of {model} matches {pattern!r}")
    _exit(not lines)


# -- models -----------------------------------------------------------------------------------------
def models(ctx: typer.Context, all_models: AllModels = False, fmt: Report = ReportFormat.table, quiet: Quiet = False, debug: Debug = False) -> None:
    """Models in the Hugging Face cache (HF_HOME): list them (the default), download one for offline use, remove one.

    Lists the AST models (their config.json says model_type audio-spectrogram-transformer); --all lists every cached model repository.

    Examples: ast models      ast models download MIT/ast-finetuned-audioset-10-10-0.4593      ast models rm MIT/ast-finetuned-audioset-12-12-0.447
    """
    if ctx.invoked_subcommand is None:
        _list_models(all_models, fmt, quiet)


models_app.callback(invoke_without_command=True)(process.guard(models, needs_torch=False))


@command("list", group=models_app, needs_torch=False, no_args_is_help=False)
def models_list(all_models: AllModels = False, fmt: Report = ReportFormat.table, quiet: Quiet = False, debug: Debug = False) -> None:
    """List the cached AST models (--all: every model): id, size on disk, snapshot folder (usable with -m).

    Example: ast models list --format json
    """
    _list_models(all_models, fmt, quiet)


def _list_models(all_models: bool, fmt: ReportFormat, quiet: bool) -> None:
    from .hub import cache_dir, cached_models
    from .output import render_models

    found = cached_models(include_all=all_models)
    render_models(found, fmt, sys.stdout)
    if not found and fmt == ReportFormat.table and not quiet:
        process.status(f"no {'' if all_models else 'AST '}models in the Hugging Face cache ({cache_dir()})")


@command("download", group=models_app, needs_torch=False)
def models_download(model_id: ModelId, quiet: Quiet = False, debug: Debug = False) -> None:
    """Fetch a Hub model into the cache for offline use: config.json, the weights, preprocessor_config.json (nothing else; a cached model costs no network call). Prints id, size and snapshot folder.

    Example: ast models download MIT/ast-finetuned-audioset-10-10-0.4593
    """
    from rich.filesize import decimal

    from .hub import download

    model = download(model_id)
    typer.echo(f"{model.repo_id}\t{decimal(model.size_bytes)}\t{model.path}")


@command("rm", group=models_app, needs_torch=False)
def models_rm(model_ids: ModelIds, quiet: Quiet = False, debug: Debug = False) -> None:
    """Delete cached models (every revision) from the Hugging Face cache, without asking; says what was removed.

    Example: ast models rm MIT/ast-finetuned-audioset-12-12-0.447
    """
    from rich.filesize import decimal

    from .hub import remove

    for model_id in model_ids:
        model = remove(model_id)
        typer.echo(f"removed {model.repo_id} ({decimal(model.size_bytes)}, {model.path.parent.parent})")
