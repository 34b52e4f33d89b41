"""ast: tag sounds with the Audio Spectrogram Transformer, from the command line or from Python.

    >>> import ast_cli
    >>> tagger = ast_cli.load_model()              # MIT/ast-finetuned-audioset-10-10-0.4593
    >>> tagger = ast_cli.load_model(ast_cli.ModelSpec(source="my-model", precision="fp32"))
    >>> tagger.tag("song.wav", top=5)["labels"]
    >>> tagger.tag(waveform, sample_rate=44100)    # a numpy array, (samples,) or (samples, channels)

Importing this package does not import torch; ``load_model`` does. Modules of the package never
import it (this façade): they import each other directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hub import DEFAULT_MODEL
from .version import __version__

__all__ = ["DEFAULT_MODEL", "ModelSpec", "TagOptions", "Tagger", "load_model", "__version__"]

if TYPE_CHECKING:
    from .inference import Tagger, load_model
    from .options import TagOptions
    from .spec import ModelSpec


def __getattr__(name: str):
    if name in ("Tagger", "load_model"):
        from . import inference

        return getattr(inference, name)
    if name == "TagOptions":
        from .options import TagOptions

        return TagOptions
    if name == "ModelSpec":
        from .spec import ModelSpec

        return ModelSpec
    raise AttributeError(f"module 'ast_cli' has no attribute {name!r}")
