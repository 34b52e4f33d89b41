"""Checkpoints: find, read safely, rename keys, adapt position embeddings, and save in Hub layout.

Three layouts load into ``model.AST``:
- Hub layout (transformers): ``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``
  (+ optional ``preprocessor_config.json``), as a local folder or a Hub id;
- the authors' ``.pth`` (DataParallel ``module.v.*`` / ``module.mlp_head.*`` keys);
- what this package saves, which is the Hub layout (transformers loads it as is).
Key renaming lives in ``hf_to_native`` / ``native_to_hf`` / ``authors_to_native``, position-embedding
adaptation in ``adapt_pos_embed``: nowhere else.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from . import hub
from .config import NORM_STATS, ASTConfig, PreprocessorConfig, patch_grid, read_json, read_labels_csv
from .errors import ModelError, OfflineError, UnsafeCheckpointError
from .files import AtomicPath, ensure_space
from .model import AST
from .options import parse_norm_stats

HF_PREFIX = "audio_spectrogram_transformer."
_log = logging.getLogger(__name__)  # info: which architecture an authors' .pth was read as


@dataclass
class Checkpoint:
    model: AST
    preprocessor: PreprocessorConfig
    source: str  # what the user passed, for messages and recorded settings


@dataclass(frozen=True)
class AuthorsSetting:
    """An architecture the authors published a model or a recipe for."""

    name: str
    fstride: int
    tstride: int
    input_tdim: int
    norm_stats: str  # the preset of config.NORM_STATS it was trained with


# -- reading ---------------------------------------------------------------------------------
def read_state_dict(path: str | os.PathLike, matrix_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a pickle loaded with ``weights_only=True`` (never arbitrary code).

    ``matrix_dtype`` (safetensors only): the weight matrices (``*.weight`` of 2 or more dimensions:
    Linear and Conv layers) are read one at a time and cast as they come, so the fp32 file is never
    resident whole next to its cast copy; everything else stays as stored."""
    path = Path(path)
    if path.suffix == ".safetensors" and matrix_dtype is not None:
        sd = _read_safetensors_cast(path, matrix_dtype)
        if sd is not None:
            return sd
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"{path}: not a readable safetensors file ({exc})") from None
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the pickle holds more than tensors and could run code ({_first_line(exc)})",
            hint="load only files you trust; convert trusted ones to safetensors",
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common training-script wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict) and _has_tensors(state[key]):
            state = state[key]
    if not isinstance(state, dict) or not _has_tensors(state):
        raise ModelError(f"{path}: holds no model weights (an optimizer or training-state file?)")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64, "I64": torch.int64}


