"""``ast clips``: the audio of each detection cut into its own file, to listen back to what was tagged.

The detections (``detections.py``) are chosen (score, labels, the best N a label), named
``OUT/LABEL/SCORE_STEM_START-END.wav`` (the detection's times, in seconds), and cut with ``pad``
seconds either side, clamped at the file's edges: one pass over each source, decoded as ``ast tag``
decodes it (``audio.AudioReader``: any format we read, downmixed), written as 16-bit WAV at the
source's own rate. ``OUT/clips.csv`` lists what was cut. No file is replaced without ``force``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import audio, targets
from .detections import Detection, read_detections, select
from .errors import AudioError, InvalidValue, OutputExistsError, UsageError
from .files import AtomicPath, atomic_open
from .progress import bar, cleared

MANIFEST = "clips.csv"
MANIFEST_COLUMNS = ["clip", "source", "label", "score", "start_s", "end_s", "clip_start_s", "clip_end_s"]
UNSAFE = re.compile(r'[\x00-\x1f<>:"/\\|?*]')  # not in a file name on Linux, macOS or Windows
_log = logging.getLogger(__name__)  # info: how many clips were cut, and where


@dataclass(frozen=True, kw_only=True)
class ClipOptions:
    """What ``cut_clips`` cuts: ``pad`` seconds either side of each detection at least ``min_score``,
    of the labels in ``include`` (all when empty) but not ``exclude``, at most ``max_per_label`` a
    label (its best); ``root``: the folder the records' relative paths are under."""

    pad: float = 0.0
    min_score: float | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_per_label: int | None = None
    channel: str | int = "mean"
    root: str | None = None
    force: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pad) and self.pad >= 0):
            raise InvalidValue("pad", f"must be 0 or more seconds, got {self.pad}")
        if self.max_per_label is not None and self.max_per_label < 1:
            raise InvalidValue("max_per_label", f"must be 1 or more, got {self.max_per_label}")


@dataclass
class Clip:
    """One detection's clip: where it goes and the seconds it spans (before clamping at the file's end)."""

    detection: Detection
    path: Path
    start_s: float
    end_s: float
    parts: list[np.ndarray] = field(default_factory=list)
    written: tuple[int, int, int] | None = None  # (rate, first sample, samples) once the file is in place


