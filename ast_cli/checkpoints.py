"""Checkpoints: load a model from a Hub id, a local Hub-layout folder or the authors' ``.pth``, and save
one in Hub layout (transformers loads it as is).

The jobs around it live in their own modules, as timm splits them: ``weights`` reads weight files
safely (the mmap safetensors reader, ``weights_only`` pickles, shape checks against a config),
``layouts`` names the weights (every key table; position-embedding adaptation), ``authors`` reads the
authors' checkpoints (architecture evidence, the ``X.pth.json`` sidecar, labels). Here: ``Checkpoint``,
``build_model``, ``load`` and ``save``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from . import hub
from .authors import authors_checkpoint
from .config import ASTConfig, PreprocessorConfig, parse_stats, read_labels_csv
from .errors import ModelError
from .files import AtomicPath, ensure_space
from .layouts import adapt_pos_embed, hf_to_native, hf_uses, is_hf_layout, is_matrix, native_to_hf
from .model import AST
from .weights import check_shapes, first_line, most_bytes, read_state_dict


@dataclass
class Checkpoint:
    model: AST
    preprocessor: PreprocessorConfig
    source: str  # what the user passed, for messages and recorded settings


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
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), first_line(exc))
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


def _as_loaded(key: str, value: torch.Tensor, matrix_dtype: torch.dtype | None) -> torch.Tensor:
    if not value.is_floating_point() or (value.dtype == matrix_dtype and is_matrix(key, value.shape)):
        return value
    return value.float()


def _grid_for(num_patches: int, config: ASTConfig) -> tuple[int, int] | None:
    """The grid a saved position table had, when the config changed only max_length (same strides)."""
    f = config.grid[0]
    return (f, num_patches // f) if num_patches % f == 0 else None


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


# -- loading ---------------------------------------------------------------------------------------
def load(
    spec: str,
    *,
    labels: str | None = None,
    norm_stats: str | tuple[float, float] | None = None,
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
    open (``evidence.authors_architecture``). ``max_length`` runs the model at another input length than it
    was saved with (position embeddings adapted); ``matrix_dtype`` gives the Linear and Conv weight
    matrices of a safetensors file that dtype as they are read (what ``Tagger`` would cast them to;
    the rest stays fp32), which keeps the memory peak of loading at the cast model's size.
    """
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        if path.suffix == ".json":
            raise ModelError(f"{spec}: give the model's folder, not its config.json")
        found = authors_checkpoint(
            path, spec, labels, fstride=fstride, tstride=tstride, input_tdim=input_tdim, norm_stats=norm_stats
        )
        config = found.config.replace(max_length=max_length) if max_length else found.config
        model = build_model(config, found.weights, spec, saved_grid=found.grid)
        mean, std = found.norm_stats
        return Checkpoint(model, PreprocessorConfig(max_length=config.max_length, mean=mean, std=std), spec)
    if path.is_dir():
        files = hub.local_files(path)
    elif hub.looks_like_path(spec):
        raise ModelError(
            f"{spec}: no such file or directory", hint="give a local model folder, a .pth file or a Hub id"
        )
    else:
        files = hub.fetch_model(spec)
    return _load_hub(
        files, spec, labels=labels, norm_stats=norm_stats, max_length=max_length, matrix_dtype=matrix_dtype
    )


def _load_hub(
    files: hub.ModelFiles,
    spec: str,
    *,
    labels: str | None,
    norm_stats: str | tuple[float, float] | None,
    max_length: int | None,
    matrix_dtype: torch.dtype | None,
) -> Checkpoint:
    """A Hub-layout model from its files (``hub.local_files``/``hub.fetch_model``): config.json checked
    against the weights' shapes before they are read."""
    config_file = files[hub.CONFIG_FILE]
    if config_file is None:
        raise ModelError(f"{spec}: no config.json")
    config = ASTConfig.from_file(config_file)
    if labels:
        config = config.with_labels(read_labels_csv(labels), spec)
    pre_path = files.get(hub.PREPROCESSOR_FILE)
    if pre_path:
        preprocessor = PreprocessorConfig.from_file(pre_path)
    else:
        preprocessor = PreprocessorConfig(max_length=config.max_length)
    if norm_stats:
        preprocessor.mean, preprocessor.std = parse_stats(norm_stats)
    weights = files["weights"]
    if weights is None:  # hub.local_files and hub.fetch_model refuse a model without weights first
        raise ModelError(f"{spec}: no weights (model.safetensors or pytorch_model.bin)")
    if weights.suffix == ".safetensors":
        check_shapes(config, weights, spec)
    sd = read_state_dict(weights, lambda key: hf_uses(key, str(weights)), matrix_dtype, most_bytes(config))
    if not is_hf_layout(sd):
        raise ModelError(f"{weights}: not transformers' AST weights (no audio_spectrogram_transformer.* keys)")
    saved_grid, config_length = config.grid, config.max_length
    if max_length and max_length != config.max_length:
        config = config.replace(max_length=max_length)
    model = build_model(config, hf_to_native(sd), spec, saved_grid=saved_grid, matrix_dtype=matrix_dtype)
    if pre_path:  # once the model loads: a warning of its max_length would otherwise precede another error
        preprocessor.check_against(model.config.replace(max_length=config_length), pre_path)
    return Checkpoint(model, preprocessor, spec)


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
