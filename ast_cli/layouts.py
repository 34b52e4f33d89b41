"""Key layouts: every table that names an AST's weights, and the adaptations of its position table.

Three layouts name the same tensors:
- ours (``model.AST``, timm's names): ``blocks.N.attn.qkv.weight``, ``fc_norm``, ``head``;
- transformers' (every Hub file): ``audio_spectrogram_transformer.encoder.layer.N.attention.attention.query.weight``,
  ``classifier.layernorm``, ``classifier.dense``; query, key and value apart;
- the authors' ``.pth``: DataParallel's ``module.v.*`` (timm's names) and ``module.mlp_head.{0,1}.*``.
Renaming lives here (``hf_to_native``, ``native_to_hf``, ``authors_to_native``; ``hf_native_key`` and
``authors_native_key`` for one name, which the shape checks of ``weights`` use too, and ``hf_uses`` and
``authors_uses``, which choose the tensors to read by name), position-embedding adaptation in
``adapt_pos_embed`` (and ``leading_pos_embed`` for inputs cropped at run time): nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch

from .errors import ModelError

HF_PREFIX = "audio_spectrogram_transformer."
# transformers' names in a block (legacy, as written in every Hub file, and v5's in-memory names) -> ours;
# "q.", "k.", "v." mark the parts that ours holds fused in attn.qkv.
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
# ours -> the names transformers writes in a block (query, key and value are split from attn.qkv)
_NATIVE_BLOCK = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_HF_LAYER = re.compile(r"(?:encoder\.layer|layers)\.(\d+)\.(.+)$")


def is_hf_layout(keys: Iterable[str]) -> bool:
    """Whether the keys (a state dict's) are transformers' names."""
    return any(k.startswith((HF_PREFIX, "embeddings.")) for k in keys)


def is_authors_layout(keys: Iterable[str]) -> bool:
    return any(k.startswith(("module.v.", "v.cls_token", "module.mlp_head")) for k in keys)


def is_matrix(key: str, shape: Sequence[int]) -> bool:
    """A Linear or Conv weight (LayerNorms and biases are 1-D; the tokens and the position table are not
    called ``*.weight``), in every layout's names: what a cast of the weight matrices applies to."""
    return key.endswith(".weight") and len(shape) >= 2


def hf_native_key(key: str) -> str | None:
    """Our name of one of transformers' keys; ``blocks.N.q.weight`` (``k.``, ``v.``) for the parts of
    ``attn.qkv``; None for a key of no AST (another head's buffers: the strict load reports them)."""
    if key in _HF_HEAD:
        return _HF_HEAD[key]
    k = key.removeprefix(HF_PREFIX)
    if k in _HF_TOP:
        return _HF_TOP[k]
    m = _HF_LAYER.match(k)
    if not m:
        return None
    index, rest = m.groups()
    for pattern, repl in _HF_BLOCK:
        if re.search(pattern, rest):
            rest = re.sub(pattern, repl, rest, count=1)
            break
    return f"blocks.{index}.{rest}"


# Every weight of ours (``model.AST``): a key that renames to anything else is no AST's.
_NATIVE = re.compile(
    r"cls_token|dist_token|pos_embed|(?:patch_embed\.proj|norm|fc_norm|head"
    r"|blocks\.\d+\.(?:norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2|[qkv]))\.(?:weight|bias)"
)


def hf_uses(key: str, source: str) -> bool:
    """Whether an AST reads this key of transformers' layout, decided by its name before its bytes are
    read: False for a key of no AST (another head's buffers: ignored, never read); an AST's name for a
    weight no AST has is refused."""
    return _uses(key, hf_native_key(key), source)


def authors_uses(key: str, source: str) -> bool:
    """``hf_uses`` for the authors' layout (the DeiT heads ``v.head``/``v.head_dist`` are ignored)."""
    return _uses(key, authors_native_key(key), source)


def _uses(key: str, native: str | None, source: str) -> bool:
    if native is not None and not _NATIVE.fullmatch(native):
        raise ModelError(f"{source}: weights do not match an AST ({key!r} is a weight no AST has)")
    return native is not None


def hf_to_native(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' ``ASTForAudioClassification`` (or ``ASTModel``) keys -> ours; q, k, v fused into qkv."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        native = hf_native_key(key)
        if native is None:
            continue
        m = re.match(r"blocks\.(\d+)\.([qkv])\.(.+)$", native)
        if m:
            index, part, kind = m.groups()
            qkv.setdefault((index, kind), {})[part] = value
        else:
            out[native] = value
    for (index, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ModelError(f"checkpoint: layer {index} lacks one of query/key/value {kind}")
        out[f"blocks.{index}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def native_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Ours -> the Hub layout every transformers version reads (legacy ``encoder.layer`` names)."""
    top = {v: k for k, v in _HF_TOP.items()}
    head = {v: k for k, v in _HF_HEAD.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        value = value.detach().contiguous()
        if key in head:
            out[head[key]] = value
            continue
        if key in top:
            out[HF_PREFIX + top[key]] = value
            continue
        m = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", key)
        if not m:
            raise ModelError(f"cannot save unknown parameter {key!r}")
        index, module, kind = m.groups()
        prefix = f"{HF_PREFIX}encoder.layer.{index}."
        if module == "attn.qkv":
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                out[f"{prefix}attention.attention.{name}.{kind}"] = part.contiguous()
        else:
            out[f"{prefix}{_NATIVE_BLOCK[module]}.{kind}"] = value
    return out


def authors_native_key(key: str) -> str | None:
    """Our name of one of the authors' keys (their timm names under ``module.v.``, ``module.mlp_head.{0,1}``);
    None for the DeiT heads ``head``/``head_dist`` that AST never uses and for keys of no AST."""
    k = key.removeprefix("module.")
    if k.startswith("v.head"):  # and v.head_dist
        return None
    if k.startswith("v."):
        return k[2:]
    for prefix, ours in (("mlp_head.0.", "fc_norm."), ("mlp_head.1.", "head.")):
        if k.startswith(prefix):
            return ours + k[len(prefix) :]
    return None


def authors_to_native(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' ``module.v.*`` / ``module.mlp_head.{0,1}.*`` keys -> ours (their timm names, minus
    the DeiT heads ``head``/``head_dist`` that AST never uses), as transformers' conversion script does."""
    return {native: value for key, value in sd.items() if (native := authors_native_key(key)) is not None}


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


def leading_pos_embed(pos: torch.Tensor, grid: tuple[int, int], t: int) -> torch.Tensor:
    """(1, 2 + f*t, D): the position embeddings of the first ``t`` time columns of ``grid`` (f, t0),
    the ones a shorter input's patches have when it is zero-padded to the full length (``ast tag
    --crop-short``). Not ``adapt_pos_embed``'s cut around the centre, which would move every patch
    to another position than the padded input gives it (docs/performance.md measures both)."""
    f, t0 = grid
    D = pos.shape[-1]
    table = pos[:, 2:].reshape(1, f, t0, D)[:, :, :t]  # (1, f, t, D): frequency-major, as PatchEmbed flattens
    return torch.cat([pos[:, :2], table.reshape(1, f * t, D)], dim=1)
