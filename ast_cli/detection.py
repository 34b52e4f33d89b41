"""``ast eval --strong-labels``: event-level evaluation against strong labels (onset, offset, label).

The model tags each recording with sliding windows (``Tagger.run``, as ``ast tag --timeline``); the
overlapping windows become one gapless score timeline a file, each stretch of time scored with the
mean of the windows that cover it. ``sed_scores_eval`` (Ebbers et al., ICASSP 2022; the DCASE task 4
evaluation since 2023) computes every number from those timelines: collar-based (event-based) and
segment-based F1 (Mesaros et al., 2016) at the given thresholds, and PSDS (Bilen et al., ICASSP 2020)
over all thresholds. Nothing is counted by hand here.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .errors import UsageError
from .features import FRAMES_PER_SECOND
from .records import closest_labels
from .thresholds import Thresholds

_log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'ast-cli[sed]'"
DEFAULT_THRESHOLD = 0.5  # the score at which DCASE task 4 baselines binarise for F1
# DCASE task 4's event-based F1 (sed_eval t_collar=0.2, percentage_of_length=0.2) and segment-based F1
DEFAULT_COLLAR = 0.2  # seconds, onset and offset
DEFAULT_OFFSET_COLLAR_RATE = 0.2  # the offset collar is at least this share of the event's length
DEFAULT_SEGMENT = 1.0  # seconds
# PSDS scenario 1 of DCASE task 4 (2021-2024): detections must overlap their event by 70 % and the
# event be 70 % covered (dtc, gtc); no cross-trigger cost; alpha_st 1 subtracts the spread over
# classes; the area is taken up to 100 false positives an hour.
PSDS1 = {"dtc_threshold": 0.7, "gtc_threshold": 0.7, "cttc_threshold": None, "alpha_ct": 0.0, "alpha_st": 1.0}
PSDS_MAX_EFPR = 100.0
HEADER = ("filename", "onset", "offset", "event_label")  # the DCASE ground-truth TSV

Events = dict[str, list[tuple[float, float, str]]]  # file (relative to the folder) -> (onset, offset, label)


def library() -> ModuleType:
    """``sed_scores_eval``, or a UsageError saying how to install it."""
    try:
        with warnings.catch_warnings():  # dcase_util (via sed_eval) warns on importing pkg_resources
            warnings.simplefilter("ignore")
            import sed_scores_eval
    except ImportError as exc:
        raise UsageError(f"--strong-labels needs sed_scores_eval ({exc})", hint=INSTALL_HINT) from None
    return sed_scores_eval


def _label(name: str, labels: Sequence[str], where: str) -> str:
    """The model's spelling of ``name`` (any case); an unknown one is a UsageError naming the closest."""
    index = {label.lower(): label for label in labels}
    if name.lower() in index:
        return index[name.lower()]
    hint = closest_labels(name, labels, "see 'ast labels -m MODEL'")
    raise UsageError(f"{where}: label {name!r} is not one of the model's", hint=hint)


def read_strong_labels(path: str | os.PathLike, labels: Sequence[str]) -> Events:
    """A DCASE ground-truth TSV (``filename onset offset event_label``, the header optional) as
    {filename: [(onset, offset, label)]}, labels in the model's spelling. A line with the filename
    alone (or empty other fields) lists a file without events."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the strong labels ({exc})") from None
    events: Events = {}
    for number, line in enumerate(lines, 1):
        cells = [cell.strip() for cell in line.split("\t")]
        if not any(cells) or (number == 1 and tuple(c.lower() for c in cells[:4]) == HEADER):
            continue
        where = f"{path} line {number}"
        found = events.setdefault(cells[0], [])
        if not any(cells[1:]):
            continue
        if len(cells) != 4:
            raise UsageError(f"{where}: {len(cells)} tab-separated fields", hint="write filename, onset, offset, label")
        try:
            onset, offset = float(cells[1]), float(cells[2])
        except ValueError:
            raise UsageError(f"{where}: onset and offset must be seconds, got {cells[1]!r}, {cells[2]!r}") from None
        if not 0.0 <= onset < offset < float("inf"):
            raise UsageError(f"{where}: onset {onset} and offset {offset}: need 0 <= onset < offset")
        found.append((onset, offset, _label(cells[3], labels, where)))
    if not any(events.values()):
        raise UsageError(f"{path}: no events in it", hint="one 'filename<TAB>onset<TAB>offset<TAB>label' line an event")
    for name, rows in events.items():
        _refuse_connected(path, name, rows)
    return events


def _refuse_connected(path: str | os.PathLike, name: str, rows: list[tuple[float, float, str]]) -> None:
    """sed_scores_eval counts an event of a label once: two of a file that overlap or touch are one event."""
    last: dict[str, tuple[float, float, str]] = {}
    for event in sorted(rows):
        before = last.get(event[2])
        if before is not None and event[0] <= before[1]:
            raise UsageError(
                f"{path}: {name}: {event[2]!r} events {before[0]:g}-{before[1]:g} s and {event[0]:g}-{event[1]:g} s "
                "overlap or touch",
                hint="write them as one event",
            )
        if before is None or event[1] > before[1]:
            last[event[2]] = event


def timeline(
    starts: Sequence[int], window: int, duration_s: float, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gapless stretches of time from overlapping windows: (M + 1,) boundaries in seconds and (M, C)
    scores, each stretch's the mean over the windows covering it. ``starts`` and ``window`` in frames;
    ``scores`` (W, C) one row a window."""
    begin = np.asarray(starts, dtype=np.float64) / FRAMES_PER_SECOND  # (W,)
    end = np.minimum(begin + window / FRAMES_PER_SECOND, duration_s)
    end[end == end.max()] = duration_s  # the last frame's window also covers the audio's tail, under one frame
    bounds = np.unique(np.concatenate([begin, end, [duration_s]]))
    bounds = bounds[bounds <= duration_s]  # (M + 1,)
    covers = (begin[None, :] <= bounds[:-1, None]) & (end[None, :] >= bounds[1:, None])  # (M, W)
    if not covers.any(1).all():
        raise UsageError("--hop is longer than --window: time between windows would go unscored")
    return bounds, covers.astype(np.float64) @ scores / covers.sum(1, keepdims=True)


