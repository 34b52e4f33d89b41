"""Configuration dataclasses that mirror transformers' ``config.json`` and ``preprocessor_config.json``.

No torch here: the CLI reads these to validate arguments before paying for the torch import.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .errors import InvalidValue, ModelError
from .files import write_atomic
from .jsonfiles import MB, read_json

_log = logging.getLogger(__name__)  # warning: a preprocessor_config.json whose max_length is not config.json's
MODEL_TYPE = "audio-spectrogram-transformer"
ARCHITECTURE = "ASTForAudioClassification"

# AudioSet statistics of the log-mel fbank (authors' src/run.sh; transformers' ASTFeatureExtractor defaults).
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
# The statistics of the authors' recipes (egs/*/run*.sh: dataset_mean, dataset_std), by name: --norm-stats NAME.
NORM_STATS = {
    "audioset": (AUDIOSET_MEAN, AUDIOSET_STD),
    "esc50": (-6.6268077, 5.358466),
    "speechcommands": (-6.845978, 5.5654526),
}


def parse_stats(value: str | tuple[float, float], also: tuple[str, ...] = ()) -> tuple[float, float]:
    """Normalisation statistics: a preset of the authors' recipes (``NORM_STATS``: audioset, esc50,
    speechcommands), ``"MEAN,STD"`` or a ``(mean, std)`` pair; the mean finite, the std finite and
    positive. ``also`` names the other words the caller accepts (for the message only)."""
    if isinstance(value, str):
        if value.lower() in NORM_STATS:
            return NORM_STATS[value.lower()]
        try:
            mean, std = (float(v) for v in value.split(","))
        except ValueError:
            accepted = f"{', '.join(also)} or MEAN,STD" if also else "MEAN,STD"
            raise InvalidValue(
                "norm_stats", f"must be {accepted}, or one of {', '.join(NORM_STATS)}, got {value!r}"
            ) from None
    else:
        mean, std = (float(v) for v in value)
    if not (std > 0 and math.isfinite(mean) and math.isfinite(std)):
        raise InvalidValue("norm_stats", f"needs a finite mean and a positive std, got {value!r}")
    return mean, std


SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"

# Every integer field with the most any real AST needs (the released ones: 768 wide, 12 layers, 12
# heads, 3072, patches of 16, 1024 frames, 128 bins), with room: a config beyond it is refused before
# anything is built (a hostile or mistaken hidden_size of 10^9 or 10^6 layers would allocate first).
_INT_FIELDS = {
    "hidden_size": 8192,
    "num_hidden_layers": 64,
    "num_attention_heads": 128,
    "intermediate_size": 65536,
    "patch_size": 64,
    "frequency_stride": 64,
    "time_stride": 64,
    "max_length": 100_000,
    "num_mel_bins": 1024,
}
MAX_LABELS = 100_000
_FLOAT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps")
# What each float may be: probabilities, a standard deviation, and the LayerNorms' eps (above 0: it keeps
# 1 / sqrt(var + eps) finite for a constant input; 1 is far above any model's 1e-12 to 1e-5).
_FLOAT_RANGES = {
    "hidden_dropout_prob": (0.0, 1.0),
    "attention_probs_dropout_prob": (0.0, 1.0),
    "initializer_range": (0.0, 10.0),
    "layer_norm_eps": (0.0, 1.0),
    "classifier_layer_norm_eps": (0.0, 1.0),
}
_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish")


J = TypeVar("J", bound="JsonFile")


class JsonFile:
    """A config read from and saved as ``FILE`` in a model folder (``from_dict``/``to_dict`` give its content)."""

    FILE: ClassVar[str] = ""
    MOST_BYTES: ClassVar[int] = MB  # refused unread beyond this (jsonfiles.read_json)

    @classmethod
    def from_dict(cls: type[J], data: dict[str, Any]) -> J:
        raise NotImplementedError  # each config reads its own fields

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_file(cls: type[J], path: str | os.PathLike) -> J:
        """``cls.from_dict`` of a JSON file; a validation error names the file's full path (a cached Hub file's too)."""
        try:
            return cls.from_dict(read_json(path, cls.MOST_BYTES, cls.FILE))
        except ModelError as exc:
            message = (
                exc.message.replace(f"{cls.FILE}:", f"{path}:", 1)
                if exc.message.startswith(f"{cls.FILE}:")
                else exc.message
            )
            raise ModelError(message, hint=exc.hint or "fix the file, or fetch the model again") from None

    def save(self, directory: str | os.PathLike) -> Path:
        return write_json(Path(directory) / self.FILE, self.to_dict())


@dataclass
class ASTConfig(JsonFile):
    """Field for field the ``ASTConfig`` of transformers; defaults are those of the released AudioSet model."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12  # transformers' value (the authors' timm blocks used 1e-6)
    patch_size: int = 16
    qkv_bias: bool = True
    frequency_stride: int = 10  # 16x16 patches overlapping by 6 bins/frames, as in the paper
    time_stride: int = 10
    max_length: int = 1024  # frames: 10.24 s at the 10 ms frame shift
    num_mel_bins: int = 128
    id2label: dict[int, str] = field(default_factory=lambda: {0: "LABEL_0", 1: "LABEL_1"})
    problem_type: str | None = None
    # Not transformers': the head LayerNorm's eps where it differs from the blocks' (the authors' .pth:
    # nn.LayerNorm's default 1e-5 for mlp_head[0], timm's 1e-6 in the blocks). None: layer_norm_eps.
    classifier_layer_norm_eps: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys we do not interpret, written back unchanged
    FILE: ClassVar[str] = "config.json"
    # MAX_LABELS labels named twice (id2label, label2id) at ~100 bytes each, with room
    MOST_BYTES: ClassVar[int] = 32 * MB

    def __post_init__(self) -> None:
        self.validate()

    # -- derived -----------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in range(self.num_labels)]

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.id2label.items()}

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (frequency, time): 12 x 101 for the default config."""
        return patch_grid(self.num_mel_bins, self.max_length, self.patch_size, self.frequency_stride, self.time_stride)

    @property
    def num_patches(self) -> int:
        f, t = self.grid
        return f * t

    @property
    def multi_label(self) -> bool:
        # transformers' AST heads carry no problem_type; the AudioSet head is multi-label (sigmoid).
        return self.problem_type != SINGLE_LABEL

    @property
    def head_norm_eps(self) -> float:
        return self.layer_norm_eps if self.classifier_layer_norm_eps is None else self.classifier_layer_norm_eps

    @property
    def default_activation(self) -> str:
        """What turns logits into scores: sigmoid for multi-label heads, softmax for single-label."""
        if self.problem_type == "regression":
            return "none"
        return "sigmoid" if self.multi_label else "softmax"

    def replace(self, **changes: Any) -> ASTConfig:
        return dataclasses.replace(self, **changes)

    def with_labels(self, names: list[str], source: str) -> ASTConfig:
        """This config with its outputs named ``names`` (as many as the model has outputs)."""
        if len(names) != self.num_labels:
            raise ModelError(
                f"{source}: the labels file names {len(names)} labels, the model has {self.num_labels} outputs"
            )
        return self.replace(id2label=dict(enumerate(names)))

    # -- validation --------------------------------------------------------------------------
    def validate(self) -> None:
        for name, most in _INT_FIELDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ModelError(f"config.json: '{name}' must be a positive integer, got {value!r}")
            if value > most:
                raise ModelError(f"config.json: '{name}' is {value}, more than any AST has (at most {most})")
        floats = {name: getattr(self, name) for name in _FLOAT_FIELDS}
        if self.classifier_layer_norm_eps is not None:
            floats["classifier_layer_norm_eps"] = self.classifier_layer_norm_eps
        for name, value in floats.items():  # JSON's NaN and Infinity too: a NaN eps makes every score NaN
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ModelError(f"config.json: '{name}' must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ModelError(f"config.json: '{name}' must be a finite number, got {value!r}")
            low, high = _FLOAT_RANGES[name]
            if not low <= value <= high or (name.endswith("eps") and value == 0):
                opening = "(" if name.endswith("eps") else "["
                raise ModelError(f"config.json: '{name}' is {value!r}, outside {opening}{low}, {high}]")
        if not isinstance(self.qkv_bias, bool):
            raise ModelError(f"config.json: 'qkv_bias' must be true or false, got {self.qkv_bias!r}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ModelError(
                f"config.json: hidden_act {self.hidden_act!r} is not supported (one of {', '.join(_ACTIVATIONS)})"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ModelError(
                f"config.json: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.num_mel_bins < self.patch_size or self.max_length < self.patch_size:
            raise ModelError(f"config.json: num_mel_bins and max_length must be at least patch_size {self.patch_size}")
        if self.problem_type not in (None, SINGLE_LABEL, MULTI_LABEL, "regression"):
            raise ModelError(f"config.json: unknown problem_type {self.problem_type!r}")
        if sorted(self.id2label) != list(range(len(self.id2label))) or not self.id2label:
            raise ModelError("config.json: id2label must map 0..N-1 to label names")

    # -- config.json -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ASTConfig:
        if not isinstance(data, dict):
            raise ModelError("config.json: expected a JSON object")
        model_type = data.get("model_type")
        if model_type not in (None, MODEL_TYPE):
            raise ModelError(f"config.json: model_type is {model_type!r}, not an Audio Spectrogram Transformer")
        known = {f.name for f in dataclasses.fields(cls)} - {"id2label", "extra"}
        kwargs = {k: data[k] for k in known if k in data}
        raw = data.get("id2label")
        if raw is None:
            n = data.get("num_labels", 2)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ModelError(
                    f"config.json: 'num_labels' must be a positive integer, got {n!r}", hint="or give id2label"
                )
            if n > MAX_LABELS:
                raise ModelError(f"config.json: 'num_labels' is {n}, more than any AST has (at most {MAX_LABELS})")
            id2label = {i: f"LABEL_{i}" for i in range(n)}
        else:
            if isinstance(raw, dict) and len(raw) > MAX_LABELS:
                raise ModelError(
                    f"config.json: id2label names {len(raw)} labels, more than any AST has (at most {MAX_LABELS})"
                )
            try:
                id2label = {int(k): str(v) for k, v in raw.items()}
            except (AttributeError, TypeError, ValueError):
                raise ModelError("config.json: id2label must be an object of index -> label") from None
        # _name_or_path: where transformers last loaded it from, a local path that means nothing elsewhere
        skip = known | {"id2label", "label2id", "num_labels", "_name_or_path"}
        extra = {k: v for k, v in data.items() if k not in skip}
        try:
            return cls(id2label=id2label, extra=extra, **kwargs)
        except TypeError as exc:
            raise ModelError(f"config.json: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        data.setdefault("architectures", [ARCHITECTURE])
        data["model_type"] = MODEL_TYPE
        for f in dataclasses.fields(self):
            if f.name in ("id2label", "extra"):
                continue
            value = getattr(self, f.name)
            if f.name in ("problem_type", "classifier_layer_norm_eps") and value is None:
                continue
            data[f.name] = value
        data["id2label"] = {str(i): label for i, label in sorted(self.id2label.items())}
        data["label2id"] = {label: i for i, label in sorted(self.id2label.items())}
        return dict(sorted(data.items()))


@dataclass
class PreprocessorConfig(JsonFile):
    """``preprocessor_config.json`` of transformers' ``ASTFeatureExtractor``."""

    sampling_rate: int = 16000
    num_mel_bins: int = 128
    max_length: int = 1024
    mean: float = AUDIOSET_MEAN
    std: float = AUDIOSET_STD
    do_normalize: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    FILE: ClassVar[str] = "preprocessor_config.json"

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ModelError(f"preprocessor_config.json: '{name}' must be a finite number, got {value!r}")
        for name in ("sampling_rate", "num_mel_bins", "max_length"):  # JSON's NaN and Infinity are floats
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not number or value <= 0 or value % 1:
                raise ModelError(f"preprocessor_config.json: '{name}' must be a positive whole number, got {value!r}")
            if value > _INT_FIELDS.get(name, value):
                most = _INT_FIELDS[name]
                raise ModelError(
                    f"preprocessor_config.json: '{name}' is {value}, more than any AST takes (at most {most})"
                )
        if self.std <= 0:
            raise ModelError(f"preprocessor_config.json: std must be positive, got {self.std}")
        if not isinstance(self.do_normalize, bool):
            raise ModelError(
                f"preprocessor_config.json: 'do_normalize' must be true or false, got {self.do_normalize!r}"
            )
        if self.extra.get("feature_size", 1) != 1:  # values a sample: ASTFeatureExtractor takes mono waveforms
            raise ModelError(
                f"preprocessor_config.json: 'feature_size' must be 1 (mono), got {self.extra['feature_size']!r}"
            )
        if self.sampling_rate != 16000:
            raise ModelError(
                f"preprocessor_config.json: sampling_rate {self.sampling_rate} is not supported: AST models take 16 kHz"
            )

    def check_against(self, config: ASTConfig, path: str | os.PathLike) -> None:
        """Mel bins other than config.json's are refused (the model takes those); another max_length is
        announced: the window is config.json's (the position table's), ``ast stats --write`` may differ."""
        if self.num_mel_bins != config.num_mel_bins:
            raise ModelError(
                f"{path}: 'num_mel_bins' is {self.num_mel_bins}, config.json's is {config.num_mel_bins}",
                hint="the model takes config.json's: make them equal",
            )
        if self.max_length != config.max_length:
            frames = config.max_length
            _log.warning(
                f"{path}: 'max_length' is {self.max_length}, config.json's {frames}: windows of {frames} frames"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessorConfig:
        if not isinstance(data, dict):
            raise ModelError("preprocessor_config.json: expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: data[k] for k in known if k in data}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(extra=extra, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "feature_extractor_type": "ASTFeatureExtractor",
            "feature_size": 1,
            "padding_side": "right",
            "padding_value": 0.0,
            "return_attention_mask": False,
            **self.extra,
        }
        for f in dataclasses.fields(self):
            if f.name != "extra":
                data[f.name] = getattr(self, f.name)
        return dict(sorted(data.items()))


def read_labels_csv(path: str | os.PathLike) -> list[str]:
    """Label names from the authors' ``class_labels_indices.csv`` (index,mid,display_name) or a
    plain file of one name a line."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f) if row]
    except OSError as exc:
        raise ModelError(f"{path}: cannot read labels ({exc.strerror})") from None
    if rows and rows[0] and rows[0][0].strip().lower() == "index":
        header = [h.strip().lower() for h in rows[0]]
        col = header.index("display_name") if "display_name" in header else len(header) - 1
        pairs = sorted((int(r[0]), r[col]) for r in rows[1:])
        return [name for _, name in pairs]
    return [row[-1] for row in rows]


def patch_grid(num_mel_bins: int, frames: int, patch: int, fstride: int, tstride: int) -> tuple[int, int]:
    """Number of patches along frequency and time (as Conv2d computes them, no padding)."""
    return (num_mel_bins - patch) // fstride + 1, (frames - patch) // tstride + 1


def write_json(path: Path, data: Any) -> Path:
    """Indented JSON, written atomically (``files.write_atomic``)."""
    return write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
