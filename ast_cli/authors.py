"""The authors' checkpoints (YuanGongND/ast): which architecture a ``.pth`` is, its sidecar, its labels.

A ``.pth`` stores weights, not the architecture: ``ASTModel`` (src/models/ast_models.py) takes
``fstride``, ``tstride`` and ``input_tdim`` as free arguments. The file holds three pieces of
evidence: the patch-embedding kernel (the patch size), the position table's length (the number of
patches, ``f * t``) and its values, which show where its rows end when the table was trained from
DeiT's grid as the authors' code starts it (``table_rows``). Nothing in the file says the time stride
or the input length beyond the number of time patches ``t``: many (fstride, tstride, input_tdim) make
the same table. Hence the rule (``authors_architecture``):
- the caller's values (``--fstride``, ``--tstride``, ``--input-tdim``, else the sidecar ``X.pth.json``)
  are used when they fit the evidence, and refused, naming the value and the evidence, when not;
- otherwise the one published setting that fits is used, and the guess is announced (``GUESS_LEVEL``);
- otherwise (none, or several fit) the model is refused with the candidates and the flags to pass.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from . import hub
from .config import NORM_STATS, ASTConfig, parse_stats, read_json, read_labels_csv
from .errors import ModelError, OfflineError
from .layouts import authors_to_native, is_authors_layout, is_hf_layout
from .weights import read_state_dict

_log = logging.getLogger(__name__)
# The level of the lines that announce what was chosen without evidence (a published setting guessed,
# statistics assumed). process.py shows INFO records except with --quiet, WARNING records always.
GUESS_LEVEL = logging.INFO
MEL_BINS = 128  # the authors' input_fdim: every released model
STRIDES = range(1, 17)  # the strides a candidate may have (the released models use 10 to 16)
ROW_END_MARGIN = 2.0  # how much farther every row end must jump than any step inside a row (table_rows)
FLAGS = {"fstride": "--fstride", "tstride": "--tstride", "input_tdim": "--input-tdim"}


@dataclass(frozen=True)
class AuthorsSetting:
    """An architecture the authors published a model or a recipe for."""

    name: str
    fstride: int
    tstride: int
    input_tdim: int
    norm_stats: str  # the preset of config.NORM_STATS it was trained with


# The authors' published settings (ast_models.py's fstride, tstride, input_tdim): the AudioSet models of
# egs/audioset/download_models.sh and the ESC-50 and Speech Commands recipes (egs/*/run_*.sh), with
# the statistics each was trained with (config.NORM_STATS). All have 16 x 16 patches.
AUTHORS_SETTINGS = (
    AuthorsSetting("AudioSet", 10, 10, 1024, "audioset"),
    AuthorsSetting("AudioSet 12/12", 12, 12, 1024, "audioset"),
    AuthorsSetting("AudioSet 14/14", 14, 14, 1024, "audioset"),
    AuthorsSetting("AudioSet 16/16", 16, 16, 1024, "audioset"),
    AuthorsSetting("ESC-50", 10, 10, 512, "esc50"),
    AuthorsSetting("Speech Commands V2", 10, 10, 128, "speechcommands"),
)
PUBLISHED_PATCH = 16


@dataclass(frozen=True)
class Evidence:
    """What an authors' ``.pth`` says of its architecture."""

    patch: int  # the patch-embedding kernel's size (square)
    n_patches: int  # the position table's length less the cls and distillation tokens
    rows: tuple[int, int] | None = None  # (f, t) where the table's values show its rows, else None

    def grid(self, fstride: int, tstride: int, frames: int) -> tuple[int, int]:
        """(f, t) patches of an input of ``frames`` frames at these strides (Conv2d, no padding)."""
        return (MEL_BINS - self.patch) // fstride + 1, (frames - self.patch) // tstride + 1

    def fits(self, fstride: int, tstride: int, frames: int) -> bool:
        f, t = self.grid(fstride, tstride, frames)
        return frames >= self.patch and f * t == self.n_patches and self.rows in (None, (f, t))

    def patches(self) -> str:
        """``600 patches``, or ``600 patches in 8 rows of 75`` where the table's values show its rows."""
        return f"{self.n_patches} patches" + (f" in {self.rows[0]} rows of {self.rows[1]}" if self.rows else "")

    def describe(self) -> str:
        return f"the position table ({self.patches()})"


@dataclass(frozen=True)
class Candidate:
    """Strides and the input lengths that give them the evidence's grid: ``low`` to ``high`` frames."""

    fstride: int
    tstride: int
    low: int
    high: int

    def flags(self) -> str:
        frames = f"{self.low}..{self.high}" if self.high > self.low else str(self.low)
        return f"--fstride {self.fstride} --tstride {self.tstride} --input-tdim {frames}"