def _read_safetensors_cast(path: Path, matrix_dtype: torch.dtype) -> dict[str, torch.Tensor] | None:
    """The tensors of a safetensors file, each mapped on its own and unmapped once copied: the weight
    matrices cast to ``matrix_dtype``, the rest copied as stored. The file is never mapped whole, so
    its pages do not stay resident next to the cast copy: the full-size model in bf16 peaks at ~790
    MiB of process instead of ~1020, at the same speed. None for anything unusual (the format is 8
    bytes of header length, then JSON of dtype, shape and byte range per tensor): ``load_file`` then
    reads the file and reports what is wrong with it."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header, base = _safetensors_header(f, size)
            if header is None:
                return None
            out = {}
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                start, end = info["data_offsets"]
                dtype, shape = _SAFETENSORS_DTYPES[info["dtype"]], info["shape"]
                if not 0 <= start <= end <= size - base or end - start != math.prod(shape) * dtype.itemsize:
                    return None
                cast = matrix_dtype if _is_matrix(name, shape) and dtype.is_floating_point else None
                out[name] = _mapped_copy(f.fileno(), base + start, end - start, dtype, shape, cast)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, BufferError, RuntimeError):
        return None
    return out


def _safetensors_header(f, size: int) -> tuple[dict | None, int]:
    """The JSON header of an open safetensors file (name -> dtype, shape, data_offsets) and where its
    data starts; None when it is not one (8 bytes of header length, then the JSON)."""
    import json

    n = int.from_bytes(f.read(8), "little")
    if not 2 <= n <= min(size - 8, 100 << 20):
        return None, 0
    try:
        header = json.loads(f.read(n))
    except ValueError:
        return None, 0
    if not isinstance(header, dict):
        return None, 0
    header.pop("__metadata__", None)
    return header, 8 + n


def check_shapes(config: ASTConfig, path: Path, source: str) -> None:
    """Compare config.json with the shapes in a safetensors file's header, before any tensor is read
    or built: a config that disagrees with its weights is named field by field."""
    try:
        with open(path, "rb") as f:
            header, _ = _safetensors_header(f, os.fstat(f.fileno()).st_size)
    except OSError:
        return
    if not header:
        return  # not readable as safetensors: reading it says why
    shapes = {name: info.get("shape") for name, info in header.items() if isinstance(info, dict)}
    layers = {int(m.group(1)) for name in shapes if (m := re.match(r"(?:audio_spectrogram_transformer\.)?(?:encoder\.layer|layers)\.(\d+)\.", name))}
    found = {  # the head first: the mistake people make most (id2label edited by hand)
        "num_labels": (shapes.get("classifier.dense.weight") or [None])[0],
        "hidden_size": (shapes.get(HF_PREFIX + "embeddings.cls_token") or [None])[-1],
        "num_hidden_layers": max(layers) + 1 if layers else None,
        "patch_size": (shapes.get(HF_PREFIX + "embeddings.patch_embeddings.projection.weight") or [None])[-1],
    }
    wanted = {"hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers, "patch_size": config.patch_size,
              "num_labels": config.num_labels}  # fmt: skip
    for field, value in found.items():
        if value is not None and value != wanted[field]:
            if field == "num_labels":
                raise ModelError(f"{source}: the head has {value} outputs but config.json names {wanted[field]} labels",
                                 hint="fix id2label in config.json so it has one label per output")  # fmt: skip
            raise ModelError(f"{source}: config.json says {field} {wanted[field]}, the weights have {value}",
                             hint="config.json must describe these weights")  # fmt: skip


def _mapped_copy(fd: int, offset: int, nbytes: int, dtype: torch.dtype, shape: list[int], cast: torch.dtype | None) -> torch.Tensor:
    """A tensor of its own from ``nbytes`` at ``offset`` of the file, through a mapping of just those bytes."""
    import mmap

    if nbytes == 0:
        return torch.empty(shape, dtype=cast or dtype)
    aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
    with mmap.mmap(fd, nbytes + offset - aligned, access=mmap.ACCESS_READ, offset=aligned) as mm:
        with warnings.catch_warnings():  # read-only memory: it is only read, then copied
            warnings.simplefilter("ignore", UserWarning)
            mapped = torch.frombuffer(mm, dtype=torch.uint8, count=nbytes, offset=offset - aligned)
        copy = mapped.view(dtype).reshape(shape).to(cast) if cast else mapped.view(dtype).reshape(shape).clone()
        del mapped  # the mapping can only close once nothing views it
    return copy


def _has_tensors(d: dict) -> bool:
    return any(isinstance(v, torch.Tensor) for v in d.values())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- key renaming -------------------------------------------------------------------------------
# transformers' names (legacy, as written in every Hub file, and v5's in-memory names) -> ours.
_HF_BLOCK = [
    (r"attention\.attention\.query\.", "q."),
    (r"attention\.attention\.key\.", "k."),
    (r"attention\.attention\.value\.", "v."),
    (r"attention\.q_proj\.", "q."),
    (r"attention\.k_proj\.", "k."),
    (r"attention\.v_proj\.", "v."),
    (r"attention\.output\.dense\.", "attn.proj."),
    (r"attention\.o_proj\.", "attn.proj."),
    (r"intermediate\.dense\.", "mlp.fc1."),
    (r"^output\.dense\.", "mlp.fc2."),
    (r"mlp\.fc1\.", "mlp.fc1."),
    (r"mlp\.fc2\.", "mlp.fc2."),
    (r"layernorm_before\.", "norm1."),
    (r"layernorm_after\.", "norm2."),
]
_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.distillation_token": "dist_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_HF_HEAD = {
    "classifier.layernorm.weight": "fc_norm.weight",
    "classifier.layernorm.bias": "fc_norm.bias",
    "classifier.dense.weight": "head.weight",
    "classifier.dense.bias": "head.bias",
}


def is_hf_layout(sd: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(HF_PREFIX) or k.startswith("embeddings.") for k in sd)


def hf_to_native(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' ``ASTForAudioClassification`` (or ``ASTModel``) keys -> ours; q, k, v fused into qkv."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if key in _HF_HEAD:
            out[_HF_HEAD[key]] = value
            continue
        k = key[len(HF_PREFIX) :] if key.startswith(HF_PREFIX) else key
        if k in _HF_TOP:
            out[_HF_TOP[k]] = value
            continue
        m = re.match(r"(?:encoder\.layer|layers)\.(\d+)\.(.+)$", k)
        if not m:
            continue  # unknown extras (e.g. buffers of other heads) are reported by the strict load
        index, rest = m.groups()
        for pattern, repl in _HF_BLOCK:
            if re.search(pattern, rest):
                rest = re.sub(pattern, repl, rest, count=1)
                break
        if rest[:2] in ("q.", "k.", "v."):
            qkv.setdefault((index, rest[2:]), {})[rest[0]] = value
        else:
            out[f"blocks.{index}.{rest}"] = value
    for (index, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ModelError(f"checkpoint: layer {index} lacks one of query/key/value {kind}")
        out[f"blocks.{index}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def native_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Ours -> the Hub layout every transformers version reads (legacy ``encoder.layer`` names)."""
    top = {v: k for k, v in _HF_TOP.items()}
    head = {v: k for k, v in _HF_HEAD.items()}
    block = {
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "attn.proj": "attention.output.dense",
        "mlp.fc1": "intermediate.dense",
        "mlp.fc2": "output.dense",
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        value = value.detach().contiguous()
        if key in head:
            out[head[key]] = value
        elif key in top:
            out[HF_PREFIX + top[key]] = value
        else:
            m = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", key)
            if not m:
                raise ModelError(f"cannot save unknown parameter {key!r}")
            index, module, kind = m.groups()
            prefix = f"{HF_PREFIX}encoder.layer.{index}."
            if module == "attn.qkv":
                for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                    out[f"{prefix}attention.attention.{name}.{kind}"] = part.contiguous()
            else:
                out[f"{prefix}{block[module]}.{kind}"] = value
    return out


def authors_to_native(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' ``module.v.*`` / ``module.mlp_head.{0,1}.*`` keys -> ours (their timm names, minus
    the DeiT heads ``head``/``head_dist`` that AST never uses), as transformers' conversion script does."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        k = key[len("module.") :] if key.startswith("module.") else key
        if k.startswith("v.head") or k.startswith("v.head_dist"):
            continue
        if k.startswith("v."):
            out[k[2:]] = value
        elif k.startswith("mlp_head.0."):
            out["fc_norm." + k[len("mlp_head.0.") :]] = value
        elif k.startswith("mlp_head.1."):
            out["head." + k[len("mlp_head.1.") :]] = value
    return out


def is_authors_layout(sd: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("module.v.", "v.cls_token", "module.mlp_head")) for k in sd)


