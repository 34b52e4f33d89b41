"""From per-window scores to the JSON record every output format is made of (see README, "JSON record"):
``{"path", "duration_s", "labels": [{"label", "index", "score"}], "windows"?, "scores"?, "events"?, "error"?}``.

The scores are aggregated over windows, masked by ``--include``/``--exclude``, cut by ``--threshold``
or each label's own (``--thresholds``) and ``--top``, and rounded to ``SCORE_DECIMALS``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .errors import UsageError
from .features import FRAMES_PER_SECOND
from .options import Aggregate, TagOptions

SCORE_DECIMALS = 6
SCORE_HALF_ULP = 0.5 * 10**-SCORE_DECIMALS


class ScoreRows:
    """The per-window score rows of one input in one (capacity, C) buffer that doubles as it fills.

    Kept as a (C,) tensor a window, the rows of a long recording were many small long-lived blocks
    among the freed activations of later windows, which the heap then could not hand out whole again:
    the memory of a long ``ast tag`` grew with every window (CHANGELOG, benchmarks/long_recording.py)."""

    def __init__(self) -> None:
        self._buf: torch.Tensor | None = None
        self._n = 0

    def extend(self, rows: torch.Tensor) -> None:
        """Append (B, C) rows."""
        need = self._n + len(rows)
        if self._buf is None or need > len(self._buf):
            grown = torch.empty(max(need, 16, 2 * self._n), rows.shape[1], dtype=rows.dtype)
            if self._n and self._buf is not None:  # rows so far (_n > 0 means there is a buffer)
                grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = rows
        self._n = need

    def append(self, row: torch.Tensor) -> None:
        self.extend(row[None])

    def rows(self) -> torch.Tensor:
        """(W, C): a view of the rows so far."""
        return self._buf[: self._n] if self._buf is not None else torch.zeros(0, 0)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index):
        return self.rows()[index]

    def __iter__(self):
        return iter(self.rows())


@dataclass
class FileResult:
    """Per-window scores of one input, turned into the JSON record every output format is made from."""

    path: str
    duration_s: float = 0.0
    starts: list[int] = field(default_factory=list)
    scores: ScoreRows | list[torch.Tensor] = field(default_factory=ScoreRows)  # (C,) per window
    error: str | None = None


def label_mask(labels: Sequence[str], include: Sequence[str], exclude: Sequence[str]) -> torch.Tensor:
    """(C,) bool: which labels may be reported. Names match case-insensitively; an unknown name is a
    UsageError that suggests the closest ones."""
    mask = torch.zeros(len(labels), dtype=torch.bool) if include else torch.ones(len(labels), dtype=torch.bool)
    index = _index(labels)
    for name in include:
        mask[_lookup(index, labels, name)] = True
    for name in exclude:
        mask[_lookup(index, labels, name)] = False
    return mask


def _index(labels: Sequence[str]) -> dict[str, int]:
    """Each label's position by its lower-case name, built once for a run's lookups."""
    return {label.lower(): i for i, label in enumerate(labels)}


def _lookup(index: dict[str, int], labels: Sequence[str], name: str, where: str = "") -> int:
    """The index of label ``name`` (any case); an unknown one is a UsageError naming the closest."""
    if name.lower() in index:
        return index[name.lower()]
    raise UsageError(f"{where}unknown label {name!r}", hint=closest_labels(name, labels, "see 'ast labels'"))


def closest_labels(name: str, labels: Sequence[str], otherwise: str) -> str:
    """The hint for an unknown label name: up to three of ``labels`` that it resembles (any case), else
    ``otherwise``."""
    spelled = {label.lower(): label for label in labels}
    close = difflib.get_close_matches(name.lower(), list(spelled), n=3)
    return ("did you mean " + ", ".join(repr(spelled[c]) for c in close) + "?") if close else otherwise


def label_thresholds(labels: Sequence[str], options: TagOptions) -> torch.Tensor | None:
    """(C,) the score at or above which each label is reported: its own (``--thresholds``), else
    ``--threshold``, else -inf (always); None when neither is given. A label of the file the model
    does not have is a UsageError that suggests the closest ones."""
    if options.thresholds is None and options.threshold is None:
        return None
    default = -math.inf if options.threshold is None else options.threshold
    cut = torch.full((len(labels),), default, dtype=torch.float64)
    if options.thresholds is not None:
        index = _index(labels)
        for name, value in options.thresholds.per_label.items():
            cut[_lookup(index, labels, name, f"{options.thresholds.source}: ")] = value
    return cut


class RecordMaker:
    """Turns ``FileResult`` s into records for one run's labels and options (``window``: the window
    length in frames, for the end times of --timeline)."""

    def __init__(self, labels: Sequence[str], options: TagOptions, window: int):
        self.labels = list(labels)
        self.options = options
        self.window = window
        self.mask = label_mask(self.labels, options.include, options.exclude)
        self.cut = label_thresholds(self.labels, options)

    @property
    def score_columns(self) -> list[str] | None:
        """The labels of the per-label columns of --all-scores (None without it)."""
        if not self.options.all_scores:
            return None
        return [label for label, keep in zip(self.labels, self.mask.tolist(), strict=True) if keep]

    def record(self, result: FileResult) -> dict:
        """The JSON record: path, duration_s, labels (windows with --timeline, scores with --all-scores,
        events with --merge, error on failure)."""
        if result.error is not None:
            return {"path": result.path, "duration_s": None, "labels": [], "error": result.error}
        options = self.options
        record: dict = {"path": result.path, "duration_s": round(result.duration_s, 3)}
        stacked = result.scores.rows() if isinstance(result.scores, ScoreRows) else torch.stack(result.scores)  # (W, C)
        if not bool(torch.isfinite(stacked).all()):  # never a NaN score in an output: the file fails, saying why
            why = "NaN or inf in its weights, or an overflow at reduced precision"
            error = f"{result.path}: the model gave NaN or infinite scores ({why})"
            return {"path": result.path, "duration_s": None, "labels": [], "error": error}
        overall = stacked.amax(0) if options.aggregate == Aggregate.max else stacked.mean(0)
        record["labels"] = self.select(overall)
        if options.all_scores:
            record["scores"] = self.all_scores(overall)
        if options.timeline:
            record["windows"] = []
            for start, scores in zip(result.starts, result.scores, strict=True):
                item = {
                    "start_s": round(start / FRAMES_PER_SECOND, 3),
                    "end_s": round(min((start + self.window) / FRAMES_PER_SECOND, result.duration_s), 3),
                    "labels": self.select(scores),
                }
                if options.all_scores:
                    item["scores"] = self.all_scores(scores)
                record["windows"].append(item)
        if options.merge:
            record["events"] = merge_events(record["windows"])
        return record

    def all_scores(self, scores: torch.Tensor) -> dict[str, float]:
        return {
            self.labels[i]: round(float(scores[i]), SCORE_DECIMALS) for i in torch.nonzero(self.mask).flatten().tolist()
        }

    def select(self, scores: torch.Tensor) -> list[dict]:
        keep = self.mask.clone()
        if self.cut is not None:
            # scores are reported to 6 decimals: a threshold equal to a reported score keeps it
            keep &= scores >= self.cut - SCORE_HALF_ULP
        idx = torch.nonzero(keep).flatten()
        order = idx[torch.argsort(scores[idx], descending=True, stable=True)]
        if self.options.top:
            order = order[: self.options.top]
        return [
            {"label": self.labels[i], "index": int(i), "score": round(float(scores[i]), SCORE_DECIMALS)}
            for i in order.tolist()
        ]


def merge_events(windows: list[dict]) -> list[dict]:
    """Events from the per-window selections: a label reported in consecutive windows is one event,
    from the first window's start to the last one's end, scored with its highest window score."""
    events: list[dict] = []
    open_events: dict[int, dict] = {}  # label index -> the event it is in, while it goes on
    for w in windows:
        current = {item["index"]: item for item in w["labels"]}
        for index in [i for i in open_events if i not in current]:
            del open_events[index]
        for index, item in current.items():
            event = open_events.get(index)
            if event is None:
                event = {
                    "label": item["label"],
                    "index": index,
                    "start_s": w["start_s"],
                    "end_s": w["end_s"],
                    "score": item["score"],
                }
                open_events[index] = event
                events.append(event)
            else:
                event["end_s"] = max(event["end_s"], w["end_s"])
                event["score"] = max(event["score"], item["score"])
    return sorted(events, key=lambda e: (e["start_s"], -e["score"], e["index"]))
