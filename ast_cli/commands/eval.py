"""``ast eval``: score a model on labelled clips, or on recordings against strong labels."""

from __future__ import annotations

import typer

from ..errors import UsageError
from ..hub import DEFAULT_MODEL
from ..options import Device, Precision, ReportFormat
from ..params.common import Debug, Quiet, Report, Threads
from ..params.model import DeviceOpt, FStride, InputTdim, KeepTokens, Model, ModelNormStats, PrecisionOpt, TStride
from ..params.tagging import Hop, Window
from ..params.training import (
    ClassFolders,
    ClipsPerPass,
    Collar,
    EvalPlot,
    EventThreshold,
    EventThresholds,
    LabelsCsv,
    OffsetCollarRate,
    Segment,
    StrongLabels,
    TargetPrecision,
    WriteThresholds,
)
from ..spec import ModelSpec


def evaluate(
    data_dir: ClassFolders,
    model: Model = DEFAULT_MODEL,
    labels: LabelsCsv = None,
    strong_labels: StrongLabels = None,
    fmt: Report = ReportFormat.table,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    keep_tokens: KeepTokens = None,
    batch_size: ClipsPerPass = 16,
    norm_stats: ModelNormStats = None,
    fstride: FStride = None,
    tstride: TStride = None,
    input_tdim: InputTdim = None,
    plot: EvalPlot = None,
    write_thresholds: WriteThresholds = None,
    target_precision: TargetPrecision = None,
    threshold: EventThreshold = None,
    thresholds: EventThresholds = None,
    collar: Collar = None,
    offset_collar_rate: OffsetCollarRate = None,
    segment: Segment = None,
    window: Window = None,
    hop: Hop = None,
    threads: Threads = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Score a model on labelled clips: accuracy, macro-F1, per-class accuracy and the confusion matrix;
    mAP, mAUC and d-prime for multi-label data (--labels). With --strong-labels, on recordings against
    timed events: event-based and segment-based F1 and PSDS, per class and overall (sed_scores_eval).

    Examples:

      ast eval test-sounds/ -m my-model --format json --plot confusion.png

      ast eval val-sounds/ -m my-model --write-thresholds thresholds.json

      ast batch recordings/ -m my-model -o tags.csv --thresholds thresholds.json

      ast eval recordings/ -m my-model --strong-labels events.tsv --collar 0.2
    """
    spec = ModelSpec(
        source=model,
        device=device,
        precision=precision,
        keep_tokens=keep_tokens,
        norm_stats=norm_stats,
        fstride=fstride,
        tstride=tstride,
        input_tdim=input_tdim,
    )
    if strong_labels is not None:
        clip_flags = {"--labels": labels, "--plot": plot, "--write-thresholds": write_thresholds}
        refuse(clip_flags | {"--target-precision": target_precision}, "work on clips, not with --strong-labels")
        return event_report(
            spec,
            data_dir,
            strong_labels,
            fmt=fmt,
            threshold=threshold,
            thresholds=thresholds,
            collar=collar,
            offset_collar_rate=offset_collar_rate,
            segment=segment,
            window=window,
            hop=hop,
        )
    event_flags: dict[str, object] = {"--threshold": threshold, "--thresholds": thresholds, "--collar": collar}
    others = {"--offset-collar-rate": offset_collar_rate, "--segment": segment, "--window": window, "--hop": hop}
    refuse(event_flags | others, "need --strong-labels")
    clip_report(
        spec,
        data_dir,
        fmt=fmt,
        labels_csv=labels,
        batch_size=batch_size,
        plot=plot,
        write_thresholds=write_thresholds,
        target_precision=target_precision,
    )


def refuse(flags: dict[str, object], why: str) -> None:
    """A UsageError naming the ``flags`` given (not None) that do not apply."""
    given = [flag for flag, value in flags.items() if value is not None]
    if given:
        raise UsageError(f"{', '.join(given)} {why}")


def event_report(
    spec: ModelSpec,
    audio_dir: str,
    strong_labels: str,
    *,
    fmt: ReportFormat,
    threshold: float | None,
    thresholds: str | None,
    collar: float | None,
    offset_collar_rate: float | None,
    segment: float | None,
    window: float | None,
    hop: float | None,
) -> None:
    """``ast eval --strong-labels``: ``detection.evaluate_events``, printed as a table or JSON."""
    from ..detection import evaluate_events, format_events
    from ..output import to_json
    from .common import thresholds_of

    report = evaluate_events(
        spec,
        audio_dir,
        strong_labels,
        threshold=threshold,
        thresholds=thresholds_of(thresholds),
        collar=collar,
        offset_collar_rate=offset_collar_rate,
        segment=segment,
        window=window,
        hop=hop,
    )
    typer.echo(to_json(report, indent=2) if fmt == ReportFormat.json else format_events(report))


def clip_report(
    spec: ModelSpec,
    data_dir: str,
    *,
    fmt: ReportFormat,
    labels_csv: str | None,
    batch_size: int,
    plot: str | None,
    write_thresholds: str | None,
    target_precision: float | None,
) -> None:
    """``ast eval`` on clips: ``evaluation.evaluate``, printed as a table or JSON. ``labels_csv`` names
    the data's labels (a multi-label CSV), not the model's."""
    from ..evaluation import evaluate as run_evaluate
    from ..metrics import format_report
    from ..output import to_json

    report = run_evaluate(
        spec,
        data_dir,
        labels_csv=labels_csv,
        batch_size=batch_size,
        plot=plot,
        write_thresholds=write_thresholds,
        target_precision=target_precision,
    )
    typer.echo(to_json(report, indent=2) if fmt == ReportFormat.json else format_report(report))
