"""What each command's core takes: the closed choices (str-valued Enums) and the option objects.

The Enums are the only list of each choice: Typer validates and completes them and ``--help`` shows
their values; ``Choice.parse`` gives Python callers the same one-line error. Option objects are
keyword-only dataclasses that check their own values, so a new field never shifts another and a bad
value fails before any model is loaded. No torch or numpy here: the CLI builds these before it pays
for the heavy imports.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from .errors import UsageError
from .config import NORM_STATS
from .hub import DEFAULT_MODEL

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


def choice(name: str, values: str, doc: str) -> type[Choice]:
    """A ``Choice`` whose members are named as their values: ``choice("Aggregate", "max mean", ...)``."""
    members = Choice(name, [(value, value) for value in values.split()], module=__name__)
    members.__doc__ = doc
    return members


# what the commands write
RecordFormat = choice("RecordFormat", "table json jsonl csv tsv", "``ast tag``: records on standard output.")
BatchFormat = choice("BatchFormat", "csv tsv json jsonl audacity", "``ast batch``: the output file (a folder of label tracks for audacity).")
ReportFormat = choice("ReportFormat", "table json", "``ast eval``, ``ast stats``, ``ast models``: one report.")

# how scores are made
Aggregate = choice("Aggregate", "max mean", "How the window scores of a label become the file's.")
Activation = choice("Activation", "sigmoid softmax none", "What turns logits into scores.")
FeatureFrontend = choice(
    "FeatureFrontend", "transformers authors",
    "transformers: ASTFeatureExtractor's fbank (the default); authors: each window's waveform mean removed first, as the authors' loader does.",
)  # fmt: skip

# where and how the model runs
Device = choice("Device", "auto cpu cuda mps", "Where the model runs (``cuda:N`` too, from Python).")
Precision = choice(
    "Precision", "auto fp32 bf16 fp16 int8",
    "Inference precision. auto: fp16 on CUDA, bf16 on a CPU with native bf16, else fp32; int8: CPU only, dynamically quantized Linear layers.",
)  # fmt: skip
Engine = choice("Engine", "local ray", "``ast batch``: this machine's decode workers and model, or a Ray cluster's CPU tasks and model actors.")

# export and stats
ExportFormat = choice("ExportFormat", "onnx torchscript hub", "What ``ast export`` writes.")
ExportPrecision = choice("ExportPrecision", "fp32 fp16 bf16", "The precision an exported graph computes in (inputs and scores stay float32).")
StatsMethod = choice("StatsMethod", "authors exact", "get_norm_stats.py's (augmented, mean of batch stats) or exact (pooled).")


def parse_channel(channel: str | int) -> str | int:
    """``--channel``: ``mean`` or a 0-based channel index."""
    if isinstance(channel, int):
        index = channel
    elif channel == "mean":
        return "mean"
    else:
        try:
            index = int(channel)
        except ValueError:
            raise UsageError(f"--channel must be 'mean' or a channel number, got {channel!r}") from None
    if index < 0:
        raise UsageError(f"--channel must be 'mean' or a channel number >= 0, got {index}")
    return index


def check_device(device: str) -> str:
    """A ``Device`` value, or ``cuda:N`` for one GPU of several."""
    if device.startswith("cuda:") and device[5:].isdigit():
        return device
    return Device.parse(device, "--device")


def fields_of(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` (a command's parameters) that are fields of the dataclass ``cls``:
    ``TagOptions(**fields_of(TagOptions, locals()))`` builds it by keyword from the flags of the same name."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


# -- tag, batch, embed ----------------------------------------------------------------------------
@dataclass(kw_only=True)
class TagOptions:
    """How inputs become labels; what ``ast tag``, ``ast batch`` and ``ast embed`` share.
    ``window``/``hop`` in seconds (None: the model's window, half of it)."""

    top: int = 5  # 0: every label
    threshold: float | None = None
    window: float | None = None
    hop: float | None = None
    aggregate: Aggregate = Aggregate.max
    activation: Activation | None = None  # None: from the model's problem_type
    timeline: bool = False
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    channel: str | int = "mean"
    batch_size: int | None = None  # windows a forward pass; None: Tagger.windows_per_batch decides
    all_scores: bool = False  # also every label's score: "scores" {label: score} in the record
    merge: bool = False  # also "events": consecutive windows carrying a label joined (implies timeline)
    frontend: FeatureFrontend = FeatureFrontend.transformers

    def __post_init__(self) -> None:
        self.aggregate = Aggregate.parse(self.aggregate, "--aggregate")
        self.frontend = FeatureFrontend.parse(self.frontend, "--frontend")
        if self.activation is not None:
            self.activation = Activation.parse(self.activation, "--activation")
        if self.top < 0:
            raise UsageError(f"--top must be 0 (all labels) or more, got {self.top}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0 and self.activation != Activation.none:
            raise UsageError(f"--threshold must be within [0, 1], got {self.threshold}")
        for name in ("window", "hop"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise UsageError(f"--{name} must be a positive number of seconds, got {value}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
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

    def __post_init__(self) -> None:
        self.fmt = BatchFormat.parse(self.fmt, "--format")
        self.engine = Engine.parse(self.engine, "--engine")
        check_engine(self)
        if self.workers is not None and self.workers < 0:
            raise UsageError(f"--workers must be 0 (decode in the main process) or more, got {self.workers}")
        if self.resume and self.out == "-":
            raise UsageError("--resume needs an output file", hint="give -o FILE")
        if self.resume and self.force:
            raise UsageError("--resume and --force exclude each other")


RAY_FLAGS = {"ray_address": "--ray-address", "actors": "--actors", "gpus_per_actor": "--gpus-per-actor"}


def check_engine(options: BatchOptions) -> None:
    """The flags of ``--engine ray`` only with it, and Ray installed (looked up, not imported: that
    takes a second, and ``ast batch --help`` never pays it)."""
    if options.engine == Engine.local:
        given = [flag for name, flag in RAY_FLAGS.items() if getattr(options, name) is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only work with --engine ray")
        return
    if options.workers is not None:
        raise UsageError("--workers is for --engine local", hint="with --engine ray decoding runs in Ray's CPU tasks; --actors sets the model replicas")
    if (options.actors is not None and options.actors < 1) or (options.gpus_per_actor is not None and options.gpus_per_actor < 0):
        raise UsageError("--actors must be at least 1 and --gpus-per-actor at least 0")
    if not ray_installed():
        raise ray_missing()


def ray_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # a module hidden by a None in sys.modules
        return False


def ray_missing() -> UsageError:
    return UsageError("--engine ray needs Ray, which is not installed", hint="pip install 'ast-cli[ray]'")


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
        self.method = StatsMethod.parse(self.method, "--method")
        if (self.target_length is not None and self.target_length < 1) or self.batch_size < 1 or self.freqm < 0 or self.timem < 0 or not 0.0 <= self.mixup <= 1.0:
            raise UsageError("--target-length and --batch-size must be positive, --freqm/--timem >= 0, --mixup within [0, 1]")
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


@dataclass(kw_only=True)
class ExportOptions:
    fmt: ExportFormat = ExportFormat.onnx
    with_frontend: bool = False
    precision: ExportPrecision = ExportPrecision.fp32
    verify: bool | None = None  # None: when the format's runtime is installed
    labels: str | None = None  # a labels CSV for a .pth
    force: bool = False

    def __post_init__(self) -> None:
        self.fmt = ExportFormat.parse(self.fmt, "--format")
        self.precision = ExportPrecision.parse(self.precision, "--precision")
        if self.precision not in EXPORT_PRECISIONS[self.fmt]:
            raise UsageError(f"--precision {self.precision} is not available for --format {self.fmt}", hint=WHY_NOT_PRECISION[self.fmt])
        if self.with_frontend and self.fmt == ExportFormat.hub:
            raise UsageError(
                f"--with-frontend does not apply to --format {self.fmt}",
                hint="the Hub layout keeps the features in preprocessor_config.json, for ASTFeatureExtractor",
            )


# -- finetune -------------------------------------------------------------------------------------
Recipe = choice(
    "Recipe", "default pretrained scratch probe esc50 speechcommands audioset audioset-balanced",
    "``ast finetune``: whose values (``RECIPES``) the flags left unset take; default: pretrained or scratch by the base, probe with --freeze-backbone.",
)  # fmt: skip
WARMUP_LINEAR, WARMUP_AUTHORS = "linear", "authors"  # RecipeValues.warmup_rule (training.lr_factor)
SCHEDULE_STEP, SCHEDULE_COSINE = "step", "cosine"  # RecipeValues.schedule
ADAM, ADAMW = "adam", "adamw"  # RecipeValues.optimizer


@dataclass(frozen=True, kw_only=True)
class RecipeValues:
    """One fine-tuning recipe: a run script's values (the authors' ``egs/*/run*.sh``) and the rules of
    their training loop (``src/traintest.py``, ``src/dataloader.py``)."""

    lr: float  # the peak learning rate
    epochs: int
    batch_size: int  # per process
    freqm: int  # SpecAugment: max mel bins of the frequency mask
    timem: int | None  # max frames of the time mask; None: 20 % of the target length
    mixup: float  # probability of mixing a clip's waveform with another's
    target_length: int | None  # frames; None: the longest training clip, at most the base model's
    noise: bool  # dataloader.py's noise: uniform noise (up to U/10) then a roll of -10..9 frames, after normalisation
    loss: str  # CE, BCE (one-hot targets for single-label data), or auto: CE for single-label data, BCE for multi-label
    warmup: int | None  # steps; 0: none; None: 1000, or the first epoch if it is shorter
    warmup_rule: str  # linear: (step + 1) / warmup; authors: step / warmup, set at every 50th step (traintest.py)
    decay_start: int  # MultiStepLR(range(decay_start, 1000, decay_step), gamma=decay), stepped after each epoch
    decay_step: int
    decay: float
    schedule: str = SCHEDULE_STEP  # step: the decay above; cosine: after the warm-up, half a cosine from the peak to 0 at the run's end
    optimizer: str = ADAM  # adam: the authors' (betas 0.95/0.999, weight decay added to the gradient); adamw: decoupled decay
    weight_decay: float = 5e-7  # the authors'
    lr_width: int | None = None  # lr is for a model this wide: a base of hidden size H trains at lr * lr_width / H


# The authors' numbers, from egs/esc50/run_esc.sh, egs/speechcommands/run_sc.sh and egs/audioset/run.sh
# (set=full, set=balanced). `pretrained` (the default from an AudioSet base) is their advice for new data (README: mask 48 of 128 bins and 20 %
# of the frames; the data's own length) on their ESC-50 run's lr, epochs, batch and decay, with this
# tool's linear warm-up.
# tests/test_training.py compares the schedules with torch's MultiStepLR and their warm-up loop.
#
# `scratch` trains a base that has not learned audio (random, small or partly trained) the way small
# vision and audio transformers are trained from scratch: AdamW (weight decay 0.05) with a short linear
# warm-up and a cosine decay to 0 over the run, no masking (a random model needs every frame of a small set
# before it can learn from masked ones), more epochs, and a learning rate inversely proportional to the
# width (muP's rule for Adam on hidden matrices): 1e-3 at 192 wide, 2.5e-4 at 768.
# `probe` (--freeze-backbone) trains the head alone on embeddings computed once: a linear model, which
# wants a large learning rate, many cheap epochs and no augmentation (the embeddings are not augmented).
# benchmarks/spoken_digits.py measures it; tests/test_training.py::test_scratch_recipe_learns_spoken_digits checks it.
RECIPES: dict[Recipe, RecipeValues] = {
    Recipe("pretrained"): RecipeValues(lr=1e-5, epochs=25, batch_size=48, freqm=48, timem=None, mixup=0.0, target_length=None, noise=False, loss="auto", warmup=None, warmup_rule=WARMUP_LINEAR, decay_start=5, decay_step=1, decay=0.85),
    Recipe("scratch"): RecipeValues(lr=1e-3, lr_width=192, epochs=30, batch_size=16, freqm=0, timem=0, mixup=0.0, target_length=None, noise=False, loss="auto", warmup=None, warmup_rule=WARMUP_LINEAR, decay_start=0, decay_step=1, decay=1.0, schedule=SCHEDULE_COSINE, optimizer=ADAMW, weight_decay=0.05),
    Recipe("probe"): RecipeValues(lr=1e-3, epochs=50, batch_size=32, freqm=0, timem=0, mixup=0.0, target_length=None, noise=False, loss="auto", warmup=None, warmup_rule=WARMUP_LINEAR, decay_start=0, decay_step=1, decay=1.0, schedule=SCHEDULE_COSINE, optimizer=ADAMW, weight_decay=1e-4),
    Recipe("esc50"): RecipeValues(lr=1e-5, epochs=25, batch_size=48, freqm=24, timem=96, mixup=0.0, target_length=512, noise=False, loss="CE", warmup=0, warmup_rule=WARMUP_AUTHORS, decay_start=5, decay_step=1, decay=0.85),
    Recipe("speechcommands"): RecipeValues(lr=2.5e-4, epochs=30, batch_size=128, freqm=48, timem=48, mixup=0.6, target_length=128, noise=True, loss="BCE", warmup=0, warmup_rule=WARMUP_AUTHORS, decay_start=5, decay_step=1, decay=0.85),
    Recipe("audioset"): RecipeValues(lr=1e-5, epochs=5, batch_size=12, freqm=48, timem=192, mixup=0.5, target_length=1024, noise=False, loss="BCE", warmup=1000, warmup_rule=WARMUP_AUTHORS, decay_start=2, decay_step=1, decay=0.5),
    Recipe("audioset-balanced"): RecipeValues(lr=5e-5, epochs=25, batch_size=12, freqm=48, timem=192, mixup=0.5, target_length=1024, noise=False, loss="BCE", warmup=1000, warmup_rule=WARMUP_AUTHORS, decay_start=10, decay_step=5, decay=0.5),
}  # fmt: skip
RECIPE_FLAGS = ("lr", "epochs", "batch_size", "freqm", "timem", "mixup", "target_length", "warmup", "weight_decay")  # None: the recipe's
AUDIOSET_LABELS = 527  # a base with this many outputs learned AudioSet: the authors' fine-tuning recipe suits it


def parse_norm_stats(value: str, words: tuple[str, ...] = ("auto", "base")) -> tuple[float, float] | str:
    """``--norm-stats``: one of ``words`` (finetune's auto and base), a preset of the authors' recipes
    (``config.NORM_STATS``: audioset, esc50, speechcommands), or MEAN,STD."""
    if value in words:
        return value
    if value.lower() in NORM_STATS:
        return NORM_STATS[value.lower()]
    try:
        mean, std = (float(v) for v in value.split(","))
    except ValueError:
        accepted = f"{', '.join(words)} or MEAN,STD" if words else "MEAN,STD"
        raise UsageError(f"--norm-stats must be {accepted}, or one of {', '.join(NORM_STATS)}, got {value!r}") from None
    if not (std > 0 and math.isfinite(mean) and math.isfinite(std)):
        raise UsageError(f"--norm-stats: mean must be finite and std positive, got {value!r}")
    return mean, std


@dataclass(kw_only=True)
class ModelOptions:
    """How to read a model beyond its name: what ``checkpoints.load`` takes from the command line."""

    labels: str | None = None  # a labels CSV naming a .pth's outputs
    fstride: int | None = None  # an authors' .pth: the architecture it was trained with, where its
    tstride: int | None = None  # position table does not say it unambiguously
    input_tdim: int | None = None
    norm_stats: str | None = None  # MEAN,STD or a preset, over the checkpoint's own statistics

    def __post_init__(self) -> None:
        for flag, value in (("--fstride", self.fstride), ("--tstride", self.tstride), ("--input-tdim", self.input_tdim)):
            if value is not None and value < 1:
                raise UsageError(f"{flag} must be a positive number, got {value}")
        if self.norm_stats is not None:
            parse_norm_stats(self.norm_stats, words=())


@dataclass(kw_only=True)
class FinetuneOptions:
    """The flags of ``ast finetune``. A field of ``RECIPE_FLAGS`` left None takes ``recipe``'s value
    (``values()``, ``resolved()``): an explicit flag wins over the recipe. ``default`` stands for
    ``pretrained`` or ``scratch`` until the base is known (``for_base``)."""

    base: str = DEFAULT_MODEL
    recipe: Recipe = Recipe("default")
    val_dir: str | None = None
    val_split: float = 0.1
    seed: int = 0
    target_length: int | None = None  # None: the recipe's (default: the longest training clip, at most the base's)
    freeze_backbone: bool = False
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None  # per process
    mixup: float | None = None
    freqm: int | None = None
    timem: int | None = None  # the recipe's (default: 20 % of target_length, the authors' advice)
    warmup: int | None = None  # steps; the recipe's (default: 1000 or the first epoch if shorter)
    weight_decay: float | None = None  # the recipe's (pretrained: the authors' 5e-7 with Adam; scratch: 0.05 with AdamW)
    patience: int = 0  # epochs without improvement before stopping; 0: never stop early
    labels_csv: str | None = None
    norm_stats: str = "auto"
    fstride: int | None = None  # an authors' .pth as --base: its architecture, where its weights leave it open
    tstride: int | None = None
    input_tdim: int | None = None
    resume: bool = False
    force: bool = False
    keep_state: bool = False  # keep OUT_DIR/.train_state/ (what --resume needs) after the run finishes
    device: str = "auto"
    precision: Precision = Precision.auto
    workers: int = 2

    def __post_init__(self) -> None:
        self.recipe = Recipe.parse(self.recipe, "--recipe")
        positive = {"--epochs": self.epochs, "--batch-size": self.batch_size, "--lr": self.lr}
        for flag, value in positive.items():
            if value is not None and not value > 0:
                raise UsageError(f"{flag} must be positive, got {value}")
        at_least_zero = {"--freqm": self.freqm, "--timem": self.timem, "--warmup": self.warmup, "--patience": self.patience,
                         "--weight-decay": self.weight_decay, "--workers": self.workers}  # fmt: skip
        for flag, value in at_least_zero.items():
            if value is not None and value < 0:
                raise UsageError(f"{flag} must be 0 or more, got {value}")
        if self.mixup is not None and not 0 <= self.mixup <= 1:
            raise UsageError(f"--mixup is a probability between 0 and 1, got {self.mixup}")
        if self.target_length is not None and self.target_length < 16:
            raise UsageError(f"--target-length must be at least 16 frames (one patch), got {self.target_length}")
        self.device = check_device(self.device)
        self.precision = Precision.parse(self.precision, "--precision")
        if self.precision == Precision.int8:  # dynamic quantization has no backward pass: it trained in fp32 without saying so
            raise UsageError("--precision int8 is for inference only: ast finetune trains in fp32, bf16 or fp16",
                             hint="train with --precision auto, then run the model with ast tag --precision int8")  # fmt: skip
        parse_norm_stats(self.norm_stats)

    def values(self) -> RecipeValues:
        """The recipe's values with the flags given over them (``default``: resolve it with ``for_base`` first)."""
        if self.recipe == Recipe("default"):
            raise ValueError("the default recipe depends on the base model: call for_base() first")
        given = {name: getattr(self, name) for name in RECIPE_FLAGS if getattr(self, name) is not None}
        return dataclasses.replace(RECIPES[self.recipe], **given)

    def for_base(self, pretrained: bool, hidden_size: int) -> FinetuneOptions:
        """These options for a base that learned AudioSet (``pretrained``) or not: ``default`` becomes
        ``pretrained`` or ``scratch`` (``probe`` with --freeze-backbone), and a recipe whose learning rate scales with the width gets the
        base's (unless --lr was given)."""
        recipe = self.recipe
        if recipe == Recipe("default") and self.freeze_backbone:
            recipe = Recipe("probe")
        elif recipe == Recipe("default"):
            recipe = Recipe("pretrained") if pretrained else Recipe("scratch")
        chosen = RECIPES[recipe]
        lr = self.lr
        if lr is None and chosen.lr_width:
            lr = float(f"{chosen.lr * chosen.lr_width / hidden_size:.3g}")
        return dataclasses.replace(self, recipe=recipe, lr=lr)

    def resolved(self) -> FinetuneOptions:
        """These options with the recipe's values in the fields left to it (target_length, timem and
        warmup may stay None: from the data, as the recipe says)."""
        values = self.values()
        return dataclasses.replace(self, **{name: getattr(values, name) for name in RECIPE_FLAGS})

    def validate(self) -> None:
        """Flags that exclude each other, checked when a run starts (each value is checked when the
        object is made)."""
        if self.val_dir and self.labels_csv:
            raise UsageError("--val with --labels is not supported: list every clip in the CSV and use --val-split")
        if self.resume and self.force:
            raise UsageError("--resume and --force contradict each other: give one")
        if self.labels_csv and self.recipe != Recipe("default") and self.values().loss == "CE":
            raise UsageError(f"--recipe {self.recipe} trains with cross-entropy, for single-label data: not with --labels",
                             hint="use --recipe default, pretrained, scratch, audioset or audioset-balanced (BCE) for multi-label data")  # fmt: skip


# -- listen ---------------------------------------------------------------------------------------
SampleFormat = choice("SampleFormat", "s16le s32le f32le", "Raw PCM samples: little-endian 16- or 32-bit integers, or 32-bit floats.")


@dataclass(kw_only=True)
class RawFormat:
    """Raw PCM on standard input: what ``arecord -t raw`` and ``ffmpeg -f s16le`` write."""

    rate: int
    channels: int
    sample_format: SampleFormat = SampleFormat.s16le

    def __post_init__(self) -> None:
        self.sample_format = SampleFormat.parse(self.sample_format, "--sample-format")
        if self.rate < 1 or self.channels < 1:
            raise UsageError("--rate and --channels must be positive", hint="e.g. --raw --rate 16000 --channels 1")


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
            raise UsageError(f"--hop must be a positive number of seconds, got {self.hop}")
        if not (self.hold >= 0 and math.isfinite(self.hold)):
            raise UsageError(f"--hold must be 0 or more seconds, got {self.hold}")
        if self.source not in (None, "-"):
            raise UsageError(f"ast listen takes '-' (standard input) or nothing (a microphone), got {self.source!r}",
                             hint="for files use ast tag; for a URL: ffmpeg -i URL -f s16le -ac 1 -ar 16000 - | ast listen - --raw --rate 16000 --channels 1")  # fmt: skip
        if self.raw is not None and self.source != "-":
            raise UsageError("--raw describes standard input", hint="give '-' as the source")

