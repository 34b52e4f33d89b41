"""``ast tag``: the labels of each whole recording, on standard output."""

from __future__ import annotations

import sys

from .. import process
from ..hub import DEFAULT_MODEL
from ..options import Aggregate, Device, FeatureFrontend, Precision, TagOptions
from ..params.common import Debug, Quiet, Threads
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
    AudioFiles,
    Channel,
    CropShort,
    Exclude,
    ExcludeFrom,
    FrontendOpt,
    Hop,
    Include,
    IncludeFrom,
    TagFormat,
    TagPlot,
    Threshold,
    ThresholdsFile,
    Timeline,
    Top,
    Window,
)
from ..spec import ModelSpec
from .common import exit_with, label_lists, load, stdin_once, thresholds_of


def tag(
    files: AudioFiles,
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
    fmt: TagFormat = None,
    plot: TagPlot = None,
    channel: Channel = "mean",
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    keep_tokens: KeepTokens = None,
    batch_size: WindowsPerPass = None,
    crop_short: CropShort = False,
    frontend: FrontendOpt = FeatureFrontend.transformers,
    norm_stats: ModelNormStats = None,
    fstride: FStride = None,
    tstride: TStride = None,
    input_tdim: InputTdim = None,
    threads: Threads = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Tag audio files and folders: the labels of each whole recording (sliding windows over long ones).

    Examples:

      ast tag song.wav --top 5

      ast tag recordings/ --format csv > tags.csv

      ast tag *.flac --format jsonl | jq '.labels[0]'

      ast tag long.flac --plot long.png
    """
    from ..inputs import with_folders
    from ..output import default_format
    from ..tagging import run_tag

    paths = with_folders(files)
    stdin_once(paths)
    options = TagOptions(
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
    fmt = fmt or default_format(sys.stdout)
    tagged = run_tag(
        load(spec),
        paths,
        options,
        fmt=fmt,
        stream=sys.stdout,
        on_error=process.error,
        plot=plot,
        progress=not quiet,
    )
    exit_with(tagged)
