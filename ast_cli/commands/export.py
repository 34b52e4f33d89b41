"""``ast export``: a model for other runtimes (ONNX, TorchScript) or a clean Hub-layout folder."""

from __future__ import annotations

import typer

from .. import process
from ..errors import UsageError
from ..options import (
    EXPORT_PRECISIONS,
    WHY_NO_FRONTEND,
    WHY_NOT_PRECISION,
    ExportFormat,
    ExportOptions,
    ExportPrecision,
)
from ..params.common import Debug, Force, Quiet, Threads
from ..params.export import ExportFormatOpt, ExportOutput, ExportPrecisionOpt, Verify, WithFrontend
from ..params.model import FStride, InputTdim, LabelNames, ModelArg, ModelNormStats, TStride
from ..spec import ModelSpec


def export(
    model: ModelArg,
    out: ExportOutput,
    fmt: ExportFormatOpt = ExportFormat.onnx,
    with_frontend: WithFrontend = False,
    precision: ExportPrecisionOpt = ExportPrecision.fp32,
    verify: Verify = None,
    labels: LabelNames = None,
    force: Force = False,
    norm_stats: ModelNormStats = None,
    fstride: FStride = None,
    tstride: TStride = None,
    input_tdim: InputTdim = None,
    threads: Threads = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Export a model for other runtimes: ONNX, TorchScript, or a clean Hub-layout folder.

    onnx, torchscript: input 'features', the normalised log-mel (batch, frames, mel bins) as 'ast tag' makes it,
    or with --with-frontend 'waveform', 16 kHz mono (batch, samples >= 400); output 'scores' (batch, labels),
    the model's activation included; batch axis dynamic. hub: config.json, model.safetensors,
    preprocessor_config.json for transformers (also from a .pth); fp32.

    Example: ast export MIT/ast-finetuned-audioset-10-10-0.4593 -o ast.onnx --with-frontend
    """
    from ..export import export as run_export

    if precision not in EXPORT_PRECISIONS[fmt]:
        raise UsageError(f"--precision {precision} is not available for --format {fmt}", hint=WHY_NOT_PRECISION[fmt])
    if with_frontend and fmt == ExportFormat.hub:
        raise UsageError(f"--with-frontend does not apply to --format {fmt}", hint=WHY_NO_FRONTEND)
    options = ExportOptions(fmt=fmt, with_frontend=with_frontend, precision=precision, verify=verify, force=force)
    spec = ModelSpec(
        source=model, labels=labels, norm_stats=norm_stats, fstride=fstride, tstride=tstride, input_tdim=input_tdim
    )
    result = run_export(spec, out, options, status=None if quiet else process.status)
    for line in result.summary():
        typer.echo(line)
