"""What each command's core takes: the closed choices (str-valued Enums) and the option objects
(``ast finetune``'s are in ``finetune_options``).

The Enums are the only list of each choice: Typer validates and completes them, ``--help`` shows their
values, ``Choice.parse`` gives Python callers the same one-line error. Option objects are keyword-only
dataclasses that check their own values, so a new field never shifts another and a bad value fails
before any model is loaded. No torch or numpy here: the CLI builds these before the heavy imports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from .errors import InvalidValue, UsageError
from .thresholds import Thresholds

C = TypeVar("C", bound="Choice")


class Choice(str, Enum):
    """A closed set of option values; members compare equal to their strings."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]

    @classmethod
    def parse(cls: type[C], value: str | C, flag: str) -> C:
        try:
            return cls(value)
        except ValueError:
            raise UsageError(f"{flag} must be one of {', '.join(cls.values())}, got {value!r}") from None


# what the commands write
class RecordFormat(Choice):
    """``ast tag``: records on standard output."""

    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    tsv = "tsv"


class BatchFormat(Choice):
    """``ast batch``: the output file (a folder of one label file an input for audacity and raven)."""

    csv = "csv"
    tsv = "tsv"
    json = "json"
    jsonl = "jsonl"
    audacity = "audacity"
    events_csv = "events-csv"  # one row an event (DCASE's and BirdNET's layout): path, start_s, end_s, label, ...
    events_tsv = "events-tsv"
    raven = "raven"  # Raven Pro selection tables


class ReportFormat(Choice):
    """``ast eval``, ``ast stats``, ``ast models``: one report."""

    table = "table"
    json = "json"


# how scores are made
class Aggregate(Choice):
    """How the window scores of a label become the file's."""

    max = "max"
    mean = "mean"


class Activation(Choice):
    """What turns logits into scores."""

    sigmoid = "sigmoid"
    softmax = "softmax"
    none = "none"


class FeatureFrontend(Choice):
    """transformers: ASTFeatureExtractor's fbank (the default); authors: each window's waveform mean removed
    first, as the authors' loader does."""

    transformers = "transformers"
    authors = "authors"


# where and how the model runs
class Device(Choice):
    """Where the model runs (``cuda:N`` too, from Python)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Precision(Choice):
    """Inference precision. auto: fp16 on CUDA, bf16 on a CPU with native bf16, else fp32; int8: CPU only,
    dynamically quantized Linear layers."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    int8 = "int8"


class Engine(Choice):
    """``ast batch``: this machine's decode workers and model, or a Ray cluster's CPU tasks and model actors."""

    local = "local"
    ray = "ray"


# export and stats
class ExportFormat(Choice):
    """What ``ast export`` writes."""

    onnx = "onnx"
    torchscript = "torchscript"
    hub = "hub"


class ExportPrecision(Choice):
    """The precision an exported graph computes in (inputs and scores stay float32)."""

    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


class StatsMethod(Choice):
    """get_norm_stats.py's (augmented, mean of batch stats) or exact (pooled)."""

    authors = "authors"
    exact = "exact"


E = TypeVar("E", bound=Enum)


def as_choice(enum: type[E], value: object, field: str) -> E:
    """``value`` as a member of ``enum``, or ``InvalidValue(field, ...)`` listing the members."""
    try:
        return enum(value)
    except ValueError:
        raise InvalidValue(field, f"must be one of {', '.join(m.value for m in enum)}, got {value!r}") from None


def parse_channel(channel: str | int, field: str = "channel") -> str | int:
    """A downmix: ``mean`` or a 0-based channel index."""
    if isinstance(channel, int):
        index = channel
    elif channel == "mean":
        return "mean"
    else:
        try:
            index = int(channel)
        except ValueError:
            raise InvalidValue(field, f"must be 'mean' or a channel number, got {channel!r}") from None
    if index < 0:
        raise InvalidValue(field, f"must be 'mean' or a channel number >= 0, got {index}")
    return index


def check_device(device: str) -> str:
    """A ``Device`` value, or ``cuda:N`` for one GPU of several."""
    if device.startswith("cuda:") and device[5:].isdigit():
        return device
    return as_choice(Device, device, "device")


