"""``ast clips``: each detection of a tagging run cut into its own WAV file, to listen back to."""

from __future__ import annotations

from .. import process
from ..params.clips import AudioRoot, ClipExclude, ClipInclude, ClipsOut, MaxPerLabel, MinScore, Pad, Results
from ..params.common import Debug, Force, Quiet
from ..params.tagging import Channel
from .common import exit_with


def clips(
    results: Results,
    out: ClipsOut,
    pad: Pad = 0.0,
    min_score: MinScore = None,
    include: ClipInclude = [],
    exclude: ClipExclude = [],
    max_per_label: MaxPerLabel = None,
    root: AudioRoot = None,
    channel: Channel = "mean",
    force: Force = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Cut the audio of each detection in RESULTS (ast tag/batch with --timeline or --merge) into
    DIR/LABEL/SCORE_NAME_START-END.wav, 16-bit at the source's rate, listed in DIR/clips.csv.

    Examples:

      ast tag recordings/ --timeline --threshold 0.5 --format jsonl > tags.jsonl

      ast clips tags.jsonl -o clips/ --pad 1 --max-per-label 20

      ast batch recordings/ --merge --threshold 0.5 -o tags.csv && ast clips tags.csv -o dogs/ --include Dog
    """
    from ..clips import ClipOptions, cut_clips

    options = ClipOptions(
        pad=pad,
        min_score=min_score,
        include=tuple(include),
        exclude=tuple(exclude),
        max_per_label=max_per_label,
        channel=channel,
        root=root,
        force=force,
        progress=not quiet,
    )
    exit_with(cut_clips(results, out, options, on_error=process.error))
