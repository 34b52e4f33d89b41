"""The authors' checkpoints (YuanGongND/ast): a ``.pth`` read as native weights with its config, its
sidecar ``X.pth.json``, its normalisation and its labels. Which architecture it is: ``evidence``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import hub
from .config import NORM_STATS, ASTConfig, parse_stats, read_labels_csv
from .errors import ModelError, OfflineError
from .evidence import FLAGS, Architecture, authors_architecture, read_evidence
from .jsonfiles import MB, read_json
from .layouts import authors_to_native, authors_uses, is_authors_layout, is_hf_layout
from .weights import read_state_dict

_log = logging.getLogger(__name__)
# The level of the lines that announce what was chosen without evidence (a published setting guessed,
# statistics assumed): WARNING, which process.py shows even with --quiet, since a guess can make every
# score wrong and nothing else on the screen would say so.
GUESS_LEVEL = logging.WARNING


@dataclass
class AuthorsWeights:
    """An authors' ``.pth``: native-layout weights, the config they imply (with label names), the
    position grid they were trained on and the normalisation they were trained with."""

    weights: dict[str, torch.Tensor]
    config: ASTConfig
    grid: tuple[int, int]
    norm_stats: tuple[float, float] = NORM_STATS["audioset"]


# -- reading a .pth ----------------------------------------------------------------------------------
def infer_authors_config(
    sd: dict[str, torch.Tensor], source: str, given: dict[str, int], origin: dict[str, str] | None = None
) -> tuple[ASTConfig, tuple[int, int], Architecture]:
    """Config of an authors' checkpoint (native weights) from its tensor shapes, its position grid and
    its architecture (``evidence.authors_architecture``). Heads are not stored: ViT's 64-wide heads. LayerNorms
    as the authors' code makes them: timm's eps 1e-6 in the blocks and the final norm, nn.LayerNorm's
    default 1e-5 in mlp_head[0]."""
    evidence = read_evidence(sd, source)
    try:
        D = sd["cls_token"].shape[-1]
        layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
        mlp = sd["blocks.0.mlp.fc1.weight"].shape[0]
        labels = sd["head.weight"].shape[0]
    except (KeyError, ValueError):
        raise ModelError(
            f"{source}: not an AST checkpoint (no cls_token/pos_embed/blocks/mlp_head weights)",
            hint="pass the model's .pth (e.g. audioset_10_10_0.4593.pth), not an optimizer or other state file",
        ) from None
    arch = authors_architecture(evidence, source, given, origin)
    config = ASTConfig(
        hidden_size=D,
        num_hidden_layers=layers,
        num_attention_heads=max(D // 64, 1),
        intermediate_size=mlp,
        layer_norm_eps=1e-6,  # timm's LayerNorm in the authors' blocks
        classifier_layer_norm_eps=1e-5,  # ast_models.py: nn.LayerNorm(...) in mlp_head
        patch_size=evidence.patch,
        frequency_stride=arch.fstride,
        time_stride=arch.tstride,
        max_length=arch.input_tdim,
        id2label={i: f"LABEL_{i}" for i in range(labels)},
    )
    return config, config.grid, arch


def read_sidecar(path: Path) -> dict[str, Any]:
    """``X.pth.json`` beside an authors' ``X.pth``, when there is one: what the weights do not say
    (``fstride``, ``tstride``, ``input_tdim``, ``mean``, ``std``, ``labels``: a CSV, relative to the
    JSON's folder). Unknown keys are refused, so a typo does not pass silently."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return {}
    data = read_json(sidecar, MB)  # six numbers and a file name
    known = {"fstride", "tstride", "input_tdim", "mean", "std", "labels"}
    if not isinstance(data, dict) or set(data) - known:
        unknown = f"unknown: {', '.join(sorted(set(data) - known))}" if isinstance(data, dict) else None
        raise ModelError(f"{sidecar}: expected an object of {', '.join(sorted(known))}", hint=unknown)
    if "labels" in data:
        data["labels"] = str(sidecar.parent / data["labels"])
    return data


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def authors_checkpoint(
    path: Path,
    spec: str,
    labels: str | None,
    *,
    fstride: int | None = None,
    tstride: int | None = None,
    input_tdim: int | None = None,
    norm_stats: str | tuple[float, float] | None = None,
) -> AuthorsWeights:
    """Native weights, config (with label names), position grid and statistics of the authors' ``.pth``.
    Arguments win over its sidecar ``X.pth.json``, which wins over what the weights suggest;
    ``norm_stats`` (MEAN,STD or a preset) over the sidecar's mean and std. What was chosen without
    evidence (a published setting guessed, statistics assumed) is announced at ``GUESS_LEVEL``."""
    sd = _authors_weights(path, spec)
    side = read_sidecar(path)
    given, origin = {}, {}
    for key, value in (("fstride", fstride), ("tstride", tstride), ("input_tdim", input_tdim)):
        if value is not None:
            given[key], origin[key] = value, f"{FLAGS[key]} {value}"
        elif side.get(key) is not None:
            given[key], origin[key] = side[key], f"{key} {side[key]} of {sidecar_path(path).name}"
    config, grid, arch = infer_authors_config(sd, spec, given, origin)
    stats = _statistics(spec, arch, side, norm_stats)
    return AuthorsWeights(sd, _named(config, spec, labels or side.get("labels")), grid, stats)


def _statistics(
    spec: str, arch: Architecture, side: dict[str, Any], norm_stats: str | tuple[float, float] | None
) -> tuple[float, float]:
    """The normalisation: given, else the sidecar's, else the published setting's, else AudioSet's;
    the last two announced (nothing in the file says them)."""
    preset = arch.setting.norm_stats if arch.setting else "audioset"
    where = f"{spec}: strides {arch.fstride}/{arch.tstride}, {arch.input_tdim} frames"
    if arch.guessed and arch.setting:
        said = "" if norm_stats else f", {preset} statistics"
        flags = "--fstride, --tstride, --input-tdim" + ("" if norm_stats else ", --norm-stats")
        _log.log(GUESS_LEVEL, f"{where}{said}: the authors' {arch.setting.name} setting ({flags} to say otherwise)")
    if norm_stats:
        return parse_stats(norm_stats)
    if "mean" in side or "std" in side:
        return float(side.get("mean", NORM_STATS[preset][0])), float(side.get("std", NORM_STATS[preset][1]))
    if not arch.guessed:
        mean, std = NORM_STATS[preset]
        reason = f"those of the authors' {arch.setting.name} setting" if arch.setting else "none is in the file"
        _log.log(GUESS_LEVEL, f"{where}: {preset} statistics ({mean}, {std}): {reason} (--norm-stats to say otherwise)")
    return NORM_STATS[preset]


def authors_labels(path: Path, spec: str, labels: str | None) -> list[str]:
    """The label names of an authors' ``.pth`` (its head size, named as ``load`` names it), whatever
    its architecture."""
    head = _authors_weights(path, spec).get("head.weight")
    if head is None:
        raise ModelError(f"{spec}: not an AST checkpoint (no mlp_head weights)")
    config = ASTConfig(id2label={i: f"LABEL_{i}" for i in range(head.shape[0])})
    return _named(config, spec, labels or read_sidecar(path).get("labels")).labels


def _authors_weights(path: Path, spec: str) -> dict[str, torch.Tensor]:
    """The native weights of an authors' file: only the tensors an AST uses are read (``authors_uses``)."""

    def select(key: str) -> bool:
        if is_hf_layout([key]):
            raise ModelError(
                f"{spec}: transformers weights without a config.json", hint="give the folder with config.json"
            )
        return authors_uses(key, spec)

    sd = read_state_dict(path, select)
    if not is_authors_layout(sd):
        raise ModelError(
            f"{spec}: not an AST checkpoint (no module.v.* / mlp_head weights)",
            hint="pass the model's .pth (e.g. audioset_10_10_0.4593.pth), not an optimizer or other state file",
        )
    return authors_to_native(sd)


def _named(config: ASTConfig, spec: str, labels: str | None) -> ASTConfig:
    """``config`` with the names of a labels CSV, or of the released AudioSet model for 527 outputs.
    The notices are Python warnings: callers and tests filter them by category."""
    if labels:
        return config.with_labels(read_labels_csv(labels), spec)
    if config.num_labels == 527:  # an AudioSet head: the names of the released model
        try:
            default = hub.fetch(hub.DEFAULT_MODEL, hub.CONFIG_FILE)  # required: a Path, or an error
            if default is not None:
                return config.replace(id2label=ASTConfig.from_file(default).id2label)
        except OfflineError as exc:  # fine-tuning or exporting needs no names: go on, and say so
            warnings.warn(
                f"{spec}: AudioSet label names unavailable ({exc.message}); pass --labels class_labels_indices.csv",
                stacklevel=3,
            )
            return config
    warnings.warn(f"{spec}: no label names; pass --labels class_labels_indices.csv", stacklevel=3)
    return config
