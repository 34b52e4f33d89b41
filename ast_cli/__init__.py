"""ast: tag sounds with the Audio Spectrogram Transformer, from the command line or from Python.

    >>> import ast_cli
    >>> tagger = ast_cli.load_model()              # MIT/ast-finetuned-audioset-10-10-0.4593
    >>> tagger.tag("song.wav", top=5)["labels"]
    >>> tagger.tag(waveform, sample_rate=44100)    # a numpy array, (samples,) or (samples, channels)

Importing this package does not import torch; ``load_model`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["DEFAULT_MODEL", "TagOptions", "Tagger", "load_model", "__version__"]

DEFAULT_MODEL = "MIT/ast-finetuned-audioset-10-10-0.4593"

if TYPE_CHECKING:
    from .inference import TagOptions, Tagger


def load_model(
    model: str = DEFAULT_MODEL,
    *,
    device: str = "auto",
    precision: str = "auto",
    labels: str | None = None,
) -> Tagger:
    """Load a model for tagging: a Hub id, a local Hub-layout folder, or the authors' ``.pth``
    (``labels``: their class_labels_indices.csv). ``device`` auto|cpu|cuda|mps; ``precision``
    auto|fp32|bf16|fp16 (auto: bf16 on CPUs with native bf16, fp16 on CUDA, else fp32)."""
    import torch

    from .checkpoints import load
    from .inference import Tagger, resolve_device, resolve_precision

    dtype = resolve_precision(precision, resolve_device(device))
    cast = dtype if dtype != torch.float32 and precision != "int8" else None  # int8 quantizes fp32 weights
    return Tagger(load(model, labels=labels, matrix_dtype=cast), device=device, precision=precision)


def __getattr__(name: str):
    if name in ("Tagger", "TagOptions"):
        from . import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'ast_cli' has no attribute {name!r}")
