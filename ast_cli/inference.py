"""Tagging: whole recordings through sliding windows, batched, aggregated per label.

A recording is turned into one stream of fbank frames (computed once, block by block) and cut into
windows of the model's input length; a recording shorter than a window is one zero-padded window,
exactly what transformers' feature extractor makes of it. The last window of a long recording is
aligned with its end so no window is mostly padding.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from . import audio
from .checkpoints import Checkpoint
from .config import ASTConfig, PreprocessorConfig
from .errors import AudioError, UsageError
from .features import FRAME_LENGTH, FRAMES_PER_SECOND, FbankStream, normalize, pad_or_cut
from .model import AST

ACTIVATIONS = ("sigmoid", "softmax", "none")
AGGREGATES = ("max", "mean")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
DEVICES = ("auto", "cpu", "cuda", "mps")
SCORE_DECIMALS = 6
SCORE_HALF_ULP = 0.5 * 10**-SCORE_DECIMALS
_log = logging.getLogger(__name__)  # --debug shows the traceback of each file that failed


# -- device and precision ---------------------------------------------------------------------
def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in DEVICES and not device.startswith("cuda:"):
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available", hint="use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: Metal is not available here", hint="use --device cpu")
    return torch.device(device)


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matrix products run natively (on AMX ~8x fp32 here), not emulated."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch: read the CPU flags
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype: auto is fp16 on CUDA, bf16 on a CPU with native bf16, else fp32.
    (``int8`` is an inference-only mode of ``Tagger``: its non-quantized part runs in fp32.)"""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise UsageError("--precision fp16 is for GPUs; on the CPU use bf16 or fp32")
    if precision == "int8" and device.type != "cpu":
        raise UsageError("--precision int8 runs on the CPU only", hint="use --device cpu, or fp16 on the GPU")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}[precision]


