"""``ast eval``: score a model on labelled clips."""

from __future__ import annotations

import typer

from ..hub import DEFAULT_MODEL
from ..options import Device, Precision, ReportFormat
from ..params.common import Debug, Quiet, Report, Threads
from ..params.model import DeviceOpt, FStride, InputTdim, Model, ModelNormStats, PrecisionOpt, TStride
from ..params.training import ClassFolders, ClipsPerPass, EvalPlot, LabelsCsv, TargetPrecision, WriteThresholds
from ..spec import ModelSpec


def evaluate(
    data_dir: ClassFolders,
    model: Model = DEFAULT_MODEL,
    labels: LabelsCsv = None,
    fmt: Report = ReportFormat.table,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    batch_size: ClipsPerPass = 16,
    norm_stats: ModelNormStats = None,
    fstride: FStride = None,
    tstride: TStride = None,
    input_tdim: InputTdim = None,
    plot: EvalPlot = None,
    write_thresholds: WriteThresholds = None,
    target_precision: TargetPrecision = None,
    threads: Threads = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Score a model on labelled clips: accuracy, macro-F1, per-class accuracy and the confusion matrix;
    mAP, mAUC and d-prime for multi-label data (--labels).

    Examples:

      ast eval test-sounds/ -m my-model --format json --plot confusion.png

      ast eval val-sounds/ -m my-model --write-thresholds thresholds.json

      ast batch recordings/ -m my-model -o tags.csv --thresholds thresholds.json
    """
    from ..evaluation import evaluate as run_evaluate
    from ..metrics import format_report
    from ..output import to_json

    # --labels names the data's labels (a multi-label CSV), not the model's
    spec = ModelSpec(
        source=model,
        device=device,
        precision=precision,
        norm_stats=norm_stats,
        fstride=fstride,
        tstride=tstride,
        input_tdim=input_tdim,
    )
    report = run_evaluate(
        spec,
        data_dir,
        labels_csv=labels,
        batch_size=batch_size,
        plot=plot,
        write_thresholds=write_thresholds,
        target_precision=target_precision,
    )
    typer.echo(to_json(report, indent=2) if fmt == ReportFormat.json else format_report(report))