def cut_clips(results: str, out: str, options: ClipOptions, *, on_error: Callable[[str], None]) -> int:
    """Cut the clips of ``results`` (an output of ``ast tag``/``ast batch``; ``-``: standard input) into
    the folder ``out`` with ``OUT/clips.csv``; ``on_error`` hears of each source that failed, and the
    others are still cut. Returns how many sources failed."""
    text = sys.stdin.read() if results == "-" else _read(results)
    chosen = select(
        read_detections(text, "standard input" if results == "-" else results),
        min_score=options.min_score,
        include=options.include,
        exclude=options.exclude,
        max_per_label=options.max_per_label,
    )
    plan = _plan(chosen, Path(out), options)
    manifest = Path(out) / MANIFEST
    _refuse_existing([manifest, *(clip.path for clips in plan.values() for clip in clips)], options.force)
    failed, rows = 0, []
    for source, clips in bar(
        plan.items(), total=len(plan), desc="sources", enabled=None if options.progress else False
    ):
        try:
            rows += _cut(source, clips, options.channel)
        except AudioError as exc:
            failed += 1
            with cleared():
                on_error(str(exc))
            rows += [_row(c, *c.written) for c in clips if c.written]
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(manifest, newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    _log.info("%d clip(s) of %d source(s) in %s (list: %s)", len(rows), len(plan) - failed, out, manifest)
    return failed


def _read(results: str) -> str:
    try:
        with open(results, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise UsageError(f"{results}: no such file", hint="give the output of 'ast tag' or 'ast batch'") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{results}: cannot read it ({exc})", hint="give the output of 'ast tag'") from None


def _plan(chosen: list[Detection], out: Path, options: ClipOptions) -> dict[str, list[Clip]]:
    """Each source's clips (a source as found: the record's path, under ``root`` when relative), in
    order of their start; names made unique with ``_2``, ``_3`` where two would be the same."""
    plan: dict[str, list[Clip]] = {}
    taken: set[Path] = set()
    for d in chosen:
        source = (
            d.path if d.path == "-" or os.path.isabs(d.path) or not options.root else os.path.join(options.root, d.path)
        )
        stem = os.path.splitext(os.path.basename(d.path))[0] or "audio"
        name = f"{d.score:.3f}_{_safe(stem)}_{d.start_s:.2f}-{d.end_s:.2f}"
        path, n = out / _safe(d.label) / f"{name}.wav", 1
        while path in taken:
            n += 1
            path = out / _safe(d.label) / f"{name}_{n}.wav"
        taken.add(path)
        clip = Clip(d, path, max(0.0, d.start_s - options.pad), d.end_s + options.pad)
        plan.setdefault(source, []).append(clip)
    for clips in plan.values():
        clips.sort(key=lambda c: c.start_s)
    return plan


def _safe(name: str) -> str:
    """``name`` as one file name: separators and characters some systems refuse become ``_``."""
    return UNSAFE.sub("_", name).strip(" .") or "_"


def _refuse_existing(paths: list[Path], force: bool) -> None:
    if force:
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        raise OutputExistsError(
            f"{existing[0]}: exists ({len(existing)} of the {len(paths)} files to write do); nothing was written",
            hint="use --force to replace them, or another -o folder",
        )


def _cut(source: str, clips: list[Clip], channel: str | int) -> list[list[object]]:
    """One pass over ``source``: each clip's samples gathered from the blocks it overlaps, written
    when its end is reached (or the file's). The rows of the manifest for the clips written."""
    if source == "-":
        raise AudioError("a record of standard input ('-') has no file to cut from", hint="tag files, not a stream")
    targets.refuse_overlap([c.path for c in clips], [source])
    rows: list[list[object]] = []
    with audio.AudioReader(source, channel) as reader:
        rate = reader.info.sample_rate
        spans = [(round(c.start_s * rate), round(c.end_s * rate)) for c in clips]
        open_ = 0  # clips before this one are written
        offset = 0  # sample index of the block's first sample
        for block in reader.blocks():
            end = offset + len(block)
            for clip, (first, last) in zip(clips[open_:], spans[open_:], strict=True):
                if first >= end:
                    break
                if last > offset:
                    clip.parts.append(block[max(first, offset) - offset : min(last, end) - offset])
            while open_ < len(clips) and spans[open_][1] <= end:
                rows.append(_write(clips[open_], rate, spans[open_][0]))
                open_ += 1
            offset = end
            if open_ == len(clips):
                break
        for clip, (first, _) in zip(clips[open_:], spans[open_:], strict=True):
            if clip.parts:
                rows.append(_write(clip, rate, first))
        missing = [c for c in clips if c.written is None]
    if missing:  # the source is shorter than its record says: what it has was cut, the rest is an error
        raise AudioError(
            f"{source}: ends at {offset / rate:.2f} s, before the detection at {missing[0].detection.start_s:.2f} s",
            hint="was it changed since it was tagged?",
        )
    return rows


def _write(clip: Clip, rate: int, first: int) -> list[object]:
    """The clip as 16-bit WAV (samples beyond full scale clipped, as any 16-bit export does); its row."""
    import soundfile as sf

    samples = np.clip(np.concatenate(clip.parts) if clip.parts else np.zeros(0, np.float32), -1.0, 1.0)
    clip.parts = []
    clip.path.parent.mkdir(parents=True, exist_ok=True)
    with AtomicPath(clip.path) as target:
        sf.write(target.tmp, samples, rate, subtype="PCM_16", format="WAV")
    clip.written = (rate, first, len(samples))
    return _row(clip, *clip.written)


def _row(clip: Clip, rate: int, first: int, samples: int) -> list[object]:
    d = clip.detection
    return [
        clip.path,
        d.path,
        d.label,
        d.score,
        d.start_s,
        d.end_s,
        round(first / rate, 3),
        round((first + samples) / rate, 3),
    ]