@dataclass(frozen=True)
class Architecture:
    """The strides and input length an authors' ``.pth`` is read with, and how they were found."""

    fstride: int
    tstride: int
    input_tdim: int
    setting: AuthorsSetting | None  # the published setting these are, if any
    guessed: bool  # a published setting chosen because it was the only one that fits


@dataclass
class AuthorsWeights:
    """An authors' ``.pth``: native-layout weights, the config they imply (with label names), the
    position grid they were trained on and the normalisation they were trained with."""

    weights: dict[str, torch.Tensor]
    config: ASTConfig
    grid: tuple[int, int]
    norm_stats: tuple[float, float] = NORM_STATS["audioset"]


# -- evidence ----------------------------------------------------------------------------------------
def read_evidence(sd: dict[str, torch.Tensor], source: str) -> Evidence:
    """The patch size, the number of patches and the rows shown by the position table of native weights."""
    proj, pos = sd.get("patch_embed.proj.weight"), sd.get("pos_embed")
    if proj is None or pos is None or proj.ndim != 4 or pos.ndim != 3:
        raise ModelError(
            f"{source}: not an AST checkpoint (no cls_token/pos_embed/blocks/mlp_head weights)",
            hint="pass the model's .pth (e.g. audioset_10_10_0.4593.pth), not an optimizer or other state file",
        )
    if proj.shape[1] != 1 or proj.shape[2] != proj.shape[3]:
        raise ModelError(
            f"{source}: a patch embedding of shape {tuple(proj.shape)}: not the authors' AST "
            "(one input channel, square patches)"
        )
    patch, n_patches = proj.shape[-1], pos.shape[1] - 2
    return Evidence(patch, n_patches, table_rows(pos, n_patches, patch))


