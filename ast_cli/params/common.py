"""The flags every command takes (threads, quiet, debug), and those several commands share as they are:
``--force`` and a report's ``--format``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..options import ReportFormat

# -- outputs --------------------------------------------------------------------------------------
Report = Annotated[ReportFormat, typer.Option("--format", "-f", help="How to print the result.")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite OUT.")]

# -- every command --------------------------------------------------------------------------------
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        metavar="N",
        help="Threads for the model (default: the CPUs this process may use, less one "
        "per worker; OMP_NUM_THREADS if set). Per-file decoding and features always use one.",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; warnings and errors only.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
