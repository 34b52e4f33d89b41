"""``ast batch``: tag whole collections into one output file (or a folder of label tracks), streaming
and resumable, on this machine or a Ray cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UsageError
from ..hub import DEFAULT_MODEL
from ..options import Aggregate, BatchFormat, BatchOptions, Device, Engine, FeatureFrontend, Precision, TagOptions
from ..params.batch import (
    Actors,
    BatchFormatOpt,
    BatchInputs,
    BatchOutput,
    EngineOpt,
    Extensions,
    FilesFrom,
    GpusPerActor,
    RayAddress,
    Recursive,
    Relative,
    Resume,
    Shard,
    Unordered,
    Workers,
)
from ..params.common import Debug, Force, Quiet, Threads
from ..params.model import (
    DeviceOpt,
    FStride,
    InputTdim,
    KeepTokens,
    LabelNames,
    Model,
    ModelNormStats,
    PrecisionOpt,
    TStride,
    WindowsPerPass,
)
from ..params.tagging import (
    ActivationOpt,
    AggregateOpt,
    AllScores,
    Channel,
    CropShort,
    Exclude,
    ExcludeFrom,
    FrontendOpt,
    Hop,
    Include,
    IncludeFrom,
    Merge,
    Threshold,
    ThresholdsFile,
    Timeline,
    Top,
    Window,
)
from ..spec import ModelSpec
from .common import exit_with, label_lists, load, thresholds_of

if TYPE_CHECKING:
    from ..inputs import InputSpec

RAY_FLAGS = {"ray_address": "--ray-address", "actors": "--actors", "gpus_per_actor": "--gpus-per-actor"}


def batch(
    inputs: BatchInputs = [],
    out: BatchOutput = [],
    fmt: BatchFormatOpt = [],
    files_from: FilesFrom = None,
    recursive: Recursive = True,
    ext: Extensions = [],
    relative: Relative = False,
    shard: Shard = None,
    model: Model = DEFAULT_MODEL,
    labels: LabelNames = None,
    top: Top = 5,
    threshold: Threshold = None,
    thresholds: ThresholdsFile = None,
    window: Window = None,
    hop: Hop = None,
    aggregate: AggregateOpt = Aggregate.max,
    activation: ActivationOpt = None,
    include: Include = [],
    exclude: Exclude = [],
    include_from: IncludeFrom = None,
    exclude_from: ExcludeFrom = None,
    timeline: Timeline = False,
    merge: Merge = False,
    all_scores: AllScores = False,
    channel: Channel = "mean",
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    keep_tokens: KeepTokens = None,
    batch_size: WindowsPerPass = None,
    crop_short: CropShort = False,
    workers: Workers = None,
    unordered: Unordered = False,
    resume: Resume = False,
    force: Force = False,
    frontend: FrontendOpt = FeatureFrontend.transformers,
    norm_stats: ModelNormStats = None,
    fstride: FStride = None,
    tstride: TStride = None,
    input_tdim: InputTdim = None,
    engine: EngineOpt = Engine.local,
    ray_address: RayAddress = None,
    actors: Actors = None,
    gpus_per_actor: GpusPerActor = None,
    threads: Threads = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Tag collections into CSV, TSV, JSON, JSON Lines, event tables, Audacity or Raven labels; resumable.

    Examples:

      ast batch recordings/ -o tags.csv -o raven/ -f csv -f raven       (two outputs from one run)

      find /data -name '*.flac' | ast batch --files-from - -o - | jq .labels[0]

      ast batch recordings/ -o tags.csv --resume          (after a stop: adds only what is missing)

      ast batch recordings/ -o part-$SLURM_ARRAY_TASK_ID.jsonl --shard $SLURM_ARRAY_TASK_ID/8

      ast batch /shared/recordings -o tags.jsonl --engine ray --ray-address auto      (on a Ray cluster)
    """
    from ..batch import run_batch

    found = input_spec(inputs, files_from=files_from, recursive=recursive, ext=ext, relative=relative, shard=shard)
    options = batch_options(
        outs=out,
        fmts=fmt,
        workers=workers,
        unordered=unordered,
        resume=resume,
        force=force,
        quiet=quiet,
        engine=engine,
        ray_address=ray_address,
        actors=actors,
        gpus_per_actor=gpus_per_actor,
    )
    tag_options = TagOptions(
        top=top,
        threshold=threshold,
        thresholds=thresholds_of(thresholds),
        window=window,
        hop=hop,
        aggregate=aggregate,
        activation=activation,
        timeline=timeline,
        **label_lists(include, include_from, exclude, exclude_from),
        channel=channel,
        batch_size=batch_size,
        crop_short=crop_short,
        all_scores=all_scores,
        merge=merge,
    )
    spec = ModelSpec(
        source=model,
        labels=labels,
        device=device,
        precision=precision,
        keep_tokens=keep_tokens,
        norm_stats=norm_stats,
        fstride=fstride,
        tstride=tstride,
        input_tdim=input_tdim,
        frontend=frontend,
    )
    exit_with(run_batch(load(spec), found, tag_options, options).failed)