def table_rows(pos: torch.Tensor, n_patches: int, patch: int) -> tuple[int, int] | None:
    """(f, t) of a (1, 2 + f*t, D) position table whose values show where its rows end, else None.

    The authors' model starts its table from DeiT's 24 x 24 grid, cut or interpolated to (f, t)
    (ast_models.py), and fine-tuning moves it little: consecutive patches of a row hold close
    embeddings, while the last patch of a row and the first of the next lie far apart. The grid whose
    every row end jumps ``ROW_END_MARGIN`` times farther than any step inside a row is that one
    (another factorisation puts a row end inside a row, or a true one inside its rows). A table
    without that structure (random, or trained from scratch) shows no rows."""
    table = pos.detach()[0, 2:].float()  # (N, D)
    if n_patches < 4 or table.shape[0] != n_patches:
        return None
    steps = (table[1:] - table[:-1]).norm(dim=-1)  # (N-1,): from each patch to the next in the table
    found = []
    for f in sorted({(MEL_BINS - patch) // fs + 1 for fs in STRIDES} if MEL_BINS >= patch else ()):
        if f < 2 or n_patches % f or n_patches // f < 2:
            continue
        t = n_patches // f
        ends = torch.zeros(n_patches - 1, dtype=torch.bool)
        ends[t - 1 :: t] = True  # step k*t - 1: from the last patch of row k-1 to the first of row k
        if steps[ends].min() > ROW_END_MARGIN * steps[~ends].max():
            found.append((f, t))
    return found[0] if len(found) == 1 else None


def candidates(evidence: Evidence, given: dict[str, int] | None = None) -> list[Candidate]:
    """Every (fstride, tstride) of 1 to 16 and input lengths that fit the evidence and the ``given``
    values (fstride, tstride, input_tdim): equal strides first, then the nearest to equal."""
    given = given or {}
    found = []
    for fs in STRIDES:
        f = (MEL_BINS - evidence.patch) // fs + 1
        if f < 1 or evidence.n_patches % f or given.get("fstride", fs) != fs:
            continue
        t = evidence.n_patches // f
        if evidence.rows not in (None, (f, t)):
            continue
        for ts in STRIDES:
            low, high = evidence.patch + (t - 1) * ts, evidence.patch + t * ts - 1  # t patches in time
            frames = given.get("input_tdim")
            if given.get("tstride", ts) == ts and (frames is None or low <= frames <= high):
                found.append(Candidate(fs, ts, low, high))
    return sorted(found, key=lambda c: (abs(c.fstride - c.tstride), c.fstride, c.tstride))


def published(evidence: Evidence, given: dict[str, int] | None = None) -> list[AuthorsSetting]:
    """The published settings that fit the evidence and the ``given`` values."""
    given = given or {}
    return [
        s
        for s in AUTHORS_SETTINGS
        if evidence.patch == PUBLISHED_PATCH
        and evidence.fits(s.fstride, s.tstride, s.input_tdim)
        and all(getattr(s, k) == v for k, v in given.items())
    ]


# -- the rule --------------------------------------------------------------------------------------
def authors_architecture(
    evidence: Evidence, source: str, given: dict[str, int], origin: dict[str, str] | None = None
) -> Architecture:
    """The architecture of an authors' ``.pth``: the ``given`` values (fstride, tstride, input_tdim;
    ``origin`` says where each came from, for messages) when all three are given and fit the evidence,
    else the one published setting that fits both (``guessed``). A ModelError that names the given
    value in conflict with the evidence, or lists the candidates when none or several settings fit."""
    origin = {**{k: f"{FLAGS[k]} {v}" for k, v in given.items()}, **(origin or {})}
    fits_file = candidates(evidence)
    if not fits_file:
        raise ModelError(
            f"{source}: {evidence.describe()} fits no AST of {evidence.patch} x {evidence.patch} patches",
            hint=f"no strides of 1 to 16 fit it with {MEL_BINS} mel bins",
        )
    if given and not candidates(evidence, given):
        raise _conflict(evidence, source, given, origin, fits_file)
    if len(given) == 3:
        fs, ts, frames = given["fstride"], given["tstride"], given["input_tdim"]
        known = [s for s in published(evidence) if (s.fstride, s.tstride, s.input_tdim) == (fs, ts, frames)]
        return Architecture(fs, ts, frames, known[0] if known else None, guessed=False)
    matches = published(evidence, given)
    if len(matches) == 1:
        s = matches[0]
        return Architecture(s.fstride, s.tstride, s.input_tdim, s, guessed=True)
    which = "several of the authors' settings" if matches else "none of the authors' published settings"
    for s in published(replace(evidence, rows=None), given):  # the same number of patches in other rows
        if s not in matches:
            f, t = evidence.grid(s.fstride, s.tstride, s.input_tdim)
            which += f" (the {s.name} setting has {f} rows of {t})"
    if given:
        missing = " and ".join(FLAGS[k] for k in FLAGS if k not in given)
        message = f"{', '.join(origin[k] for k in given)} and {evidence.describe()} leave {missing} open"
        message += f", and fit {which}"
    else:
        message = f"{evidence.describe()} fits {which}: say which architecture it was trained with"
    raise ModelError(
        f"{source}: {message}", hint=_listing(candidates(evidence, given)) + f", or put them in {source}.json"
    )


def _conflict(
    evidence: Evidence, source: str, given: dict[str, int], origin: dict[str, str], fits_file: list[Candidate]
) -> ModelError:
    """The error for given values that fit no candidate: the value that conflicts with the evidence by
    itself, else the values that do together."""
    reasons = [r for k, v in given.items() if (r := _alone(evidence, k, v, origin[k]))]
    if len(given) == 3:
        f, t = evidence.grid(given["fstride"], given["tstride"], given["input_tdim"])
        held = evidence.patches() if f * t == evidence.n_patches else str(evidence.n_patches)
        detail = (
            f"strides {given['fstride']}/{given['tstride']} at {given['input_tdim']} frames make "
            f"{f} x {t} patches, the position table holds {held}"
        )
        detail += "".join(f"; {r}" for r in reasons)
    else:
        detail = "; ".join(reasons) or f"{' with '.join(origin[k] for k in given)} fit no grid of {evidence.describe()}"
    return ModelError(f"{source}: {detail}", hint="what fits the file: " + _listing(fits_file))


def _alone(evidence: Evidence, key: str, value: int, label: str) -> str | None:
    """Why one given value fits no grid of the evidence whatever the others are; None when it fits one."""
    if candidates(evidence, {key: value}):
        return None
    if key == "fstride":
        rows = (MEL_BINS - evidence.patch) // value + 1
        if evidence.rows:
            return f"{label} makes {rows} rows of patches, the position table's values show {evidence.rows[0]}"
        return f"{label} makes {rows} rows of patches, which do not divide the position table's {evidence.n_patches}"
    columns = f"{evidence.rows[1]} columns of patches" if evidence.rows else f"a grid of {evidence.n_patches} patches"
    return f"{label} makes no stride of 1 to 16 give {columns} (the position table's)"


def _listing(found: list[Candidate]) -> str:
    shown = "; ".join(c.flags() for c in found[:6])
    return f"candidates: {shown}" + (f" (and {len(found) - 6} more)" if len(found) > 6 else "")


# -- reading a .pth ----------------------------------------------------------------------------------
def infer_authors_config(
    sd: dict[str, torch.Tensor], source: str, given: dict[str, int], origin: dict[str, str] | None = None
) -> tuple[ASTConfig, tuple[int, int], Architecture]:
    """Config of an authors' checkpoint (native weights) from its tensor shapes, its position grid and
    its architecture (``authors_architecture``). Heads are not stored: ViT's 64-wide heads. LayerNorms
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
    data = read_json(sidecar)
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
    sd = read_state_dict(path)
    if is_hf_layout(sd):
        raise ModelError(f"{spec}: transformers weights without a config.json", hint="give the folder with config.json")
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
