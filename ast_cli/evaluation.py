"""``ast eval``: score a checkpoint on labelled clips, with the metric code ``finetune`` validates with.

Each clip is one window of the model's input length (the first ``max_length`` frames, zero-padded),
as the authors evaluate; the scores are the model's logits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import data as D
from . import metrics, plots
from .devices import autocast
from .errors import UsageError
from .spec import ModelSpec
from .targets import model_files, refuse_overlap


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


def score(logits: torch.Tensor, targets: torch.Tensor, labels: list[str], multi_label: bool) -> dict[str, Any]:
    """The report of ``metrics``: mAP/mAUC/d-prime on sigmoid scores, or accuracy/F1 on the argmax."""
    if multi_label:
        return metrics.multi_label(torch.sigmoid(logits).numpy(), (targets > 0.5).numpy(), labels)
    return metrics.single_label(logits.numpy(), targets.argmax(1).numpy(), labels)


def evaluate(
    spec: ModelSpec | str,
    data_dir: str,
    *,
    labels_csv: str | None = None,
    batch_size: int = 16,
    plot: str | None = None,
) -> dict[str, Any]:
    """Metrics of the model ``spec`` names on a folder-per-class set (or ``labels_csv``, multi-label
    data), whose class names must be the model's labels. A plain string is a ``ModelSpec`` source.
    ``plot``: a PNG of the confusion matrix or the per-class AP (``plots.report_picture``), when
    matplotlib is installed (else one line says how to get it)."""
    from .inference import load_model

    if plot and not Path(plot).parent.is_dir():
        raise UsageError(f"--plot {plot}: no such folder {Path(plot).parent}")
    source = spec if isinstance(spec, str) else spec.source
    plotted = [plot] if plot else []
    refuse_overlap(plotted, model_files(source, labels_csv))  # never over the model or the labels
    draw = bool(plot) and plots.available()  # before the wait: without matplotlib, say so at once
    tagger = load_model(spec)  # weights cast once; int8 quantized
    config, pre = tagger.config, tagger.preprocessor
    found = D.csv_labels(labels_csv, data_dir) if labels_csv else D.folder_classes(data_dir)
    found = D.relabel(found, config.labels, f"model {tagger.spec.source}")
    refuse_overlap(plotted, (clip.path for clip in found.clips))  # nor over a clip
    found, fbanks, _ = D.scan(found, config.num_mel_bins)
    mean, std = (pre.mean, pre.std) if pre.do_normalize else (0.0, 0.5)  # (x - 0) / (2 * 0.5) = x
    dataset = D.ClipDataset(found, config.max_length, mean, std, fbanks=fbanks, num_mel_bins=config.num_mel_bins)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    logits, targets = predict(tagger.logits, loader)
    multi = found.multi_label
    report = score(logits, targets, config.labels, multi)
    if draw and plot:
        plots.report_picture(report, plot)
    return {
        "model": tagger.spec.source,
        "data": str(data_dir),
        "problem_type": "multi_label" if multi else "single_label",
        "skipped": len(found.skipped),
        **report,
    }
