"""The flags of ``ast clips``: which detections become clips, how long, and where they go."""

from __future__ import annotations

from typing import Annotated

import typer

Results = Annotated[
    str,
    typer.Argument(
        show_default=False,
        metavar="RESULTS",
        help="What 'ast tag' or 'ast batch' wrote with --timeline or --merge: JSON Lines, JSON, CSV or TSV; "
        "'-' reads it from standard input.",
    ),
]
ClipsOut = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        metavar="DIR",
        show_default=False,
        help="Folder for the clips: DIR/LABEL/SCORE_NAME_START-END.wav, and DIR/clips.csv listing them.",
    ),
]
Pad = Annotated[
    float, typer.Option("--pad", min=0.0, metavar="SECONDS", help="Audio kept either side of each detection.")
]
MinScore = Annotated[
    float | None, typer.Option("--min-score", metavar="SCORE", help="Only cut detections scoring at least this.")
]
MaxPerLabel = Annotated[
    int | None,
    typer.Option("--max-per-label", min=1, metavar="N", help="At most N clips a label, its best scores first."),
]
ClipInclude = Annotated[
    list[str], typer.Option("--include", metavar="LABEL", help="Only cut this label (repeatable, any case).")
]
ClipExclude = Annotated[
    list[str], typer.Option("--exclude", metavar="LABEL", help="Never cut this label (repeatable, any case).")
]
AudioRoot = Annotated[
    str | None,
    typer.Option(
        "--root",
        metavar="DIR",
        help="Folder the records' relative paths are under (default: the current folder, as when tagged).",
    ),
]