def score_events(
    scores: dict[str, Any],
    ground_truth: Events,
    durations: dict[str, float],
    thresholds: dict[str, float],
    *,
    collar: float,
    offset_collar_rate: float,
    segment: float,
) -> dict[str, Any]:
    """The report of ``sed_scores_eval`` on score DataFrames ({file: onset, offset, class columns}):
    collar-based and segment-based F1 at ``thresholds`` ({class: score}) and PSDS scenario 1."""
    sse = library()
    event = sse.collar_based.fscore(
        scores,
        ground_truth,
        thresholds,
        onset_collar=collar,
        offset_collar=collar,
        offset_collar_rate=offset_collar_rate,
    )
    segments = sse.segment_based.fscore(scores, ground_truth, durations, thresholds, segment_length=segment)
    psds, per_class_psds, *_ = sse.intersection_based.psds(
        scores, ground_truth, durations, **PSDS1, max_efpr=PSDS_MAX_EFPR
    )
    return {
        "event_based": {
            "onset_collar_s": collar,
            "offset_collar_s": collar,
            "offset_collar_rate": offset_collar_rate,
            **_f_scores(*event),
        },
        "segment_based": {"segment_s": segment, **_f_scores(*segments)},
        "psds1": {
            **PSDS1,
            "max_efpr_per_hour": PSDS_MAX_EFPR,
            "psds": float(psds),
            "per_class": {label: float(value) for label, value in per_class_psds.items()},
        },
    }


def _f_scores(f: dict, p: dict, r: dict, stats: dict) -> dict[str, Any]:
    """sed_scores_eval's (f, precision, recall, stats) dicts as one report: micro (overall), macro, per class."""
    per_class = [
        {
            "label": label,
            "f1": float(f[label]),
            "precision": float(p[label]),
            "recall": float(r[label]),
            "tp": int(row["tps"]),
            "fp": int(row["fps"]),
            "references": int(row["n_ref"]),
        }
        for label, row in stats.items()
    ]
    micro, macro = "micro_average", "macro_average"
    return {
        "f1": float(f[micro]),
        "precision": float(p[micro]),
        "recall": float(r[micro]),
        "macro_f1": float(f[macro]),
        "per_class": per_class,
    }


def audio_files(audio_dir: str, ground_truth: Events, strong_labels: str | os.PathLike) -> list[str]:
    """The audio files under ``audio_dir`` (relative paths, sorted): every one is evaluated, those the
    strong labels do not name as files without events; a named file missing is a UsageError."""
    from .inputs import walk

    root = Path(audio_dir)
    if not root.is_dir():
        raise UsageError(f"{audio_dir}: no such folder", hint="give the folder the strong labels' filenames are in")
    found = sorted(Path(path).relative_to(root).as_posix() for path in walk(str(root)))
    missing = sorted(set(ground_truth) - set(found))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise UsageError(
            f"{strong_labels}: {len(missing)} file(s) not found under {audio_dir}: {shown}",
            hint="filenames are relative to the audio folder",
        )
    return found


def class_thresholds(labels: Sequence[str], classes: Sequence[str], cut: Any) -> dict[str, float]:
    """{class: threshold} from ``records.label_thresholds``' (C,) cut over the model's labels."""
    position = {label: i for i, label in enumerate(labels)}
    return {label: float(cut[position[label]]) for label in classes}