def precision_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def quantize_int8(model: AST) -> torch.nn.Module:
    """Dynamic int8 quantization of the Linear layers (weights int8, activations quantized per batch),
    in place: a quantized copy would leave the fp32 model (340 MB full-size) alive beside it."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch deprecates the quantized-tensor API in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


# -- options ----------------------------------------------------------------------------------
@dataclass
class TagOptions:
    """What ``ast tag`` and ``ast batch`` share. ``window``/``hop`` in seconds (None: the model's window, half of it)."""

    top: int = 5  # 0: every label
    threshold: float | None = None
    window: float | None = None
    hop: float | None = None
    aggregate: str = "max"
    activation: str | None = None  # None: from the model's problem_type
    timeline: bool = False
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    channel: str | int = "mean"
    batch_size: int | None = None  # windows a forward pass; None: Tagger.windows_per_batch decides
    all_scores: bool = False  # also every label's score: "scores" {label: score} in the record
    merge: bool = False  # also "events": consecutive windows carrying a label joined (implies timeline)

    def __post_init__(self) -> None:
        if self.top < 0:
            raise UsageError(f"--top must be 0 (all labels) or more, got {self.top}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0 and self.activation != "none":
            raise UsageError(f"--threshold must be within [0, 1], got {self.threshold}")
        if self.aggregate not in AGGREGATES:
            raise UsageError(f"--aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise UsageError(f"--activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        for name in ("window", "hop"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise UsageError(f"--{name} must be a positive number of seconds, got {value}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        self.channel = audio.parse_channel(self.channel)
        if self.merge:
            self.timeline = True


@dataclass
class Window:
    start: int  # first frame
    frames: int  # frames of audio in it (the rest is padding)
    features: torch.Tensor  # (T, F) normalised, T = the model's max_length


@dataclass(frozen=True)
class WindowSpec:
    """How an input becomes windows: fbank size, window/hop in frames, normalisation, downmix."""

    num_mel_bins: int
    max_length: int  # frames the model takes; shorter windows are zero-padded to it
    window: int
    hop: int
    mean: float
    std: float
    do_normalize: bool = True
    channel: str | int = "mean"

    def prepare(self, feats: torch.Tensor) -> torch.Tensor:
        feats = pad_or_cut(feats, self.max_length)  # (T, F): padding before normalisation, as the reference
        return normalize(feats, self.mean, self.std) if self.do_normalize else feats


def iter_windows(
    source: str | os.PathLike | np.ndarray, spec: WindowSpec, sample_rate: int | None = None, meta: dict | None = None
) -> Iterator[Window]:
    """Normalised windows of a path (``-``: stdin) or a waveform array; ``meta["duration_s"]`` is set at the end.

    The fbank is computed once over the whole stream, block by block, and cut into windows: memory
    stays at about one window plus one decoded block whatever the recording's length."""
    stream = FbankStream(spec.num_mel_bins)
    with contextlib.ExitStack() as stack:
        if isinstance(source, np.ndarray):
            blocks, name = audio.array_stream(source, sample_rate, spec.channel), "<array>"
        else:
            reader = stack.enter_context(audio.AudioReader(source, spec.channel))
            blocks, name = audio.stream(reader), reader.path
        frames = (stream.feed(block) for block in blocks)
        for start, feats in sliding_windows(frames, spec.window, spec.hop, spec.num_mel_bins):
            yield Window(start, feats.shape[0], spec.prepare(feats))
        if meta is not None:
            meta["duration_s"] = stream.samples / audio.SAMPLE_RATE
    if stream.samples < FRAME_LENGTH:
        raise AudioError(
            f"{name}: too short to tag ({stream.samples / audio.SAMPLE_RATE * 1000:.1f} ms of audio at 16 kHz; one 25 ms frame is the minimum)"
        )


class ScoreRows:
    """The per-window score rows of one input in one (capacity, C) buffer that doubles as it fills.

    Kept as a (C,) tensor a window, the rows of a long recording were ~1,400 small blocks left among
    the freed activations of the windows after them, which the heap then could not hand out whole
    again: ``ast tag`` of a 60-min recording grew by ~0.5 MiB a window (850 -> 1465 MiB)."""

    def __init__(self) -> None:
        self._buf: torch.Tensor | None = None
        self._n = 0

    def extend(self, rows: torch.Tensor) -> None:
        """Append (B, C) rows."""
        need = self._n + len(rows)
        if self._buf is None or need > len(self._buf):
            grown = torch.empty(max(need, 16, 2 * self._n), rows.shape[1], dtype=rows.dtype)
            if self._n:
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


# -- the tagger -------------------------------------------------------------------------------
class Tagger:
    """A loaded model with its device, precision and preprocessing: the Python API of ``ast tag``.

    >>> tagger = ast_cli.load_model("MIT/ast-finetuned-audioset-10-10-0.4593")
    >>> tagger.tag("song.wav", top=5)["labels"]
    """

    def __init__(self, checkpoint: Checkpoint, device: str = "auto", precision: str = "auto"):
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)  # what autocast computes in
        self.precision = "int8" if precision == "int8" else precision_name(self.dtype)  # as recorded with results
        self.model: AST = checkpoint.model.to(self.device).eval()
        if self.dtype != torch.float32:
            cast_matmul_weights(self.model, self.dtype)
        if self.precision == "int8":
            self.model = quantize_int8(self.model)
        if self.precision != "fp32" and self.device.type == "cpu":
            copy_off_the_file(self.model)
        self.config: ASTConfig = checkpoint.model.config
        self.preprocessor: PreprocessorConfig = checkpoint.preprocessor
        self.labels = self.config.labels

    # -- settings --------------------------------------------------------------------------
    @property
    def window_frames(self) -> int:
        return self.config.max_length

    def default_activation(self) -> str:
        if self.config.problem_type == "regression":
            return "none"
        return "sigmoid" if self.config.multi_label else "softmax"

    def window_hop_frames(self, options: TagOptions) -> tuple[int, int]:
        window = self.window_frames if options.window is None else round(options.window * FRAMES_PER_SECOND)
        if window > self.window_frames:
            raise UsageError(
                f"--window {options.window} s is longer than the model's input of {self.window_frames / FRAMES_PER_SECOND} s",
                hint="use a window up to the model's length; longer recordings are covered by sliding windows",
            )
        if window < 16:
            raise UsageError(f"--window must be at least 0.16 s (one 16-frame patch), got {options.window}")
        hop = window // 2 if options.hop is None else round(options.hop * FRAMES_PER_SECOND)
        return window, max(hop, 1)

    def label_mask(self, include: Sequence[str], exclude: Sequence[str]) -> torch.Tensor:
        """(C,) bool: which labels may be reported. Names match case-insensitively."""
        index = {label.lower(): i for i, label in enumerate(self.labels)}

        def lookup(name: str) -> int:
            if name.lower() in index:
                return index[name.lower()]
            close = difflib.get_close_matches(name.lower(), list(index), n=3)
            hint = ("did you mean " + ", ".join(repr(self.labels[index[c]]) for c in close) + "?") if close else "see 'ast labels'"
            raise UsageError(f"unknown label {name!r}", hint=hint)

        mask = torch.zeros(len(self.labels), dtype=torch.bool) if include else torch.ones(len(self.labels), dtype=torch.bool)
        for name in include:
            mask[lookup(name)] = True
        for name in exclude:
            mask[lookup(name)] = False
        return mask

    def windows_per_batch(self, options: TagOptions) -> int:
        """``--batch-size``, or by default one window a forward pass on the CPU and 8 on a GPU. On the
        CPU a window (1214 tokens) already fills the cores: 8 a batch ran no faster here (1.039 against
        0.939 s a window in benchmarks/means.py, bf16, 2 cores) and raised the memory peak by 40-200 MiB."""
        if options.batch_size is not None:
            return options.batch_size
        return 1 if self.device.type == "cpu" else 8

    # -- audio -> windows -------------------------------------------------------------------
    def window_spec(self, options: TagOptions) -> WindowSpec:
        """Everything it takes to cut an input into normalised windows (picklable: decode workers use it)."""
        window, hop = self.window_hop_frames(options)
        p = self.preprocessor
        return WindowSpec(self.config.num_mel_bins, self.window_frames, window, hop, p.mean, p.std, p.do_normalize, options.channel)

    def windows(
        self, source: str | os.PathLike | np.ndarray, options: TagOptions, sample_rate: int | None = None
    ) -> tuple[Iterator[Window], dict]:
        """Normalised windows of one input, and a dict whose ``duration_s`` is set once they are consumed."""
        meta: dict = {"duration_s": 0.0}
        return iter_windows(source, self.window_spec(options), sample_rate, meta), meta

    # -- the network -------------------------------------------------------------------------
    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, F) normalised features -> (B, C) float32 logits on the CPU."""
        x = features.to(self.device, non_blocking=True)
        with self.autocast():
            out = self.model(x)
        return out.float().cpu()

    @torch.inference_mode()
    def embeddings(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, D): the pooled (cls + distillation) / 2 embedding before the head."""
        x = features.to(self.device, non_blocking=True)
        with self.autocast():
            out = self.model.forward_features(x)
        return out.float().cpu()

    def scores(self, features: torch.Tensor, activation: str | None = None) -> torch.Tensor:
        """(B, T, F) normalised features -> (B, C) scores with the model's (or the given) activation."""
        return self.activate(self.logits(features), activation)

    def activate(self, logits: torch.Tensor, activation: str | None) -> torch.Tensor:
        activation = activation or self.default_activation()
        if activation == "sigmoid":
            return torch.sigmoid(logits)
        if activation == "softmax":
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
        result = self.run(source, options, sample_rate)
        return self.record(result, options)

    def run(self, source, options: TagOptions, sample_rate: int | None = None) -> FileResult:
        if isinstance(source, np.ndarray) and sample_rate is None:
            raise UsageError("tagging an array needs its sample_rate")
        windows, meta = self.windows(source, options, sample_rate)
        result = FileResult(path="<array>" if isinstance(source, np.ndarray) else os.fspath(source))
        for batch in batched(windows, self.windows_per_batch(options)):
            scores = self.scores(torch.stack([w.features for w in batch]), options.activation)
            result.starts.extend(w.start for w in batch)
            result.scores.extend(scores)
        result.duration_s = meta["duration_s"]
        return result

    def record(self, result: FileResult, options: TagOptions) -> dict:
        """The JSON record: path, duration_s, labels (windows with --timeline, scores with --all-scores,
        events with --merge, error on failure)."""
        if result.error is not None:
            return {"path": result.path, "duration_s": None, "labels": [], "error": result.error}
        record: dict = {"path": result.path, "duration_s": round(result.duration_s, 3)}
        mask = self.label_mask(options.include, options.exclude)
        stacked = result.scores.rows() if isinstance(result.scores, ScoreRows) else torch.stack(result.scores)  # (W, C)
        overall = stacked.amax(0) if options.aggregate == "max" else stacked.mean(0)
        record["labels"] = self.select(overall, mask, options)
        if options.all_scores:
            record["scores"] = self.all_scores(overall, mask)
        if options.timeline:
            window, _ = self.window_hop_frames(options)
            record["windows"] = []
            for start, scores in zip(result.starts, result.scores):
                item = {
                    "start_s": round(start / FRAMES_PER_SECOND, 3),
                    "end_s": round(min((start + window) / FRAMES_PER_SECOND, result.duration_s), 3),
                    "labels": self.select(scores, mask, options),
                }
                if options.all_scores:
                    item["scores"] = self.all_scores(scores, mask)
                record["windows"].append(item)
        if options.merge:
            record["events"] = merge_events(record["windows"])
        return record

    def all_scores(self, scores: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
        return {self.labels[i]: round(float(scores[i]), SCORE_DECIMALS) for i in torch.nonzero(mask).flatten().tolist()}

    def select(self, scores: torch.Tensor, mask: torch.Tensor, options: TagOptions) -> list[dict]:
        keep = mask.clone()
        if options.threshold is not None:
            # scores are reported to 6 decimals: a threshold equal to a reported score keeps it
            keep &= scores >= options.threshold - SCORE_HALF_ULP
        idx = torch.nonzero(keep).flatten()
        order = idx[torch.argsort(scores[idx], descending=True, stable=True)]
        if options.top:
            order = order[: options.top]
        return [{"label": self.labels[i], "index": int(i), "score": round(float(scores[i]), SCORE_DECIMALS)} for i in order.tolist()]


# -- helpers --------------------------------------------------------------------------------------
def cast_matmul_weights(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Store Linear and Conv weights in ``dtype`` once. Autocast would otherwise cast all 86 M
    weights on every forward pass; LayerNorms, the tokens and the residual stream stay fp32
    (autocast keeps layer_norm and additions in fp32), which keeps scores close to fp32."""
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            module.to(dtype)


def copy_off_the_file(model: torch.nn.Module) -> None:
    """Give the fp32 parameters left after casting or quantizing (LayerNorms, tokens, position table,
    ~1 M values) memory of their own. They were views of the memory-mapped checkpoint, which kept the
    whole mapping, and the file's pages that reading it made resident, alive: 326 MiB of RSS for the
    full-size model in bf16."""
    for param in model.parameters():
        if param.dtype == torch.float32:
            param.data = param.data.clone()


def sliding_windows(
    frame_blocks: Iterable[torch.Tensor], window: int, hop: int, num_mel_bins: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Windows of ``window`` frames every ``hop`` frames over a stream of (n, F) frame blocks.

    Holds at most about one window plus one block of frames. A stream shorter than a window gives
    one short window (padded later); otherwise a last window aligned with the end covers the tail.
    """
    buf = torch.zeros(0, num_mel_bins)
    buf_start = 0  # frame index of buf[0]
    total = 0
    next_start = 0
    last_end = 0
    for block in frame_blocks:
        if not len(block):
            continue
        buf = torch.cat([buf, block]) if len(buf) else block
        total += len(block)
        while next_start + window <= total:
            yield next_start, buf[next_start - buf_start : next_start - buf_start + window]
            last_end = next_start + window
            next_start += hop
        keep_from = min(next_start, max(total - window, 0))
        buf = buf[keep_from - buf_start :]
        buf_start = keep_from
    if total == 0:
        return
    if last_end == 0:
        yield 0, buf  # nothing was cut yet: the whole short stream
    elif last_end < total:
        start = total - window
        yield start, buf[start - buf_start :]


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
                event = {"label": item["label"], "index": index, "start_s": w["start_s"], "end_s": w["end_s"], "score": item["score"]}
                open_events[index] = event
                events.append(event)
            else:
                event["end_s"] = max(event["end_s"], w["end_s"])
                event["score"] = max(event["score"], item["score"])
    return sorted(events, key=lambda e: (e["start_s"], -e["score"], e["index"]))


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def tag_files(tagger: Tagger, sources: Iterable[str], options: TagOptions) -> Iterator[dict]:
    """Records of several inputs in order; an input that cannot be decoded gets a record with ``error``."""
    tagger.window_hop_frames(options)  # bad --window/--hop and unknown labels fail before any work
    tagger.label_mask(options.include, options.exclude)
    for source in sources:
        try:
            result = tagger.run(source, options)
        except AudioError as exc:
            _log.debug("%s", exc, exc_info=True)
            result = FileResult(path=source, error=str(exc))
        yield tagger.record(result, options)
