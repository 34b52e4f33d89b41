"""Pictures of a training run, of an evaluation and of a tagged recording, as PNG files (matplotlib,
the ``plot`` extra).

matplotlib is imported only when a picture is drawn, and only its object API (``Figure`` with the Agg
canvas): no pyplot, no global backend, no window. Without matplotlib ``available()`` says once on
stderr how to get it, and the caller goes on without pictures. Each figure has a fixed size in pixels
(``*_SIZE``, ``confusion_size``), written atomically.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import numpy as np

from . import targets
from .files import AtomicPath

DPI = 100
TRAINING_PNG, CONFUSION_PNG, AP_PNG = "training.png", "confusion.png", "per_class_ap.png"  # what ast finetune writes
TRAINING_SIZE = (1200, 450)  # pixels: loss, validation metric and learning rate per epoch, side by side
TAG_SIZE = (1200, 800)  # pixels: ast tag --plot, the spectrogram above the labels' scores
TAG_LABELS = 8  # at most this many labels' lines beneath the spectrogram: more are unreadable
AP_ROW = 22  # pixels per class of the per-class AP bars
INSTALL_HINT = "pip install 'ast-cli[plot]' (matplotlib)"
_log = logging.getLogger(__name__)  # warning: no pictures without matplotlib (once a process)
_warned = False


def available() -> bool:
    """Whether matplotlib can be imported; without it, one line on stderr (once a process) and False."""
    global _warned
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if not _warned:
            _log.warning("no pictures (training.png, confusion.png, --plot): they need matplotlib: %s", INSTALL_HINT)
            _warned = True
        return False
    return True


def confusion_size(classes: int) -> tuple[int, int]:
    """The confusion matrix's pixels: a cell of 40-ish pixels per class, 600 to 2400 a side."""
    side = max(600, min(2400, 200 + 40 * classes))
    return side, side


def ap_size(classes: int) -> tuple[int, int]:
    """The per-class AP bars' pixels: one row of ``AP_ROW`` per class (at least 400, at most 12000)."""
    return 900, max(400, min(12000, 120 + AP_ROW * classes))


def _figure(size: tuple[int, int]):
    from matplotlib.figure import Figure

    return Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)


def _save(fig, path: str | os.PathLike) -> None:
    """Atomically to a file; into a stream (a pipe, /dev/stdout) as it is, never replacing it."""
    if targets.target(path).stream:
        with targets.open_stream(os.fspath(path)) as f:
            fig.savefig(f, format="png", dpi=DPI)
        return
    with AtomicPath(path) as target:
        fig.savefig(target.tmp, format="png", dpi=DPI)


def training_curves(
    history: list[dict[str, Any]], metric: str, path: str | os.PathLike, kept: int | None = None
) -> None:
    """``metrics.jsonl`` as three panels: training and validation loss, the validation ``metric``
    (``val_accuracy`` or ``val_mAP``) with its highest epoch and the epoch ``kept`` (where another:
    a later one within one standard error), and the learning rate at each epoch's end."""
    fig = _figure(TRAINING_SIZE)
    loss, score, rate = fig.subplots(1, 3)
    epochs = [r["epoch"] for r in history]
    loss.plot(epochs, [r["train_loss"] for r in history], marker="o", label="training")
    loss.plot(epochs, [r["val_loss"] for r in history], marker="o", label="validation")
    loss.set_title("loss")
    loss.legend()
    values = [r.get(metric, math.nan) for r in history]
    score.plot(epochs, values, marker="o", color="tab:green")
    best = max(range(len(values)), key=lambda i: -math.inf if math.isnan(values[i]) else values[i])
    score.plot(
        [epochs[best]], [values[best]], marker="*", markersize=14, color="tab:red", label=f"best: epoch {epochs[best]}"
    )
    if kept is not None and kept != epochs[best] and kept in epochs:
        at, label = epochs.index(kept), f"kept: epoch {kept} (within one standard error)"
        score.plot([kept], [values[at]], marker="o", markersize=12, fillstyle="none", color="tab:red", label=label)
    score.set_title(metric.replace("val_", "validation "))
    score.legend()
    rate.plot(epochs, [r["lr"] for r in history], marker="o", color="tab:purple")
    rate.set_title("learning rate (end of epoch)")
    for ax in (loss, score, rate):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def confusion(report: dict[str, Any], path: str | os.PathLike, title: str = "confusion matrix") -> None:
    """A single-label report's confusion matrix (rows true, columns predicted), counts in the cells."""
    labels, matrix = report["confusion_matrix"]["labels"], report["confusion_matrix"]["matrix"]
    n = len(labels)
    fig = _figure(confusion_size(n))
    from matplotlib.ticker import MaxNLocator

    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    # the cells are counts of clips: whole ticks only (no 0.5 clips)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, ticks=MaxNLocator(integer=True))
    ax.set_xticks(range(n), labels, rotation=90 if n > 6 else 0)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max((max(row) for row in matrix), default=0)
    if n <= 40:
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(
                    j,
                    i,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if count > top / 2 else "black",
                )
    ax.set_title(f"{title} (accuracy {report['accuracy']:.3f}, {report['clips']} clips)")
    fig.tight_layout()
    _save(fig, path)