def evaluate_events(
    spec: Any,
    audio_dir: str,
    strong_labels: str,
    *,
    threshold: float | None = None,
    thresholds: Thresholds | None = None,
    collar: float | None = None,
    offset_collar_rate: float | None = None,
    segment: float | None = None,
    window: float | None = None,
    hop: float | None = None,
) -> dict[str, Any]:
    """Event-level metrics of the model ``spec`` names (a ``ModelSpec`` or a source) on the audio files
    under ``audio_dir`` against ``strong_labels`` (a DCASE TSV). ``threshold`` (default 0.5) and
    ``thresholds`` (per label) make events of scores for F1; PSDS takes every threshold. ``collar``,
    ``offset_collar_rate`` and ``segment`` None: DCASE's (DEFAULT_*)."""
    from .inference import load_model
    from .options import TagOptions
    from .records import label_thresholds

    collar = DEFAULT_COLLAR if collar is None else collar
    offset_collar_rate = DEFAULT_OFFSET_COLLAR_RATE if offset_collar_rate is None else offset_collar_rate
    segment = DEFAULT_SEGMENT if segment is None else segment
    if not all(np.isfinite(v) and v >= 0 for v in (collar, offset_collar_rate)):
        raise UsageError(f"--collar {collar} and --offset-collar-rate {offset_collar_rate}: need numbers >= 0")
    if not (np.isfinite(segment) and segment > 0):
        raise UsageError(f"--segment must be a positive number of seconds, got {segment}")
    library()  # before the model loads: without the library, say so at once
    tagger = load_model(spec)
    default = DEFAULT_THRESHOLD if threshold is None else threshold
    options = TagOptions(window=window, hop=hop, threshold=default, thresholds=thresholds)
    tagger.record_maker(options)  # a thresholds file of other scores, or of unknown labels, fails here
    ground_truth = read_strong_labels(strong_labels, tagger.labels)
    files = audio_files(audio_dir, ground_truth, strong_labels)
    classes = [label for label in tagger.labels if any(e[2] == label for rows in ground_truth.values() for e in rows)]
    scores, durations = tag_timelines(tagger, audio_dir, files, options, classes)
    cut = class_thresholds(tagger.labels, classes, label_thresholds(tagger.labels, options))
    report = score_events(
        scores,
        {name: ground_truth.get(name, []) for name in files},
        durations,
        cut,
        collar=collar,
        offset_collar_rate=offset_collar_rate,
        segment=segment,
    )
    window_frames, hop_frames = tagger.window_hop_frames(options)
    return {
        "model": tagger.spec.source,
        "data": str(audio_dir),
        "strong_labels": str(strong_labels),
        "files": len(files),
        "events": sum(len(rows) for rows in ground_truth.values()),
        "window_s": window_frames / FRAMES_PER_SECOND,
        "hop_s": hop_frames / FRAMES_PER_SECOND,
        "thresholds": cut,
        **report,
    }


def tag_timelines(
    tagger: Any, audio_dir: str, files: Sequence[str], options: Any, classes: Sequence[str]
) -> tuple[dict[str, Any], dict[str, float]]:
    """Each file's score DataFrame (``sed_scores_eval``'s: onset, offset, one column a class) and duration."""
    create = library().base_modules.scores.create_score_dataframe
    columns = [tagger.labels.index(label) for label in classes]
    window = tagger.window_hop_frames(options)[0]
    scores, durations = {}, {}
    for name in files:
        result = tagger.run(str(Path(audio_dir) / name), options)  # an undecodable file fails the run
        rows = result.scores.rows().numpy()[:, columns].astype(np.float64)  # (W, K)
        if not np.isfinite(rows).all():
            raise UsageError(f"{result.path}: the model gave NaN or infinite scores", hint="try --precision fp32")
        bounds, stretches = timeline(result.starts, window, result.duration_s, rows)
        scores[name] = create(stretches, bounds, list(classes))
        durations[name] = result.duration_s
        _log.debug("%s: %d windows, %d stretches", name, len(rows), len(stretches))
    return scores, durations


def format_events(report: dict[str, Any]) -> str:
    """The table ``ast eval --strong-labels`` prints: the overall numbers, then one row a class."""
    event, segment, psds = report["event_based"], report["segment_based"], report["psds1"]
    lines = [
        f"files {report['files']}  events {report['events']}"
        f"  window {report['window_s']:g} s  hop {report['hop_s']:g} s",
        f"event-based (collar {event['onset_collar_s']:g} s, offset {event['offset_collar_rate']:g} of length)"
        f"  F1 {event['f1']:.4f}  macro-F1 {event['macro_f1']:.4f}",
        f"segment-based ({segment['segment_s']:g} s)  F1 {segment['f1']:.4f}  macro-F1 {segment['macro_f1']:.4f}",
        f"PSDS1 {psds['psds']:.4f}",
    ]
    width = max(len("label"), *(len(row["label"]) for row in event["per_class"]))
    lines.append(f"{'label':<{width}}  events  threshold  event-F1  segment-F1   PSDS1")
    for row, seg in zip(event["per_class"], segment["per_class"], strict=True):
        label = row["label"]
        lines.append(
            f"{label:<{width}}  {row['references']:>6}  {report['thresholds'][label]:>9.4f}"
            f"  {row['f1']:>8.4f}  {seg['f1']:>10.4f}  {psds['per_class'][label]:>6.4f}"
        )
    return "\n".join(lines)
