"""Which architecture an authors' ``.pth`` (YuanGongND/ast) is, from the evidence its weights hold.

A ``.pth`` stores weights, not the architecture: ``ASTModel`` (src/models/ast_models.py) takes
``fstride``, ``tstride`` and ``input_tdim`` as free arguments. The file holds three pieces of
evidence: the patch-embedding kernel (the patch size), the position table's length (the number of
patches, ``f * t``) and its values, which show where its rows end when the table was trained from
DeiT's grid as the authors' code starts it (``table_rows``). Nothing in the file says the time stride
or the input length beyond the number of time patches ``t``: many (fstride, tstride, input_tdim) make
the same table. Hence the rule (``authors_architecture``):
- the caller's values (``--fstride``, ``--tstride``, ``--input-tdim``, else the sidecar ``X.pth.json``)
  are used when they fit the evidence, and refused, naming the value and the evidence, when not;
- otherwise the one published setting that fits is used (``Architecture.guessed``: the caller announces it);
- otherwise (none, or several fit) the model is refused with the candidates and the flags to pass.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .errors import ModelError

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
