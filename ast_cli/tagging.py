"""``ast tag``: files in order, each read to its end, one record each, written as it is ready; at a
terminal, bars of files and of a long file's seconds; with ``plot``, the picture of the one recording.

``ast batch`` (``batch.py``) is the same job for collections: folders, resume, workers, sinks.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO

import torch

from . import decoders, plots, targets
from .errors import AudioError, Interrupted, UsageError
from .features import FRAMES_PER_SECOND
from .inference import Tagger
from .options import RecordFormat, TagOptions
from .progress import TagBars, cleared, logging_above
from .records import FileResult, ScoreRows
from .windows import Window
from .writers import get_writer

_log = logging.getLogger(__name__)  # --debug shows the traceback of each file that failed


def tag_files(
    tagger: Tagger,
    sources: Iterable[str],
    options: TagOptions,
    bars: TagBars | None = None,
    plot: str | None = None,
) -> Iterator[dict]:
    """Records of several inputs in order; an input that cannot be decoded gets a record with ``error``.
    Bad --window/--hop and unknown --include/--exclude labels fail before any work. ``bars`` are told
    of each file's seconds; ``plot`` is drawn of each input that was tagged (one, as ``run_tag`` checks)."""
    maker = tagger.record_maker(options)
    for source in sources:
        strip = plots.FrameStrip() if plot else None
        if bars is not None:
            bars.start(source, _seconds(source) if bars.shown else None)
        watch = _watch(bars, strip) if (bars is not None and bars.shown) or strip is not None else None
        try:
            result = tagger.run(source, options, watch=watch)
        except AudioError as exc:
            _log.debug("%s", exc, exc_info=True)
            result = FileResult(path=source, error=str(exc))
        record = maker.record(result)
        if bars is not None:
            bars.done()
        if plot and strip is not None and "error" not in record:
            _draw(plot, strip, result, record, maker.window)
        yield record


def run_tag(
    tagger: Tagger,
    sources: Sequence[str],
    options: TagOptions,
    *,
    fmt: RecordFormat,
    stream: IO[str],
    on_error: Callable[[str], None],
    plot: str | None = None,
    progress: bool = False,
) -> int:
    """Tag ``sources`` into ``stream`` in ``fmt``, telling ``on_error`` of each file that failed;
    returns how many failed. Ctrl-C still leaves a valid document (a JSON array is closed). ``plot``:
    a PNG of the one input's spectrogram and its labels' scores over time (matplotlib, else one line
    says how to get it). ``progress``: bars on stderr at a terminal (``TagBars``)."""
    draw = _plot_target(plot, sources)
    maker = tagger.record_maker(options)  # unknown labels fail before the output is started
    columns = options.top or len(tagger.labels)
    writer = get_writer(fmt, stream, columns=columns, timeline=options.timeline, score_columns=maker.score_columns)
    bars = TagBars(len(sources), enabled=progress)
    failed = done = 0
    try:
        with logging_above(bars.shown):
            for record in tag_files(tagger, sources, options, bars, draw):
                with cleared() if bars.shown else contextlib.nullcontext():
                    if "error" in record:
                        failed += 1
                        on_error(record["error"])
                    done += 1  # counted before the write: a record being written when Ctrl-C comes is done
                    writer.write(record)
    except KeyboardInterrupt:
        bars.close()
        writer.close()
        raise Interrupted(f"interrupted after {done} of {len(sources)} file(s)") from None
    finally:
        bars.close()
    writer.close()
    return failed


# -- progress and the picture -----------------------------------------------------------------------
def _seconds(source: str) -> float | None:
    """A file's length from its header, for its bar (None for standard input, or when only reading tells)."""
    if source == decoders.STDIN:
        return None
    try:
        decoder = decoders.open_input(source)
    except AudioError:
        return None  # the run itself says what is wrong with it
    decoder.close()
    return decoder.info.duration_s


def _watch(bars: TagBars | None, strip: plots.FrameStrip | None) -> Callable[[Window], None]:
    def watch(window: Window) -> None:
        if bars is not None:
            bars.reached((window.start + window.frames) / FRAMES_PER_SECOND)
        if strip is not None:
            strip.add(window.start, window.features[: window.frames].float().numpy())

    return watch


def _plot_target(plot: str | None, sources: Sequence[str]) -> str | None:
    """``--plot`` checked before any work: one input, a folder that exists, not over an input; None
    when there is nothing to draw (no --plot, or no matplotlib: said once)."""
    if not plot:
        return None
    if len(sources) != 1:
        raise UsageError(
            f"--plot draws one recording, got {len(sources)} inputs",
            hint='tag one file at a time with --plot: for f in *.wav; do ast tag "$f" --plot "${f%.*}.png"; done',
        )
    folder = os.path.dirname(plot) or "."
    if not os.path.isdir(folder):
        raise UsageError(f"--plot {plot}: no such folder {folder}")
    targets.refuse_overlap([plot], sources)
    return plot if plots.available() else None


def _draw(plot: str, strip: plots.FrameStrip, result: FileResult, record: dict, window: int) -> None:
    """The picture of one tagged input: its spectrogram, and the scores of the labels it reports
    (at most ``plots.TAG_LABELS``) in each window of ``window`` frames."""
    shown = record["labels"][: plots.TAG_LABELS]
    rows = result.scores.rows() if isinstance(result.scores, ScoreRows) else torch.stack(result.scores)  # (W, C)
    spans = [
        (start / FRAMES_PER_SECOND, min((start + window) / FRAMES_PER_SECOND, result.duration_s))
        for start in result.starts
    ]
    plots.tag_picture(
        strip,
        seconds=result.duration_s,
        windows=spans,
        scores=rows[:, [item["index"] for item in shown]].numpy(),
        labels=[item["label"] for item in shown],
        path=plot,
        title=f"{os.path.basename(result.path) or result.path} ({result.duration_s:.1f} s)",
    )
