"""``ModelSpec``: which model to load and how to run it, built once (by a command or a Python caller)
and carried unchanged to ``inference.load_model``, the ``Tagger`` and Ray's model actors.

No torch here: the command line builds a spec before it pays for the heavy imports.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from .config import parse_stats
from .errors import InvalidValue
from .hub import DEFAULT_MODEL
from .options import Device, FeatureFrontend, Precision, as_choice


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model as the user named it, and how it runs.

    ``source``: a Hub id, a Hub-layout folder or the authors' ``.pth``. ``labels``: a labels CSV naming
    a ``.pth``'s outputs. ``norm_stats``: (mean, std) over the checkpoint's own (a
    preset name or ``"MEAN,STD"`` is read once, here: after construction it is a pair or None). ``fstride``,
    ``tstride``, ``input_tdim``: an authors' ``.pth``'s architecture where its weights leave it open.
    ``frontend``: how a waveform becomes the model's log-mel input. ``keep_tokens``: token pruning's keep
    rate in (0, 1] (``model.AST.keep_rate``; None or 1: off)."""

    source: str = DEFAULT_MODEL
    labels: str | None = None
    device: str = Device.auto.value
    precision: Precision = Precision.auto
    norm_stats: tuple[float, float] | str | None = None
    fstride: int | None = None
    tstride: int | None = None
    input_tdim: int | None = None
    frontend: FeatureFrontend = FeatureFrontend.transformers
    keep_tokens: float | None = None

    def __post_init__(self) -> None:
        # frozen: normalised values are set through object.__setattr__, once, here
        set_ = object.__setattr__
        set_(self, "precision", as_choice(Precision, self.precision, "precision"))
        set_(self, "frontend", as_choice(FeatureFrontend, self.frontend, "frontend"))
        if not (self.device.startswith("cuda:") and self.device[5:].isdigit()):
            set_(self, "device", as_choice(Device, self.device, "device").value)
        if self.norm_stats is not None:
            set_(self, "norm_stats", parse_stats(self.norm_stats))
        for name in ("fstride", "tstride", "input_tdim"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidValue(name, f"must be a positive number, got {value}")
        if self.keep_tokens is not None and not 0 < self.keep_tokens <= 1:  # NaN fails too
            raise InvalidValue("keep_tokens", f"must be a fraction in (0, 1], got {self.keep_tokens}")

    def replace(self, **changes: Any) -> ModelSpec:
        """This spec with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def portable(self) -> ModelSpec:
        """This spec as another process or machine reads it: a local ``source`` made absolute."""
        if os.path.exists(self.source):
            return self.replace(source=os.path.abspath(self.source))
        return self
