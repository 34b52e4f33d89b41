"""A loaded model ready to tag: ``Tagger`` holds the network on its device and precision, cuts inputs
into windows (``windows.py``) and runs them; ``records.py`` turns its scores into records.

    >>> tagger = load_model("MIT/ast-finetuned-audioset-10-10-0.4593")
    >>> tagger.tag("song.wav", top=5)["labels"]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from .checkpoints import Checkpoint, load
from .config import ASTConfig, PreprocessorConfig, patch_grid
from .devices import (
    autocast,
    cast_matmul_weights,
    copy_off_the_file,
    precision_name,
    quantize_int8,
    resolve_device,
    resolve_precision,
    set_attention_precision,
)
from .errors import UsageError
from .features import FRAMES_PER_SECOND
from .hub import DEFAULT_MODEL
from .layouts import leading_pos_embed
from .model import AST
from .options import Activation, FeatureFrontend, Precision, TagOptions
from .records import FileResult, RecordMaker
from .spec import ModelSpec
from .windows import Window, WindowSpec, batched, iter_windows

__all__ = ["ModelSpec", "Tagger", "TagOptions", "load_model", "resolve_precision"]


def load_model(spec: ModelSpec | str = DEFAULT_MODEL, **fields: Any) -> Tagger:
    """Load a model for tagging, as ``spec`` describes it: a ``ModelSpec``, or a source (a Hub id, a
    local Hub-layout folder, the authors' ``.pth``) with ``ModelSpec`` fields as keywords
    (``load_model("m.pth", labels="labels.csv", precision="fp32")``). ``precision`` auto picks bf16 on
    CPUs with native bf16, fp16 on CUDA, else fp32."""
    if isinstance(spec, str):
        spec = ModelSpec(source=spec, **fields)
    elif fields:
        spec = spec.replace(**fields)
    dtype = resolve_precision(spec.precision, resolve_device(spec.device))
    cast = dtype if dtype != torch.float32 and spec.precision != Precision.int8 else None  # int8 quantizes fp32 weights
    checkpoint = load(
        spec.source,
        labels=spec.labels,
        norm_stats=spec.norm_stats,
        fstride=spec.fstride,
        tstride=spec.tstride,
        input_tdim=spec.input_tdim,
        matrix_dtype=cast,
    )
    return Tagger(checkpoint, spec)


class Tagger:
    """A loaded model with its device, precision and preprocessing: the Python API of ``ast tag``."""

    def __init__(self, checkpoint: Checkpoint, spec: ModelSpec | None = None):
        spec = spec or ModelSpec(source=checkpoint.source)
        precision = spec.precision
        self.spec = spec  # what loads the same model elsewhere (Ray actors: spec.portable())
        self.checkpoint = checkpoint
        self.device = resolve_device(spec.device)
        self.dtype = resolve_precision(precision, self.device)  # what autocast computes in
        self.precision = (
            "int8" if precision == Precision.int8 else precision_name(self.dtype)
        )  # as recorded with results
        self.model: AST = checkpoint.model.to(self.device).eval()
        self.model.keep_rate = spec.keep_tokens or 1.0  # token pruning (opt-in); recorded by ast batch
        self.attention_precision = precision_name(self.dtype)  # AST_ATTENTION_PRECISION=fp32 changes it for bf16/fp16
        if self.dtype != torch.float32:
            cast_matmul_weights(self.model, self.dtype)
            self.attention_precision = set_attention_precision(self.model, self.dtype)
        if self.precision == "int8":
            quantize_int8(self.model)  # in place: its Linear layers become dynamically quantized ones
        if self.precision != "fp32" and self.device.type == "cpu":
            copy_off_the_file(self.model)
        self.config: ASTConfig = checkpoint.model.config
        self.preprocessor: PreprocessorConfig = checkpoint.preprocessor
        self.labels = self.config.labels
        self._positions: dict[int, torch.Tensor] = {}  # --crop-short: position tables by input frames

    # -- settings --------------------------------------------------------------------------
    @property
    def window_frames(self) -> int:
        return self.config.max_length

    def default_activation(self) -> str:
        return self.config.default_activation

    def window_hop_frames(self, options: TagOptions) -> tuple[int, int]:
        window = self.window_frames if options.window is None else round(options.window * FRAMES_PER_SECOND)
        if window > self.window_frames:
            raise UsageError(
                f"--window {options.window} s is longer than the model's input "
                f"of {self.window_frames / FRAMES_PER_SECOND} s",
                hint="use a window up to the model's length; longer recordings are covered by sliding windows",
            )
        if window < 16:
            raise UsageError(f"--window must be at least 0.16 s (one 16-frame patch), got {options.window}")
        hop = window // 2 if options.hop is None else round(options.hop * FRAMES_PER_SECOND)
        return window, max(hop, 1)

    def windows_per_batch(self, options: TagOptions) -> int:
        """``--batch-size``, or by default one window a forward pass on the CPU and 8 on a GPU: on the
        CPU one window (1214 tokens) already fills the cores, and larger batches only raise the memory
        peak (benchmarks/means.py)."""
        if options.batch_size is not None:
            return options.batch_size
        return 1 if self.device.type == "cpu" else 8

    def record_maker(self, options: TagOptions) -> RecordMaker:
        """What turns this model's results into records (unknown --include/--exclude labels fail here,
        and a thresholds file chosen on scores of another activation)."""
        chosen, used = options.thresholds, options.activation or self.default_activation()
        if chosen is not None and chosen.activation not in (None, used):
            raise UsageError(
                f"{chosen.source}: its thresholds are for {chosen.activation} scores, this run gives {used} scores",
                hint=f"run with --activation {chosen.activation}, or choose thresholds for these scores",
            )
        return RecordMaker(self.labels, options, self.window_hop_frames(options)[0])

    # -- audio -> windows -------------------------------------------------------------------
    def window_spec(self, options: TagOptions) -> WindowSpec:
        """Everything it takes to cut an input into normalised windows (picklable: decode workers use it)."""
        window, hop = self.window_hop_frames(options)
        p = self.preprocessor
        return WindowSpec(
            num_mel_bins=self.config.num_mel_bins,
            max_length=self.window_frames,
            window=window,
            hop=hop,
            mean=p.mean,
            std=p.std,
            do_normalize=p.do_normalize,
            channel=options.channel,
            remove_dc=self.spec.frontend == FeatureFrontend.authors,
            crop=(self.config.patch_size, self.config.time_stride) if options.crop_short else None,
        )

    def windows(
        self, source: str | os.PathLike | np.ndarray, options: TagOptions, sample_rate: int | None = None
    ) -> tuple[Iterator[Window], dict]:
        """Normalised windows of one input, and a dict whose ``duration_s`` is set once they are consumed."""
        meta: dict = {"duration_s": 0.0}
        return iter_windows(source, self.window_spec(options), sample_rate, meta), meta

    # -- the network -------------------------------------------------------------------------
    @torch.inference_mode()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, F) normalised features -> (B, C) float32 logits on the CPU."""
        x = features.to(self.device, non_blocking=True)
        with autocast(self.device, self.dtype):
            out = self.model(x, self.position_table(x.shape[1]))
        return out.float().cpu()

    @torch.inference_mode()
    def embeddings(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, D): the pooled (cls + distillation) / 2 embedding before the head."""
        x = features.to(self.device, non_blocking=True)
        with autocast(self.device, self.dtype):
            out = self.model.forward_features(x, self.position_table(x.shape[1]))
        return out.float().cpu()

    def position_table(self, frames: int) -> torch.Tensor | None:
        """The position embeddings of a window cropped to ``frames`` frames (``--crop-short``): the
        patches' positions in the padded window, so the cropped window differs from it only by the
        padding's patches it leaves out. None for a full window: the model's own table."""
        if frames == self.window_frames:
            return None
        if frames not in self._positions:
            c = self.config
            t = patch_grid(c.num_mel_bins, frames, c.patch_size, c.frequency_stride, c.time_stride)[1]
            self._positions[frames] = leading_pos_embed(self.model.pos_embed.detach(), c.grid, t)
        return self._positions[frames]

    def scores(self, features: torch.Tensor, activation: str | None = None) -> torch.Tensor:
        """(B, T, F) normalised features -> (B, C) scores with the model's (or the given) activation."""
        return self.activate(self.logits(features), activation)

    def activate(self, logits: torch.Tensor, activation: str | None) -> torch.Tensor:
        activation = activation or self.default_activation()
        if activation == Activation.sigmoid:
            return torch.sigmoid(logits)
        if activation == Activation.softmax:
            return torch.softmax(logits, dim=-1)
        return logits

    # -- one input -----------------------------------------------------------------------------
    def tag(
        self,
        source: str | os.PathLike | np.ndarray,
        sample_rate: int | None = None,
        options: TagOptions | None = None,
        **kwargs,
    ) -> dict:
        """Tag a file path (``-`` = stdin) or a waveform array (``(samples,)`` or ``(samples, channels)``,
        with ``sample_rate``). Keyword arguments are ``TagOptions`` fields. Returns the JSON record."""
        options = options or TagOptions(**kwargs)
        return self.record_maker(options).record(self.run(source, options, sample_rate))

    def run(
        self, source, options: TagOptions, sample_rate: int | None = None, watch: Callable[[Window], None] | None = None
    ) -> FileResult:
        """Per-window scores of one input; ``watch`` sees each window as it is cut (progress, pictures)."""
        if isinstance(source, np.ndarray) and sample_rate is None:
            raise UsageError("tagging an array needs its sample_rate")
        windows, meta = self.windows(source, options, sample_rate)
        if watch is not None:
            windows = _watched(windows, watch)
        result = FileResult(path="<array>" if isinstance(source, np.ndarray) else os.fspath(source))
        for batch in batched(windows, self.windows_per_batch(options)):
            scores = self.scores(torch.stack([w.features for w in batch]), options.activation)
            result.starts.extend(w.start for w in batch)
            result.scores.extend(scores)
        result.duration_s = meta["duration_s"]
        return result


def _watched(windows: Iterator[Window], watch: Callable[[Window], None]) -> Iterator[Window]:
    for window in windows:
        watch(window)
        yield window
