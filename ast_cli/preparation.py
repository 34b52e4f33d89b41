"""What a fine-tuning run starts from: the base model (loaded before any data is read), whether it
learned AudioSet, the training and validation clips, and the model with its new head and its
normalisation (``--norm-stats auto``: the exact statistics of the training clips, cached in OUT_DIR),
or the interrupted run's model for ``--resume``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

import torch

from . import checkpoints, probe
from . import data as D
from . import runfolder as folder
from .config import MULTI_LABEL, SINGLE_LABEL, ASTConfig, PreprocessorConfig, write_json
from .errors import ModelError, UsageError
from .finetune_options import FinetuneOptions, parse_norm_stats
from .model import AST
from .recipes import learned_audioset


class Clips(NamedTuple):
    """The training and validation sets, their cached fbanks (None where not kept) and the training
    clips' lengths in frames."""

    train: D.LabelledSet
    fbanks: list[Any]
    frames: list[int]
    val: D.LabelledSet
    val_fbanks: list[Any]


NEW = "new:"  # --base new:SIZE: a fresh AST of a named size, no file
NEW_SIZES: dict[str, dict[str, Any]] = {  # hidden size, layers, heads, MLP width
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256},
    "small": {"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 3, "intermediate_size": 768},
    # the AudioSet model's architecture (ASTConfig's defaults)
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}
NEW_MAX_LENGTH = 1024  # frames of a new base: the AudioSet model's; the run cuts it to the data's length


def load_base(options: FinetuneOptions) -> checkpoints.Checkpoint:
    """The base model, before any data is read: a missing or unreachable base fails at once."""
    if options.base.startswith(NEW):
        return new_base(options)
    try:
        return checkpoints.load(
            options.base,
            max_length=options.target_length,
            fstride=options.fstride,
            tstride=options.tstride,
            input_tdim=options.input_tdim,
        )
    except ModelError as exc:  # the hints of the model loaders name ast tag's -m
        hint = exc.hint.replace("(-m; --base for finetune)", "(--base)") if exc.hint else exc.hint
        raise type(exc)(f"--base {exc.message}", hint=hint) from None


def new_base(options: FinetuneOptions) -> checkpoints.Checkpoint:
    """``--base new:SIZE``: a random AST of that size, initialised as transformers initialises
    ASTForAudioClassification: Linear and conv weights normal of std ``initializer_range`` (0.02; drawn
    truncated at +-2, which at this std cuts nothing), biases 0, LayerNorms 1 and 0, the cls and
    distillation tokens and the position embeddings 0 (``ASTPreTrainedModel._init_weights``); from ``--seed``;
    ``--fstride``/``--tstride`` set its patch grid (default the authors' 10/10)."""
    size = options.base[len(NEW) :]
    if size not in NEW_SIZES:
        names = ", ".join(NEW + name for name in NEW_SIZES)
        raise ModelError(f"--base {options.base}: no such size", hint=f"give one of {names}")
    config = ASTConfig(
        **NEW_SIZES[size],
        max_length=options.target_length or NEW_MAX_LENGTH,
        frequency_stride=options.fstride or ASTConfig.frequency_stride,
        time_stride=options.tstride or ASTConfig.time_stride,
    )
    torch.manual_seed(options.seed)
    model = AST(config).eval()
    with torch.no_grad():  # transformers' ASTPreTrainedModel._init_weights zeroes the tokens and positions
        for token in (model.cls_token, model.dist_token, model.pos_embed):
            token.zero_()
    return checkpoints.Checkpoint(model, PreprocessorConfig(max_length=config.max_length), options.base)


def recipe_for_base(spec: str, config: ASTConfig) -> tuple[bool, str]:
    """Whether the base learned AudioSet (``recipes.learned_audioset``), and why it is taken to; a new
    base (``new:SIZE``) is said as what it is."""
    if spec.startswith(NEW):
        size = spec[len(NEW) :]
        return False, f"a new {size} AST ({config.hidden_size} wide, {config.num_hidden_layers} layers), random init"
    return learned_audioset(spec, config.num_labels, config.hidden_size)