def ap_bars(report: dict[str, Any], path: str | os.PathLike) -> None:
    """A multi-label report's average precision per class, best first (classes without positives left out)."""
    rows = sorted(
        (r for r in report["per_class"] if r.get("ap") is not None and not math.isnan(r["ap"])), key=lambda r: -r["ap"]
    )
    fig = _figure(ap_size(len(rows)))
    ax = fig.subplots()
    ax.barh(range(len(rows)), [r["ap"] for r in rows], color="tab:blue")
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("average precision")
    ax.set_title(f"per-class AP (mAP {report['mAP']:.3f}, {len(rows)} classes)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def report_picture(report: dict[str, Any], path: str | os.PathLike) -> None:
    """``ast eval --plot``: the confusion matrix of single-label data, the per-class AP bars of multi-label data."""
    (ap_bars if "mAP" in report else confusion)(report, path)


class FrameStrip:
    """A recording's log-mel frames kept for its picture, at most ``MAX_COLUMNS`` columns whatever its
    length: past that, neighbouring columns are averaged in pairs, so a column is the mean of ``pool``
    frames (a power of two). Frames arrive window by window; overlapping frames are taken once."""

    MAX_COLUMNS = 4096  # about 3.4 columns a pixel of TAG_SIZE's width: detail enough, 2 MB of floats at most

    def __init__(self) -> None:
        self.pool = 1
        self.frames = 0  # frames taken so far
        self._columns: list[np.ndarray] = []  # (n, F) blocks of pooled columns
        self._count = 0  # columns in them
        self._pending: np.ndarray | None = None  # (< pool, F) frames of the column being filled

    def add(self, start: int, frames: np.ndarray) -> None:
        """``frames`` (n, F) from frame ``start``; a gap before it (a hop longer than the window) is blank."""
        if start > self.frames:
            frames = np.concatenate([np.full((start - self.frames, frames.shape[1]), np.nan, np.float32), frames])
            start = self.frames
        new = frames[self.frames - start :]
        if not len(new):
            return
        self.frames += len(new)
        buf = new if self._pending is None else np.concatenate([self._pending, new])
        whole = len(buf) // self.pool * self.pool
        if whole:
            self._columns.append(buf[:whole].reshape(-1, self.pool, buf.shape[1]).mean(1))  # (n / pool, F)
            self._count += whole // self.pool
        self._pending = buf[whole:] if whole < len(buf) else None
        while self._count > self.MAX_COLUMNS:
            self._halve()

    def _halve(self) -> None:
        cols = np.concatenate(self._columns)
        even = len(cols) // 2 * 2
        self._columns = [cols[:even].reshape(-1, 2, cols.shape[1]).mean(1)]
        self._count = even // 2
        if even < len(cols):  # the odd column goes back to the frames still being pooled
            odd = np.repeat(cols[even:], self.pool, axis=0)
            self._pending = odd if self._pending is None else np.concatenate([odd, self._pending])
        self.pool *= 2

    def image(self) -> np.ndarray:
        """(F, columns): low bins first, as ``imshow(origin='lower')`` draws them."""
        parts = list(self._columns)
        if self._pending is not None:
            parts.append(self._pending.mean(0, keepdims=True))
        if not parts:
            return np.zeros((1, 1), np.float32)
        return np.concatenate(parts).T


def tag_picture(
    strip: FrameStrip,
    *,
    seconds: float,
    windows: list[tuple[float, float]],
    scores: np.ndarray,
    labels: list[str],
    path: str | os.PathLike,
    title: str,
) -> None:
    """``ast tag --plot``: the log-mel spectrogram over the recording's ``seconds`` and, beneath it on
    the same time axis, each of ``labels``' score in every window ((start_s, end_s) in ``windows``;
    ``scores`` (W, len(labels))), at the window's centre, as PANNs' sound event detection plots show them."""
    fig = _figure(TAG_SIZE)
    spec, activity = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    image = strip.image()
    spec.imshow(image, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, image.shape[0]))
    spec.set_ylabel("mel bin")
    spec.set_title(title)
    centres = [(start + end) / 2 for start, end in windows]
    for k, label in enumerate(labels):
        activity.plot(centres, scores[:, k], marker="." if len(centres) < 50 else None, label=label)
    if labels:
        activity.legend(loc="upper right", fontsize=8, ncol=2 if len(labels) > 4 else 1)
    else:
        activity.text(0.5, 0.5, "no label reported", ha="center", va="center", transform=activity.transAxes)
    activity.set_xlim(0, max(seconds, 1e-3))
    activity.set_xlabel("time (s)")
    activity.set_ylabel("score (each window)")
    activity.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