def input_spec(
    items: list[str], *, files_from: str | None, recursive: bool, ext: list[str], relative: bool, shard: str | None
) -> InputSpec:
    """The inputs the command line names (``--ext`` and ``--shard`` parsed)."""
    from ..inputs import InputSpec, parse_extensions, parse_shard

    return InputSpec(
        items=items,
        files_from=files_from,
        recursive=recursive,
        extensions=parse_extensions(ext),
        relative=relative,
        shard=parse_shard(shard),
    )


def batch_options(
    *,
    outs: list[str],
    fmts: list[BatchFormat],
    workers: int | None,
    unordered: bool,
    resume: bool,
    force: bool,
    quiet: bool,
    engine: Engine,
    ray_address: str | None,
    actors: int | None,
    gpus_per_actor: float | None,
) -> BatchOptions:
    """The run's options, once the flags that exclude or need each other are checked (``outs``: every
    -o, none for standard output; ``fmts``: every --format, none to take each from its -o)."""
    outs = outs or ["-"]
    fmts = output_formats(outs, fmts)
    ray: dict[str, object] = {"ray_address": ray_address, "actors": actors, "gpus_per_actor": gpus_per_actor}
    check_flags(outs=outs, resume=resume, force=force, engine=engine, workers=workers, ray=ray)
    return BatchOptions(
        out=outs[0],
        fmt=fmts[0],
        more_outputs=list(zip(outs[1:], fmts[1:], strict=True)),
        workers=workers,
        unordered=unordered,
        resume=resume,
        force=force,
        progress=not quiet,
        engine=engine,
        ray_address=ray_address,
        actors=actors,
        gpus_per_actor=gpus_per_actor,
    )


def output_formats(outs: list[str], fmts: list[BatchFormat]) -> list[BatchFormat]:
    """Each output's format: one --format per -o, in the same order, or none (each from its extension)."""
    if not fmts:
        return [output_format(out) for out in outs]
    if len(fmts) != len(outs):
        raise UsageError(
            f"{len(outs)} output(s) (-o) and {len(fmts)} --format",
            hint="give one --format per -o, in the same order, or none (each from its file's extension)",
        )
    return fmts


def output_format(out: str) -> BatchFormat:
    """The format OUT's extension names; JSON Lines on standard output."""
    from ..output import format_from_path

    if out == "-":
        return BatchFormat.jsonl
    fmt = format_from_path(out)
    if not fmt:
        hint = "give --format csv, tsv, json, jsonl, events-csv, events-tsv, audacity or raven"
        raise UsageError(f"cannot tell the output format from {out!r}", hint=hint)
    return fmt


def check_flags(
    *, outs: list[str], resume: bool, force: bool, engine: Engine, workers: int | None, ray: dict[str, object]
) -> None:
    """The flags that exclude or need each other (``BatchOptions`` checks each value)."""
    if engine == Engine.local:
        given = [RAY_FLAGS[name] for name, value in ray.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only work with --engine ray")
    elif workers is not None:
        raise UsageError(
            "--workers is for --engine local",
            hint="with --engine ray decoding runs in Ray's CPU tasks; --actors sets the model replicas",
        )
    if resume and "-" in outs:
        raise UsageError("--resume needs an output file", hint="give -o FILE, not standard output ('-')")
    if resume and force:
        raise UsageError("--resume and --force exclude each other")
