"""Which model and how it runs: the flags of every command that loads one, and the arguments of
``ast models`` and ``ast labels``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..options import Device, Precision

# -- arguments --------------------------------------------------------------------------------------
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
KeepTokens = Annotated[
    float | None,
    typer.Option(
        "--keep-tokens",
        metavar="RATE",
        help="Opt-in token pruning: in later layers (4, 7, 10 of 12) keep only this fraction (0-1] of the "
        "patch tokens, those the class tokens attend to most. Faster; changes the scores (docs/performance.md).",
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

# -- models ---------------------------------------------------------------------------------------
AllModels = Annotated[bool, typer.Option("--all", help="Every cached model repository, not only AST models.")]