# -- position embeddings ------------------------------------------------------------------------
def adapt_pos_embed(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """(1, 2 + f*t, D) position embeddings for another patch grid, the authors' way
    (ast_models.py): cut around the centre where the new grid is smaller, bilinear interpolation
    where it is larger; time first, then frequency. The two token embeddings are kept."""
    if old_grid == new_grid:
        return pos
    (f0, t0), (f1, t1) = old_grid, new_grid
    D = pos.shape[-1]
    tokens, grid = pos[:, :2], pos[:, 2:]
    grid = grid.detach().reshape(1, f0, t0, D).permute(0, 3, 1, 2).float()  # (1, D, f, t)
    if t1 < t0:
        start = t0 // 2 - t1 // 2
        grid = grid[:, :, :, start : start + t1]
    elif t1 > t0:
        grid = torch.nn.functional.interpolate(grid, size=(f0, t1), mode="bilinear")
    if f1 < f0:
        start = f0 // 2 - f1 // 2
        grid = grid[:, :, start : start + f1, :]
    elif f1 > f0:
        grid = torch.nn.functional.interpolate(grid, size=(f1, t1), mode="bilinear")
    grid = grid.permute(0, 2, 3, 1).reshape(1, f1 * t1, D).to(pos.dtype)  # (1, f*t, D)
    return torch.cat([tokens, grid], dim=1)


# -- building a model ---------------------------------------------------------------------------
def build_model(
    config: ASTConfig,
    sd: dict[str, torch.Tensor],
    source: str,
    *,
    saved_grid: tuple[int, int] | None = None,
    require_head: bool = True,
    matrix_dtype: torch.dtype | None = None,
) -> AST:
    """An AST of ``config`` holding the native-layout weights ``sd``. ``saved_grid`` is the patch grid
    the weights were trained on, when ``config`` asks for another one (other max_length or strides).
    Floating-point weights become fp32, but weight matrices already in ``matrix_dtype``."""
    if "pos_embed" in sd:
        expected = config.num_patches + 2
        got = sd["pos_embed"].shape[1]
        if got != expected:
            grid = saved_grid or _grid_for(got - 2, config)
            if grid is None:
                raise ModelError(
                    f"{source}: position embeddings for {got - 2} patches do not fit the config's {config.grid} grid"
                )
            sd = {**sd, "pos_embed": adapt_pos_embed(sd["pos_embed"], grid, config.grid)}
    head = sd.get("head.weight")
    if head is not None and head.shape[0] != config.num_labels:
        raise ModelError(
            f"{source}: the head has {head.shape[0]} outputs but config.json names {config.num_labels} labels",
            hint="fix id2label in config.json so it has one label per output",
        )
    # Built on the meta device and given the loaded tensors (assign=True): no time spent on a random
    # initialisation that the weights overwrite (~1 s for the full-size model).
    with torch.device("meta"):
        model = AST(config)
    sd = {k: _as_loaded(k, v, matrix_dtype) for k, v in sd.items()}  # fp16/bf16 files run in fp32
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    except RuntimeError as exc:  # torch's first line is only "Error(s) in loading state_dict": show the first error
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), _first_line(exc))
        raise ModelError(
            f"{source}: weights do not match an AST of this config ({detail})",
            hint="config.json must describe these weights (hidden_size, layers, patch size, strides, max_length)",
        ) from None
    head_missing = [k for k in missing if k.startswith(("head.", "fc_norm."))]
    if not require_head:
        missing = [k for k in missing if k not in head_missing]
    if missing or unexpected:
        detail = f"missing {_few(missing)}" if missing else f"unexpected {_few(unexpected)}"
        raise ModelError(f"{source}: weights do not match an AST of this config ({detail})")
    if head_missing:  # a backbone-only checkpoint (ASTModel): a fresh head, as for fine-tuning
        model.fc_norm = torch.nn.LayerNorm(config.hidden_size, eps=config.head_norm_eps)
        model.head = torch.nn.Linear(config.hidden_size, config.num_labels)
        model.reset_classifier(config.num_labels)
    return model.eval()


