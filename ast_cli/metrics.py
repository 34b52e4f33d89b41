"""Scores of a classifier on labelled clips, as the AST authors compute them (no sklearn, no scipy), and
the per-label thresholds ``ast eval --write-thresholds`` chooses.

Single-label: accuracy, macro-F1, per-class accuracy (recall) and the confusion matrix.
Multi-label: mAP, mAUC and d-prime, the authors' ``src/utilities/stats.py`` and ``traintest.py``:
per class sklearn's ``average_precision_score`` and ``roc_auc_score``; mAP and mAUC their means over
classes; d-prime ``sqrt(2) * Phi^-1(mAUC)`` (of the mean AUC, not a mean of per-class d-primes).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


# -- single-label ------------------------------------------------------------------------------
def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(targets, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix


def single_label(scores: np.ndarray | torch.Tensor, targets: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """``scores`` (N, C) logits or probabilities, ``targets`` (N,) class ids.

    Macro-F1 averages over the classes that occur as truth or prediction (sklearn's default, which
    neither rewards nor punishes classes absent from the data); per-class rows list the same classes.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    predictions = scores.argmax(axis=1)
    matrix = confusion_matrix(targets, predictions, len(labels))
    tp = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    present = np.flatnonzero((support > 0) | (predicted > 0))
    f1 = 2 * tp / np.maximum(support + predicted, 1)  # 2tp / (2tp + fp + fn)
    per_class = [
        {
            "label": labels[i],
            "support": int(support[i]),
            "accuracy": float(tp[i] / support[i]) if support[i] else None,
            "f1": float(f1[i]),
        }
        for i in present
    ]
    return {
        "clips": int(len(targets)),
        "accuracy": float((predictions == targets).mean()) if len(targets) else 0.0,
        "macro_f1": float(f1[present].mean()) if len(present) else 0.0,
        "per_class": per_class,
        "confusion_matrix": {
            "labels": [labels[i] for i in present],
            "matrix": matrix[np.ix_(present, present)].tolist(),
        },
    }


