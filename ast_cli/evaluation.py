"""``ast eval``: score a checkpoint on labelled clips, with the metric code ``finetune`` validates with.

Each clip is one window of the model's input length (the first ``max_length`` frames, zero-padded),
as the authors evaluate; the scores are the model's logits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import data as D
from . import metrics, plots
from .devices import autocast
from .errors import InvalidValue, UsageError
from .spec import ModelSpec
from .targets import model_files, refuse_overlap
from .thresholds import write_thresholds as write_file

_log = logging.getLogger(__name__)


def predict(forward: Callable[[torch.Tensor], torch.Tensor], loader) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) float32 logits and (N, C) targets of every item of ``loader``, in its order; ``forward``
    maps a (B, T, F) batch to (B, C) float32 CPU logits (``Tagger.logits``, or ``model_forward``)."""
    outputs, targets = [], []
    for x, y in loader:
        outputs.append(forward(x))
        targets.append(y)
    return torch.cat(outputs), torch.cat(targets)


def model_forward(
    model: torch.nn.Module, device: torch.device, dtype: torch.dtype
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A model being trained as ``predict``'s forward: eval mode, no gradients, autocast to ``dtype``."""
    model.eval()

    @torch.no_grad()
    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, dtype):
            return model(x.to(device)).float().cpu()

    return forward


def scored(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> tuple[Any, Any]:
    """What ``metrics`` reads: sigmoid scores and 0/1 targets (multi-label), or logits and class ids."""
    if multi_label:
        return torch.sigmoid(logits).numpy(), (targets > 0.5).numpy()
    return logits.numpy(), targets.argmax(1).numpy()


def score(logits: torch.Tensor, targets: torch.Tensor, labels: list[str], multi_label: bool) -> dict[str, Any]:
    """The report of ``metrics``: mAP/mAUC/d-prime on sigmoid scores, or accuracy/F1 on the argmax."""
    report = metrics.multi_label if multi_label else metrics.single_label
    return report(*scored(logits, targets, multi_label), labels)


def evaluate(
    spec: ModelSpec | str,
    data_dir: str,
    *,
    labels_csv: str | None = None,
    batch_size: int = 16,
    plot: str | None = None,
    write_thresholds: str | None = None,
    target_precision: float | None = None,
) -> dict[str, Any]:
    """Metrics of the model ``spec`` names on a folder-per-class set (or ``labels_csv``, multi-label
    data), whose class names must be the model's labels. A plain string is a ``ModelSpec`` source.
    ``plot``: a PNG of the confusion matrix or the per-class AP (``plots.report_picture``), when
    matplotlib is installed (else one line says how to get it). ``write_thresholds``: a file of
    per-label thresholds (``thresholds.py``) chosen on these clips for the best F1, or for
    ``target_precision``; ``ast tag/batch/listen --thresholds`` apply it."""
    from .inference import load_model

    for flag, path in (("--plot", plot), ("--write-thresholds", write_thresholds)):
        if path and not Path(path).parent.is_dir():
            raise UsageError(f"{flag} {path}: no such folder {Path(path).parent}")
    if target_precision is not None and not 0.0 < target_precision <= 1.0:
        raise InvalidValue("target_precision", f"must be within (0, 1], got {target_precision}")
    source = spec if isinstance(spec, str) else spec.source
    written = [path for path in (plot, write_thresholds) if path]
    refuse_overlap(written, model_files(source, labels_csv))  # never over the model or the labels
    draw = bool(plot) and plots.available()  # before the wait: without matplotlib, say so at once
    tagger = load_model(spec)  # weights cast once; int8 quantized
    config, pre = tagger.config, tagger.preprocessor
    found = D.csv_labels(labels_csv, data_dir) if labels_csv else D.folder_classes(data_dir)
    found = D.relabel(found, config.labels, f"model {tagger.spec.source}")
    refuse_overlap(written, (clip.path for clip in found.clips))  # nor over a clip
    found, fbanks, _ = D.scan(found, config.num_mel_bins)
    mean, std = (pre.mean, pre.std) if pre.do_normalize else (0.0, 0.5)  # (x - 0) / (2 * 0.5) = x
    dataset = D.ClipDataset(found, config.max_length, mean, std, fbanks=fbanks, num_mel_bins=config.num_mel_bins)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    logits, targets = predict(tagger.logits, loader)
    multi = found.multi_label
    report = score(logits, targets, config.labels, multi)
    if draw and plot:
        plots.report_picture(report, plot)
    if write_thresholds:
        scores = tagger.activate(logits, None).numpy()
        activation = tagger.default_activation()
        document = thresholds_document(scores, targets.numpy(), config.labels, target_precision, activation)
        write_file(write_thresholds, {"model": tagger.spec.source, "data": str(data_dir), **document})
        report["thresholds"] = {"file": str(write_thresholds), "labels": len(document["thresholds"])}
    return {
        "model": tagger.spec.source,
        "data": str(data_dir),
        "problem_type": "multi_label" if multi else "single_label",
        "skipped": len(found.skipped),
        **report,
    }


def thresholds_document(
    scores: np.ndarray, targets: np.ndarray, labels: list[str], target_precision: float | None, activation: str
) -> dict[str, Any]:
    """What ``--write-thresholds`` writes: the criterion, each label's threshold (those that have one)
    and how it does on the clips it was chosen on. Labels left without one are logged."""
    per_label = metrics.best_thresholds(scores, targets, labels, target_precision)
    missing = [label for label, row in per_label.items() if row["threshold"] is None]
    if missing:
        why = (
            "no clip of theirs"
            if target_precision is None
            else f"no clip of theirs, or precision {target_precision} unreached"
        )
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        _log.warning(f"no threshold for {len(missing)} label(s) ({why}): {shown}; they use --threshold")
    return {
        "activation": activation,
        "criterion": "f1" if target_precision is None else f"precision>={target_precision}",
        "thresholds": {label: row["threshold"] for label, row in per_label.items() if row["threshold"] is not None},
        "per_label": {label: row for label, row in per_label.items() if row["threshold"] is not None},
    }