# -- tag, batch, embed ----------------------------------------------------------------------------
@dataclass(kw_only=True)
class TagOptions:
    """How inputs become labels; what ``ast tag``, ``ast batch`` and ``ast embed`` share.
    ``window``/``hop`` in seconds (None: the model's window, half of it)."""

    top: int = 5  # 0: every label
    threshold: float | None = None
    thresholds: Thresholds | None = None  # per label (a thresholds file); --threshold for the others
    window: float | None = None
    hop: float | None = None
    aggregate: Aggregate = Aggregate.max
    activation: Activation | None = None  # None: from the model's problem_type
    timeline: bool = False
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    channel: str | int = "mean"
    batch_size: int | None = None  # windows a forward pass; None: Tagger.windows_per_batch decides
    crop_short: bool = False  # windows shorter than the model's input cut after their last patch, not padded
    all_scores: bool = False  # also every label's score: "scores" {label: score} in the record
    merge: bool = False  # also "events": consecutive windows carrying a label joined (implies timeline)

    def __post_init__(self) -> None:
        self.aggregate = as_choice(Aggregate, self.aggregate, "aggregate")
        if self.activation is not None:
            self.activation = as_choice(Activation, self.activation, "activation")
        if self.top < 0:
            raise InvalidValue("top", f"must be 0 (all labels) or more, got {self.top}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0 and self.activation != Activation.none:
            raise InvalidValue("threshold", f"must be within [0, 1], got {self.threshold}")
        if self.thresholds is not None and self.activation != Activation.none:
            outside = {k: v for k, v in self.thresholds.per_label.items() if not 0.0 <= v <= 1.0}
            if outside:
                label, value = next(iter(outside.items()))
                raise InvalidValue("thresholds", f"{self.thresholds.source}: {label!r} has {value}, outside [0, 1]")
        for name in ("window", "hop"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise InvalidValue(name, f"must be a positive number of seconds, got {value}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InvalidValue("batch_size", f"must be at least 1, got {self.batch_size}")
        self.channel = parse_channel(self.channel)
        if self.merge:
            self.timeline = True


@dataclass(kw_only=True)
class BatchOptions:
    """Where and how ``ast batch`` writes (what it tags is ``inputs.InputSpec``, how is ``TagOptions``)."""

    out: str  # a file, '-' for standard output, or a folder (audacity)
    fmt: BatchFormat
    workers: int | None = None  # None: batch.default_workers() for the model's device
    unordered: bool = False
    resume: bool = False
    force: bool = False
    progress: bool = True
    engine: Engine = Engine.local
    ray_address: str | None = None  # None: RAY_ADDRESS or a running cluster, else a Ray started for the run
    actors: int | None = None  # model replicas; None: one per GPU of the cluster, else one per node
    gpus_per_actor: float | None = None  # None: 1 where the cluster has GPUs, else 0
    more_outputs: Sequence[tuple[str, BatchFormat]] = ()  # (out, fmt) written from the same run besides out

    def __post_init__(self) -> None:
        self.fmt = as_choice(BatchFormat, self.fmt, "fmt")
        self.engine = as_choice(Engine, self.engine, "engine")
        check_engine(self)
        if self.workers is not None and self.workers < 0:
            raise InvalidValue("workers", f"must be 0 (decode in the main process) or more, got {self.workers}")
        if self.resume and "-" in [self.out, *(out for out, _ in self.more_outputs)]:
            raise InvalidValue("resume", "needs an output file, not standard output ('-')")
        if self.resume and self.force:
            raise InvalidValue("resume", "cannot go with force: one continues the output, the other replaces it")


RAY_FIELDS = ("ray_address", "actors", "gpus_per_actor")  # BatchOptions' fields that only engine ray reads


def check_engine(options: BatchOptions) -> None:
    """The fields of engine ray (``RAY_FIELDS``) only with it, and Ray installed (looked up, not
    imported: that takes a second, and ``ast batch --help`` never pays it)."""
    if options.engine == Engine.local:
        given = [name for name in RAY_FIELDS if getattr(options, name) is not None]
        if given:
            raise InvalidValue(given[0], "only works with engine ray")
        return
    if options.workers is not None:
        raise InvalidValue("workers", "is for engine local: with engine ray, decoding runs in Ray's CPU tasks")
    if options.actors is not None and options.actors < 1:
        raise InvalidValue("actors", f"must be at least 1, got {options.actors}")
    if options.gpus_per_actor is not None and options.gpus_per_actor < 0:
        raise InvalidValue("gpus_per_actor", f"must be at least 0, got {options.gpus_per_actor}")
    if not ray_installed():
        raise ray_missing()


def ray_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # a module hidden by a None in sys.modules
        return False


def ray_missing() -> InvalidValue:
    return InvalidValue("engine", "ray needs Ray, which is not installed", hint="pip install 'ast-cli[ray]'")


# -- stats ----------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class StatsOptions:
    """``ast stats``; the defaults are the authors' get_norm_stats.py settings (AudioSet)."""

    method: StatsMethod = StatsMethod.authors
    target_length: int | None = None  # None: the longest clip's frames, at most 1024
    batch_size: int = 1000  # the DataLoader's batch: each batch's mean/std count equally
    freqm: int = 24
    timem: int = 192
    mixup: float = 0.5
    seed: int | None = None  # None: stats.DEFAULT_SEED (0), reported with the result
    channel: str | int = "mean"

    def __post_init__(self) -> None:
        self.method = as_choice(StatsMethod, self.method, "method")
        for name in ("target_length", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidValue(name, f"must be positive, got {value}")
        for name in ("freqm", "timem"):
            if getattr(self, name) < 0:
                raise InvalidValue(name, f"must be 0 or more, got {getattr(self, name)}")
        if not 0.0 <= self.mixup <= 1.0:
            raise InvalidValue("mixup", f"must be within [0, 1], got {self.mixup}")
        self.channel = parse_channel(self.channel)


# -- export ---------------------------------------------------------------------------------------
# What each format can hold: ONNX Runtime's CPU kernels have no bf16; a Hub folder is stored in fp32
# and cast at load time with transformers' torch_dtype; the Hub layout's feature extractor is a
# separate preprocessor_config.json, so it cannot take the front end.
EXPORT_PRECISIONS = {
    ExportFormat.onnx: (ExportPrecision.fp32, ExportPrecision.fp16),
    ExportFormat.torchscript: (ExportPrecision.fp32, ExportPrecision.fp16, ExportPrecision.bf16),
    ExportFormat.hub: (ExportPrecision.fp32,),
}
WHY_NOT_PRECISION = {
    ExportFormat.onnx: "ONNX Runtime has no bf16 kernels on the CPU; use fp16 or fp32",
    ExportFormat.hub: "a Hub folder is saved in fp32; transformers casts at load time (torch_dtype=torch.float16)",
}
WHY_NO_FRONTEND = "the Hub layout keeps the features in preprocessor_config.json, for ASTFeatureExtractor"


@dataclass(kw_only=True)
class ExportOptions:
    fmt: ExportFormat = ExportFormat.onnx
    with_frontend: bool = False
    precision: ExportPrecision = ExportPrecision.fp32
    verify: bool | None = None  # None: when the format's runtime is installed
    force: bool = False

    def __post_init__(self) -> None:
        self.fmt = as_choice(ExportFormat, self.fmt, "fmt")
        self.precision = as_choice(ExportPrecision, self.precision, "precision")
        if self.precision not in EXPORT_PRECISIONS[self.fmt]:
            raise InvalidValue(
                "precision",
                f"{self.precision} is not available for the {self.fmt} format",
                hint=WHY_NOT_PRECISION[self.fmt],
            )
        if self.with_frontend and self.fmt == ExportFormat.hub:
            raise InvalidValue("with_frontend", f"does not apply to the {self.fmt} format", hint=WHY_NO_FRONTEND)


# -- listen ---------------------------------------------------------------------------------------
class SampleFormat(Choice):
    """Raw PCM samples: little-endian 16- or 32-bit integers, or 32-bit floats."""

    s16le = "s16le"
    s32le = "s32le"
    f32le = "f32le"


@dataclass(kw_only=True)
class RawFormat:
    """Raw PCM on standard input: what ``arecord -t raw`` and ``ffmpeg -f s16le`` write."""

    rate: int
    channels: int
    sample_format: SampleFormat = SampleFormat.s16le

    def __post_init__(self) -> None:
        self.sample_format = as_choice(SampleFormat, self.sample_format, "sample_format")
        for name in ("rate", "channels"):
            if getattr(self, name) < 1:
                raise InvalidValue(name, f"must be positive, got {getattr(self, name)}")


@dataclass(kw_only=True)
class ListenOptions:
    """``ast listen``: where the audio comes from and how often it is tagged (what is reported is ``TagOptions``)."""

    source: str | None = None  # None: a microphone; '-': standard input
    input_device: str | None = None  # a microphone by name or index
    raw: RawFormat | None = None  # standard input is raw PCM of this format (else a WAV stream, or what ffmpeg decodes)
    hop: float = 1.0  # seconds of audio between two results
    events: bool = False  # only changes: a label rising above --threshold, and falling back for --hold seconds
    hold: float = 2.0

    def __post_init__(self) -> None:
        if not (self.hop > 0 and math.isfinite(self.hop)):
            raise InvalidValue("hop", f"must be a positive number of seconds, got {self.hop}")
        if not (self.hold >= 0 and math.isfinite(self.hold)):
            raise InvalidValue("hold", f"must be 0 or more seconds, got {self.hold}")
        if self.source not in (None, "-"):
            raise InvalidValue("source", f"must be '-' (standard input) or None (a microphone), got {self.source!r}")
        if self.raw is not None and self.source != "-":
            raise InvalidValue("raw", "describes standard input: source must be '-'")