# -- multi-label -------------------------------------------------------------------------------
def _ranked(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest first (ties form one step)."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each run of equal scores
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    return tps.astype(np.float64), fps.astype(np.float64)


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """sklearn's ``average_precision_score``: sum over thresholds of (R_n - R_{n-1}) * P_n (no interpolation)."""
    y = np.asarray(y, dtype=np.float64) > 0.5
    tps, fps = _ranked(y, np.asarray(s, dtype=np.float64))
    positives = tps[-1]
    if positives == 0:
        return math.nan
    precision = tps / (tps + fps)
    recall = tps / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """sklearn's ``roc_auc_score``: trapezoidal area under the ROC curve through every distinct score."""
    y = np.asarray(y, dtype=np.float64) > 0.5
    tps, fps = _ranked(y, np.asarray(s, dtype=np.float64))
    if tps[-1] == 0 or fps[-1] == 0:
        return math.nan
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def d_prime(auc: float) -> float:
    """The authors' d-prime: sqrt(2) * inverse standard normal CDF of an AUC."""
    return float(torch.special.ndtri(torch.tensor(auc, dtype=torch.float64)) * math.sqrt(2.0))


def multi_label(scores: np.ndarray | torch.Tensor, targets: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """``scores`` (N, C) probabilities (or logits: only their order matters), ``targets`` (N, C) 0/1.

    A class without positives has no AP and one without negatives no AUC (sklearn raises or warns);
    the means are over the classes where each is defined, and ``classes_scored`` says how many.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    per_class: list[dict[str, Any]] = []
    for k, label in enumerate(labels):
        positives = int((targets[:, k] > 0.5).sum())
        per_class.append(
            {
                "label": label,
                "positives": positives,
                "ap": average_precision(targets[:, k], scores[:, k]),
                "auc": roc_auc(targets[:, k], scores[:, k]),
            }
        )
    aps = [c["ap"] for c in per_class if not math.isnan(c["ap"])]
    aucs = [c["auc"] for c in per_class if not math.isnan(c["auc"])]
    mauc = float(np.mean(aucs)) if aucs else math.nan
    per_class = [c for c in per_class if c["positives"]]
    return {
        "clips": int(len(targets)),
        "mAP": float(np.mean(aps)) if aps else math.nan,
        "mAUC": mauc,
        "d_prime": d_prime(mauc) if aucs else math.nan,
        "classes_scored": len(aps),
        "per_class": [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in c.items()} for c in per_class
        ],
    }


# -- decisions ---------------------------------------------------------------------------------
def best_thresholds(
    scores: np.ndarray | torch.Tensor, targets: np.ndarray, labels: list[str], target_precision: float | None = None
) -> dict[str, dict[str, Any]]:
    """Per label, the score at or above which it is best reported: the one of highest F1 or, with
    ``target_precision``, the lowest whose precision reaches it (the most recall at that precision).

    ``scores`` (N, C) as ``ast tag`` reports them, ``targets`` (N, C) 0/1. The candidates are the scores
    themselves, as sklearn's ``precision_recall_curve`` takes them; the threshold returned lies halfway
    between the chosen score and the next lower one. A label without positives, or
    whose target precision no threshold reaches, gets ``threshold`` None."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64) > 0.5
    chosen: dict[str, dict[str, Any]] = {}
    for k, label in enumerate(labels):
        y, s = targets[:, k], scores[:, k]
        positives = int(y.sum())
        row: dict[str, Any] = {"threshold": None, "f1": None, "precision": None, "recall": None, "support": positives}
        if positives:
            order = np.argsort(-s, kind="mergesort")
            last = np.r_[np.flatnonzero(np.diff(s[order])), len(s) - 1]
            tps, fps = _ranked(y, s)
            at = s[order][last]  # the score of each step, highest first
            precision, recall = tps / (tps + fps), tps / positives
            f1 = 2 * tps / (tps + fps + positives)
            if target_precision is None:
                best = int(np.argmax(f1))  # the first (highest) threshold of the best F1
            else:
                reached = np.flatnonzero(precision >= target_precision - 1e-12)
                best = int(reached[-1]) if len(reached) else -1
            if best >= 0:
                # halfway to the next lower score: the same decisions on these clips, and a margin for others
                below = at[best + 1] if best + 1 < len(at) else at[best]
                row.update(
                    threshold=float((at[best] + below) / 2),
                    f1=float(f1[best]),
                    precision=float(precision[best]),
                    recall=float(recall[best]),
                )
        chosen[label] = row
    return chosen


def f1_at(scores: np.ndarray, targets: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """(C,) F1 of each label reported where its score is at or above ``cut`` (C,) (NaN cut: never)."""
    predicted = np.asarray(scores, dtype=np.float64) >= np.asarray(cut, dtype=np.float64)[None]
    truth = np.asarray(targets, dtype=np.float64) > 0.5
    tp = (predicted & truth).sum(0)
    return 2 * tp / np.maximum(predicted.sum(0) + truth.sum(0), 1)


def main_metric(report: dict[str, Any]) -> tuple[str, float]:
    """The number that picks the epoch kept: accuracy (single-label) or mAP (multi-label), as the authors."""
    return ("mAP", report["mAP"]) if "mAP" in report else ("accuracy", report["accuracy"])


def standard_error(
    scores: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    multi_label: bool,
    *,
    rounds: int = 20,
    most: int = 2000,
    seed: int = 0,
) -> float:
    """The standard error of ``main_metric`` over these clips, as drawn from all the clips there could be:
    how far it moves from one validation set to another of the same size.

    Single-label (``targets`` (N,) class ids): accuracy is a proportion, ``sqrt(p (1 - p) / N)``.
    Multi-label (``targets`` (N, C) 0/1): mAP has no closed form; the bootstrap (Efron): the standard
    deviation of the mAP of ``rounds`` resamples with replacement, of at most ``most`` clips (a first draw
    without replacement above that), scaled by ``sqrt(m / N)``, as a standard error falls with the root of
    the sample size. Fixed ``seed``: every process of a run gets the same number.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    n = len(targets)
    if n < 2:
        return 0.0
    if not multi_label:
        p = float((scores.argmax(axis=1) == targets).mean())
        return math.sqrt(p * (1 - p) / n)
    rng = np.random.default_rng(seed)
    pool = rng.choice(n, most, replace=False) if n > most else np.arange(n)
    maps = []
    for _ in range(rounds):
        pick = rng.choice(pool, len(pool))
        aps = [average_precision(targets[pick, k], scores[pick, k]) for k in range(targets.shape[1])]
        aps = [a for a in aps if not math.isnan(a)]
        if aps:
            maps.append(float(np.mean(aps)))
    if len(maps) < 2:
        return 0.0
    return float(np.std(maps, ddof=1)) * math.sqrt(len(pool) / n)


# -- rendering ---------------------------------------------------------------------------------
def format_report(report: dict[str, Any]) -> str:
    """A plain-text summary for the terminal: the headline numbers, per-class rows, the confusion matrix."""
    lines = []
    if "mAP" in report:
        lines.append(
            f"clips {report['clips']}  mAP {_num(report['mAP'])}  mAUC {_num(report['mAUC'])}  "
            f"d-prime {_num(report['d_prime'])}"
        )
        width = max([len(c["label"]) for c in report["per_class"]] + [5])
        lines.append(f"{'label':<{width}}  positives      AP     AUC")
        for c in report["per_class"]:
            lines.append(f"{c['label']:<{width}}  {c['positives']:>9}  {_num(c['ap'])}  {_num(c['auc'])}")
        return "\n".join(lines)
    lines.append(f"clips {report['clips']}  accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}")
    width = max([len(c["label"]) for c in report["per_class"]] + [5])
    lines.append(f"{'label':<{width}}  support  accuracy      F1")
    for c in report["per_class"]:
        lines.append(f"{c['label']:<{width}}  {c['support']:>7}  {_num(c['accuracy']):>8}  {c['f1']:.4f}")
    cm = report["confusion_matrix"]
    if cm["labels"]:
        lines.append("confusion matrix (rows: true, columns: predicted)")
        cell = max(max(len(str(v)) for row in cm["matrix"] for v in row), 3)
        names = [name[:12] for name in cm["labels"]]
        w = max(len(n) for n in names)
        lines.append(" " * (w + 2) + " ".join(f"{n:>{max(cell, len(n))}}" for n in names))
        for name, row in zip(names, cm["matrix"], strict=True):
            lines.append(
                f"{name:<{w}}  " + " ".join(f"{v:>{max(cell, len(n))}}" for v, n in zip(row, names, strict=True))
            )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "   -  " if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
