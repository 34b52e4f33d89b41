"""``ast export``: the format, precision and check of an exported model."""

from __future__ import annotations

from typing import Annotated

import typer

from ..options import ExportFormat, ExportPrecision

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