def load_data(
    data_dir: str,
    options: FinetuneOptions,
    keep_fbanks: bool,
    progress: bool | None = None,
    known: probe.FrameCache | None = None,
) -> Clips:
    """Training and validation sets (unreadable clips dropped), with cached fbanks and training clip
    lengths; ``known``: clips whose frames a cache holds are not decoded again (the cached probe)."""
    found, fbanks, frames = D.scan(
        D.discover(data_dir, options.labels_csv), keep=keep_fbanks, progress=progress, known=known
    )
    if options.val_dir:
        val = D.relabel(D.folder_classes(options.val_dir), found.labels, "the training set")
        val, val_fbanks, _ = D.scan(val, keep=keep_fbanks, progress=progress, known=known)
        return Clips(found, fbanks, frames, val, val_fbanks)
    train, val = D.stratified_split(found, options.val_split, options.seed)
    position = {clip.path: i for i, clip in enumerate(found.clips)}

    def pick(values: list[Any], part: D.LabelledSet) -> list[Any]:
        return [values[position[c.path]] for c in part.clips]

    train.skipped = found.skipped
    return Clips(train, pick(fbanks, train), pick(frames, train), val, pick(fbanks, val))


def initial_model(
    base: checkpoints.Checkpoint,
    options: FinetuneOptions,
    train: D.LabelledSet,
    frames: list[int],
    out: Path,
    progress: bool | None = None,
) -> tuple[AST, PreprocessorConfig]:
    """The base model at the target length with a fresh head of one output per class."""
    model, config = base.model, base.model.config
    target = options.target_length or D.default_target_length(frames, config.max_length)
    if target != config.max_length:  # the default length is known only once the base is loaded
        model = checkpoints.build_model(
            config.replace(max_length=target), model.state_dict(), options.base, saved_grid=config.grid
        )
    torch.manual_seed(options.seed)  # the new head's initialisation
    model.reset_classifier(len(train.labels))
    model.config = model.config.replace(
        id2label=dict(enumerate(train.labels)), problem_type=MULTI_LABEL if train.multi_label else SINGLE_LABEL
    )
    stats = parse_norm_stats(options.norm_stats)
    if isinstance(stats, tuple):
        mean, std = stats
    elif stats == "base":
        mean, std = base.preprocessor.mean, base.preprocessor.std
    else:  # auto
        mean, std = dataset_norm_stats([c.path for c in train.clips], target, model.config.num_mel_bins, out, progress)
    return model, PreprocessorConfig(max_length=target, num_mel_bins=model.config.num_mel_bins, mean=mean, std=std)


def dataset_norm_stats(
    paths: list[str], target_length: int, num_mel_bins: int, out: Path, progress: bool | None = None
) -> tuple[float, float]:
    """``--norm-stats auto``: what ``ast stats --method exact --target-length T`` gives for the
    training clips (the pooled statistics: deterministic, unlike the authors' augmented estimate),
    cached in OUT_DIR so a second run on the same clips does not compute them again."""
    from .stats import compute_stats

    key = {
        "method": "exact",
        "target_length": target_length,
        "num_mel_bins": num_mel_bins,
        "files_sha256": hashlib.sha256("\n".join(sorted(paths)).encode("utf-8", "surrogateescape")).hexdigest(),
    }
    cache = out / folder.NORM_STATS_FILE
    if cache.is_file():
        try:
            cached = json.loads(cache.read_text())
            if cached.get("key") == key:
                return float(cached["mean"]), float(cached["std"])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache is recomputed
    # progress None: a bar at a terminal
    stats = compute_stats(paths, "exact", target_length=target_length, num_mel_bins=num_mel_bins, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    write_json(cache, {"key": key, "mean": stats.mean, "std": stats.std, "files": stats.files})
    return stats.mean, stats.std


def resumed_model(
    state: folder.TrainState, train: D.LabelledSet, data_dir: str, base: checkpoints.Checkpoint
) -> tuple[AST, PreprocessorConfig]:
    """The interrupted run's model: its saved weights, or for a probe (which saves its head only) the base
    at the run's input length with that head."""
    config = ASTConfig.from_dict(state["config"])
    if state.get("head_only"):
        weights = {**base.model.state_dict(), **state["model"]}
        model = checkpoints.build_model(config, weights, "the interrupted run", saved_grid=base.model.config.grid)
    else:
        model = AST(config)
        model.load_state_dict(state["model"])
    if model.config.labels != train.labels:
        classes = ", ".join(model.config.labels)
        raise UsageError(f"{data_dir}: the classes differ from the interrupted run's ({classes})")
    return model, PreprocessorConfig.from_dict(state["preprocessor"])
