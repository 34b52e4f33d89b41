"""What a tag reports: the inputs of ``ast tag`` and ``ast embed``, and the windows, scores, labels
and formats of a record (``ast tag``, ``ast batch``, ``ast embed``, ``ast listen``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..options import Activation, Aggregate, FeatureFrontend, RecordFormat

# -- arguments --------------------------------------------------------------------------------------
AudioFiles = Annotated[
    list[str],
    typer.Argument(
        show_default=False,
        metavar="INPUT...",
        help="Audio files and folders (searched recursively); '-' reads one file from standard input.",
    ),
]

# -- what a tag reports ---------------------------------------------------------------------------
Top = Annotated[int, typer.Option("--top", "-k", min=0, metavar="K", help="Labels to report per file (0: all).")]
Threshold = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        "-t",
        metavar="SCORE",
        help="Keep labels scoring at least this.",
    ),
]
ThresholdsFile = Annotated[
    str | None,
    typer.Option(
        "--thresholds",
        metavar="FILE",
        help="Each label's own threshold: a file of 'ast eval --write-thresholds', or label,threshold "
        "lines. Labels not in it use --threshold.",
    ),
]
IncludeFrom = Annotated[
    str | None,
    typer.Option("--include-from", metavar="FILE", help="Only report the labels listed in FILE (one a line)."),
]
ExcludeFrom = Annotated[
    str | None,
    typer.Option("--exclude-from", metavar="FILE", help="Never report the labels listed in FILE (one a line)."),
]
Window = Annotated[
    float | None,
    typer.Option(
        "--window",
        metavar="SECONDS",
        help="Window length (default: the model's, 10.24 s).",
    ),
]
Hop = Annotated[
    float | None,
    typer.Option(
        "--hop",
        metavar="SECONDS",
        help="Hop between windows (default: half a window).",
    ),
]
CropShort = Annotated[
    bool,
    typer.Option(
        "--crop-short",
        help="Run a window shorter than the model's input (a short clip, or a shorter --window) on its own "
        "patches instead of padding it: faster, scores differ slightly (docs/performance.md).",
    ),
]
AggregateOpt = Annotated[Aggregate, typer.Option("--aggregate", help="Combine window scores per label.")]
ActivationOpt = Annotated[
    Activation | None,
    typer.Option(
        "--activation",
        help="Logits to scores (default: from the model: sigmoid for multi-label).",
    ),
]
Include = Annotated[
    list[str],
    typer.Option(
        "--include",
        metavar="LABEL",
        help="Only report this label (repeatable, any case).",
    ),
]
Exclude = Annotated[
    list[str],
    typer.Option(
        "--exclude",
        metavar="LABEL",
        help="Never report this label (repeatable, any case).",
    ),
]
Timeline = Annotated[bool, typer.Option("--timeline", help="Also report labels per window with start/end times.")]
Merge = Annotated[
    bool,
    typer.Option(
        "--merge",
        help="Join consecutive windows carrying a label into one event (start, end, label, score); implies --timeline.",
    ),
]
AllScores = Annotated[
    bool,
    typer.Option(
        "--all-scores",
        help="Every label's score: one CSV column per label; 'scores' in JSON.",
    ),
]
FrontendOpt = Annotated[
    FeatureFrontend,
    typer.Option(
        "--frontend",
        help="transformers: ASTFeatureExtractor's features; authors: each window's waveform mean removed "
        "first, as the authors' loader does.",
    ),
]
Channel = Annotated[
    str,
    typer.Option(
        "--channel",
        metavar="CHANNEL",
        help="Downmix: 'mean' of all channels, or a channel number from 0.",
    ),
]

# -- outputs --------------------------------------------------------------------------------------
TagFormat = Annotated[
    RecordFormat | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format (default: table at a terminal, else jsonl).",
    ),
]

TagPlot = Annotated[
    str | None,
    typer.Option(
        "--plot",
        metavar="FILE.png",
        help="Also draw the input's log-mel spectrogram with its top labels' scores over time into this "
        "PNG (one input; needs matplotlib).",
    ),
]

# -- embed ----------------------------------------------------------------------------------------
EmbedOutput = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        metavar="OUT",
        show_default=False,
        help="OUT.jsonl, OUT.npy (files x D) or OUT.npz; '-': JSON Lines on stdout.",
    ),
]
EmbedTimeline = Annotated[
    bool,
    typer.Option(
        "--timeline",
        help="Also the embedding of every window, with start/end times (jsonl, npz).",
    ),
]