def _is_matrix(key: str, shape) -> bool:
    """A Linear or Conv weight: what ``matrix_dtype`` applies to (LayerNorms and biases are 1-D, the
    tokens and position table are not called ``*.weight``), in every layout's key names."""
    return key.endswith(".weight") and len(shape) >= 2


def _as_loaded(key: str, value: torch.Tensor, matrix_dtype: torch.dtype | None) -> torch.Tensor:
    if not value.is_floating_point() or (value.dtype == matrix_dtype and _is_matrix(key, value.shape)):
        return value
    return value.float()


def _grid_for(num_patches: int, config: ASTConfig) -> tuple[int, int] | None:
    """The grid a saved position table had, when the config changed only max_length (same strides)."""
    f = config.grid[0]
    return (f, num_patches // f) if num_patches % f == 0 else None


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


# The authors' published settings (ast_models.py's fstride, tstride, input_tdim): the AudioSet models of
# egs/audioset/download_models.sh and the ESC-50 and Speech Commands recipes (egs/*/run_*.sh), with
# the statistics each was trained with (config.NORM_STATS).
AUTHORS_SETTINGS = (
    AuthorsSetting("AudioSet", 10, 10, 1024, "audioset"),
    AuthorsSetting("AudioSet 12/12", 12, 12, 1024, "audioset"),
    AuthorsSetting("AudioSet 14/14", 14, 14, 1024, "audioset"),
    AuthorsSetting("AudioSet 16/16", 16, 16, 1024, "audioset"),
    AuthorsSetting("ESC-50", 10, 10, 512, "esc50"),
    AuthorsSetting("Speech Commands V2", 10, 10, 128, "speechcommands"),
)
MEL_BINS = 128  # the authors' input_fdim: every released model


def authors_architecture(
    n_patches: int, patch: int, source: str, fstride: int | None = None, tstride: int | None = None, input_tdim: int | None = None
) -> tuple[int, int, int, AuthorsSetting | None]:
    """(fstride, tstride, input_tdim, the published setting or None) of an authors' ``.pth`` whose
    position table holds ``n_patches``: what was given (all three must fit), else the one published
    setting that fits it and the given values. Several or none: a ModelError listing what fits."""
    given = {"fstride": fstride, "tstride": tstride, "input_tdim": input_tdim}

    def fits(fs: int, ts: int, frames: int) -> bool:
        f, t = patch_grid(MEL_BINS, frames, patch, fs, ts)
        return frames >= patch and f * t == n_patches

    if None not in given.values():
        if not fits(fstride, tstride, input_tdim):
            grid = patch_grid(MEL_BINS, input_tdim, patch, fstride, tstride)
            raise ModelError(f"{source}: strides {fstride}/{tstride} at {input_tdim} frames make {grid[0]} x {grid[1]} patches, "
                             f"the position table holds {n_patches}", hint=_candidates(n_patches, patch, given))  # fmt: skip
        known = [s for s in AUTHORS_SETTINGS if (s.fstride, s.tstride, s.input_tdim) == (fstride, tstride, input_tdim)]
        return fstride, tstride, input_tdim, known[0] if known else None
    matches = [
        s for s in AUTHORS_SETTINGS
        if fits(s.fstride, s.tstride, s.input_tdim) and all(v is None or getattr(s, k) == v for k, v in given.items())
    ]  # fmt: skip
    if len(matches) == 1:
        s = matches[0]
        return s.fstride, s.tstride, s.input_tdim, s
    raise ModelError(
        f"{source}: the position table ({n_patches} patches) fits "
        + ("several of the authors' settings" if matches else "none of the authors' published settings")
        + ": say which architecture it was trained with",
        hint=_candidates(n_patches, patch, given) + f", or put them in {source}.json",
    )


def _candidates(n_patches: int, patch: int, given: dict[str, int | None]) -> str:
    """The (fstride, tstride, input_tdim range) that make ``n_patches`` patches, equal strides first."""
    found = []
    for fs in range(1, patch + 1):
        f = (MEL_BINS - patch) // fs + 1
        if n_patches % f or given["fstride"] not in (None, fs):
            continue
        t = n_patches // f
        for ts in range(1, patch + 1):
            low, high = patch + (t - 1) * ts, patch + t * ts - 1  # every input length with t patches in time
            if given["tstride"] not in (None, ts) or (given["input_tdim"] is not None and not low <= given["input_tdim"] <= high):
                continue
            found.append((fs != ts, fs, ts, f"--fstride {fs} --tstride {ts} --input-tdim {low}" + (f"..{high}" if high > low else "")))
    found.sort()
    if not found:
        return "no strides of 1 to 16 fit it with 128 mel bins"
    shown = "; ".join(c[-1] for c in found[:6])
    return f"candidates: {shown}" + (f" (and {len(found) - 6} more)" if len(found) > 6 else "")


def infer_authors_config(
    sd: dict[str, torch.Tensor], source: str, fstride: int | None = None, tstride: int | None = None, input_tdim: int | None = None
) -> tuple[ASTConfig, tuple[int, int], AuthorsSetting | None]:
    """Config of an authors' checkpoint from its tensor shapes, its position grid and the published
    setting it is (None: an architecture given by the caller). Heads are not stored: ViT's 64-wide
    heads. LayerNorms as the authors' code makes them: timm's eps 1e-6 in the blocks and the final
    norm, nn.LayerNorm's default 1e-5 in mlp_head[0]."""
    try:
        D = sd["cls_token"].shape[-1]
        proj = sd["patch_embed.proj.weight"]
        n_patches = sd["pos_embed"].shape[1] - 2
        layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
        mlp = sd["blocks.0.mlp.fc1.weight"].shape[0]
        labels = sd["head.weight"].shape[0]
    except (KeyError, ValueError):
        raise ModelError(
            f"{source}: not an AST checkpoint (no cls_token/pos_embed/blocks/mlp_head weights)",
            hint="pass the model's .pth (e.g. audioset_10_10_0.4593.pth), not an optimizer or other state file",
        ) from None
    patch = proj.shape[-1]
    fs, ts, frames, setting = authors_architecture(n_patches, patch, source, fstride, tstride, input_tdim)
    config = ASTConfig(
        hidden_size=D,
        num_hidden_layers=layers,
        num_attention_heads=max(D // 64, 1),
        intermediate_size=mlp,
        layer_norm_eps=1e-6,  # timm's LayerNorm in the authors' blocks
        classifier_layer_norm_eps=1e-5,  # ast_models.py: nn.LayerNorm(...) in mlp_head
        patch_size=patch,
        frequency_stride=fs,
        time_stride=ts,
        max_length=frames,
        id2label={i: f"LABEL_{i}" for i in range(labels)},
    )
    return config, config.grid, setting


# -- loading ---------------------------------------------------------------------------------------
def load(
    spec: str,
    *,
    labels: str | None = None,
    norm_stats: str | None = None,
    fstride: int | None = None,
    tstride: int | None = None,
    input_tdim: int | None = None,
    max_length: int | None = None,
    matrix_dtype: torch.dtype | None = None,
) -> Checkpoint:
    """A model from a Hub id, a local Hub-layout folder or the authors' ``.pth``.

    ``labels`` names the outputs of a ``.pth`` (a class_labels_indices.csv); ``norm_stats`` (MEAN,STD
    or a preset of ``config.NORM_STATS``) replaces the checkpoint's normalisation; ``fstride``,
    ``tstride``, ``input_tdim`` say the architecture of a ``.pth`` whose position table leaves it
    open (``authors_architecture``). ``max_length`` runs the model at another input length than it
    was saved with (position embeddings adapted); ``matrix_dtype`` gives the Linear and Conv weight
    matrices of a safetensors file that dtype as they are read (what ``Tagger`` would cast them to;
    the rest stays fp32), which keeps the memory peak of loading at the cast model's size.
    """
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        files = hub.local_files(path)
    elif path.is_file():
        if path.suffix in (".json",):
            raise ModelError(f"{spec}: give the model's folder, not its config.json")
        found = authors_checkpoint(path, spec, labels, fstride=fstride, tstride=tstride, input_tdim=input_tdim)
        config = found.config
        if max_length and max_length != config.max_length:
            config = config.replace(max_length=max_length)
        model = build_model(config, found.weights, spec, saved_grid=found.grid)
        mean, std = parse_norm_stats(norm_stats, words=()) if norm_stats else found.norm_stats
        return Checkpoint(model, PreprocessorConfig(max_length=config.max_length, mean=mean, std=std), spec)
    elif hub.looks_like_path(spec):
        raise ModelError(f"{spec}: no such file or directory", hint="give a local model folder, a .pth file or a Hub id")
    else:
        files = hub.fetch_model(spec)
    config = ASTConfig.from_file(files[hub.CONFIG_FILE])
    if labels:
        config = config.with_labels(read_labels_csv(labels), spec)
    pre_path = files.get(hub.PREPROCESSOR_FILE)
    preprocessor = PreprocessorConfig.from_file(pre_path) if pre_path else PreprocessorConfig(max_length=config.max_length)
    if norm_stats:
        preprocessor.mean, preprocessor.std = parse_norm_stats(norm_stats, words=())
    if files["weights"].suffix == ".safetensors":
        check_shapes(config, files["weights"], spec)
    sd = read_state_dict(files["weights"], matrix_dtype)
    if not is_hf_layout(sd):
        raise ModelError(f"{files['weights']}: not transformers' AST weights (no audio_spectrogram_transformer.* keys)")
    saved_grid = config.grid
    if max_length and max_length != config.max_length:
        config = config.replace(max_length=max_length)
    model = build_model(config, hf_to_native(sd), spec, saved_grid=saved_grid, matrix_dtype=matrix_dtype)
    return Checkpoint(model, preprocessor, spec)


@dataclass
class AuthorsWeights:
    """An authors' ``.pth``: native-layout weights, the config they imply (with label names), the
    position grid they were trained on and the normalisation they were trained with."""

    weights: dict[str, torch.Tensor]
    config: ASTConfig
    grid: tuple[int, int]
    norm_stats: tuple[float, float] = NORM_STATS["audioset"]


def read_sidecar(path: Path) -> dict:
    """``X.pth.json`` beside an authors' ``X.pth``, when there is one: what the weights do not say
    (``fstride``, ``tstride``, ``input_tdim``, ``mean``, ``std``, ``labels``: a CSV, relative to the
    JSON's folder). Unknown keys are refused, so a typo does not pass silently."""
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.is_file():
        return {}
    data = read_json(sidecar)
    known = {"fstride", "tstride", "input_tdim", "mean", "std", "labels"}
    if not isinstance(data, dict) or set(data) - known:
        raise ModelError(f"{sidecar}: expected an object of {', '.join(sorted(known))}", hint=f"unknown: {', '.join(sorted(set(data) - known))}" if isinstance(data, dict) else None)
    if "labels" in data:
        data["labels"] = str(sidecar.parent / data["labels"])
    return data


def authors_checkpoint(
    path: Path, spec: str, labels: str | None, *, fstride: int | None = None, tstride: int | None = None, input_tdim: int | None = None
) -> AuthorsWeights:
    """Native weights, config (with label names), position grid and statistics of the authors' ``.pth``.
    Arguments win over its sidecar ``X.pth.json``, which wins over what the position table says."""
    sd = _authors_weights(path, spec)
    side = read_sidecar(path)
    arch = {k: given if given is not None else side.get(k) for k, given in (("fstride", fstride), ("tstride", tstride), ("input_tdim", input_tdim))}
    config, grid, setting = infer_authors_config(sd, spec, **arch)
    stats = NORM_STATS[setting.norm_stats] if setting else NORM_STATS["audioset"]
    if "mean" in side or "std" in side:
        stats = (float(side.get("mean", stats[0])), float(side.get("std", stats[1])))
    if setting and not any(arch.values()):
        _log.info(
            f"{spec}: strides {setting.fstride}/{setting.tstride}, {setting.input_tdim} frames, {setting.norm_stats} statistics: "
            f"the authors' {setting.name} setting (--fstride, --tstride, --input-tdim, --norm-stats to say otherwise)"
        )
    return AuthorsWeights(sd, _named(config, spec, labels or side.get("labels")), grid, stats)


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
    """``config`` with the names of a labels CSV, or of the released AudioSet model for 527 outputs."""
    if labels:
        return config.with_labels(read_labels_csv(labels), spec)
    if config.num_labels == 527:  # an AudioSet head: the names of the released model
        try:
            default = ASTConfig.from_file(hub.fetch(hub.DEFAULT_MODEL, hub.CONFIG_FILE))
            return config.replace(id2label=default.id2label)
        except OfflineError as exc:  # fine-tuning or exporting needs no names: go on, and say so
            warnings.warn(f"{spec}: AudioSet label names unavailable ({exc.message}); pass --labels class_labels_indices.csv", stacklevel=3)
            return config
    warnings.warn(f"{spec}: no label names; pass --labels class_labels_indices.csv", stacklevel=3)
    return config


# -- saving ----------------------------------------------------------------------------------------
def save(model: AST, preprocessor: PreprocessorConfig, directory: str | os.PathLike) -> Path:
    """Write a Hub-layout checkpoint (config.json, model.safetensors, preprocessor_config.json) that
    transformers' ``ASTForAudioClassification.from_pretrained`` loads. Each file is written
    atomically (``files``), so a reader never sees half a file."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ensure_space(directory, sum(v.numel() * 4 for v in model.state_dict().values()) + (1 << 20), "the model")
    sd = native_to_hf({k: v.float() for k, v in model.state_dict().items()})
    with AtomicPath(directory / "model.safetensors") as target:
        save_file(sd, str(target.tmp), metadata={"format": "pt"})
    stale = directory / "pytorch_model.bin"  # a reader would otherwise find two weight files
    if stale.exists():
        stale.unlink()
    model.config.save(directory)
    PreprocessorConfig(
        sampling_rate=preprocessor.sampling_rate,
        num_mel_bins=model.config.num_mel_bins,
        max_length=model.config.max_length,
        mean=preprocessor.mean,
        std=preprocessor.std,
        do_normalize=preprocessor.do_normalize,
        extra=preprocessor.extra,
    ).save(directory)
    return directory
