"""``ast batch``: its inputs and which files they name, its output, decode workers and resume, and
the Ray engine.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..options import BatchFormat, Engine

# -- arguments --------------------------------------------------------------------------------------
BatchInputs = Annotated[
    list[str],
    typer.Argument(
        show_default=False,
        metavar="INPUT...",
        help="Audio files, folders (searched recursively) and glob patterns ('data/**/*.flac').",
    ),
]

# -- outputs --------------------------------------------------------------------------------------
BatchFormatOpt = Annotated[
    list[BatchFormat],
    typer.Option(
        "--format",
        "-f",
        metavar="<" + "|".join(f.value for f in BatchFormat) + ">",
        show_default=False,
        help="Output format (default: from OUT's extension; jsonl on stdout); with several -o, one "
        "--format each, in their order, or none.",
    ),
]
BatchOutput = Annotated[
    list[str],
    typer.Option(
        "--output",
        "-o",
        metavar="OUT",
        show_default=False,
        help="Output file ('-': standard output, the default), or a folder for --format audacity or "
        "raven; repeat for several outputs from one run.",
    ),
]

# -- which files ----------------------------------------------------------------------------------
FilesFrom = Annotated[
    str | None,
    typer.Option(
        "--files-from",
        metavar="FILE",
        help="Also the paths in this file, one a line ('-': standard input).",
    ),
]
Recursive = Annotated[bool, typer.Option("--recursive/--no-recursive", help="Search folders recursively.")]
Extensions = Annotated[
    list[str],
    typer.Option(
        "--ext",
        metavar="EXT",
        help="Extensions to take from folders, e.g. --ext wav,flac (default: what libsndfile "
        "reads, plus ffmpeg's when installed).",
    ),
]
Relative = Annotated[
    bool,
    typer.Option(
        "--relative",
        help="Write paths of files found in a folder relative to that folder.",
    ),
]
Shard = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="K/N",
        help="Tag only shard K (0 to N-1) of N, by a stable hash of each path.",
    ),
]

# -- batch runs -----------------------------------------------------------------------------------
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=0,
        metavar="N",
        help="Decoding processes beside the model (0: in the main process) (default: "
        "none on a CPU of 2 cores, 1 per 8 cores; most cores for a GPU).",
    ),
]
Unordered = Annotated[bool, typer.Option("--unordered", help="Write files as they finish, not in input order.")]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue OUT: skip the files already in it and append the rest (same settings only).",
    ),
]

# -- batch on a Ray cluster -----------------------------------------------------------------------
EngineOpt = Annotated[
    Engine,
    typer.Option(
        "--engine",
        help="local: decode workers and the model on this machine; ray: Ray's CPU tasks decode, model "
        "actors tag (pip install 'ast-cli[ray]').",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="ADDRESS",
        help="The Ray cluster, HOST:PORT or auto (default: $RAY_ADDRESS or a "
        "running cluster, else a Ray started for the run).",
    ),
]
Actors = Annotated[
    int | None,
    typer.Option(
        "--actors",
        min=1,
        metavar="N",
        help="Model replicas (default: one per GPU of the cluster, else one per node using its cores).",
    ),
]
GpusPerActor = Annotated[
    float | None,
    typer.Option(
        "--gpus-per-actor",
        min=0.0,
        metavar="N",
        help="GPUs each model actor holds (default: 1 where the cluster has GPUs, else 0).",
    ),
]
