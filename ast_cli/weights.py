"""Weight files: safetensors (read whole, or mapped one tensor at a time and cast as read) and PyTorch
pickles loaded with ``weights_only=True`` (never arbitrary code); the shapes in a safetensors header
checked against a config before any tensor is read.

A safetensors file is 8 bytes of header length (little-endian), a JSON header (name -> dtype, shape,
data_offsets relative to the end of the header) and the tensors' bytes.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import IO, Any

import torch

from .config import ASTConfig
from .errors import ModelError, UnsafeCheckpointError
from .layouts import hf_native_key, is_matrix

_SAFETENSORS_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
}
_WRAPPERS = ("state_dict", "model", "model_state_dict")  # what training scripts put the weights under


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
    return _read_pickle(path)


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a PyTorch file, unwrapped from a training script's ``{"state_dict": ...}``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the pickle holds more than tensors and could run code ({first_line(exc)})",
            hint="load only files you trust; convert trusted ones to safetensors",
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({first_line(exc)})") from None
    for key in _WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(key), dict) and _has_tensors(state[key]):
            state = state[key]
    if not isinstance(state, dict) or not _has_tensors(state):
        raise ModelError(f"{path}: holds no model weights (an optimizer or training-state file?)")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _read_safetensors_cast(path: Path, matrix_dtype: torch.dtype) -> dict[str, torch.Tensor] | None:
    """The tensors of a safetensors file, each mapped on its own and unmapped once copied: the weight
    matrices cast to ``matrix_dtype``, the rest copied as stored. The file is never mapped whole, so
    its pages do not stay resident next to the cast copy. None for anything unusual: ``load_file``
    then reads the file and reports what is wrong with it."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header, base = safetensors_header(f, size)
            if header is None:
                return None
            out = {}
            for name, info in header.items():
                start, end = info["data_offsets"]
                dtype, shape = _SAFETENSORS_DTYPES[info["dtype"]], info["shape"]
                if not 0 <= start <= end <= size - base or end - start != math.prod(shape) * dtype.itemsize:
                    return None
                cast = matrix_dtype if is_matrix(name, shape) and dtype.is_floating_point else None
                out[name] = _mapped_copy(f.fileno(), base + start, end - start, dtype, shape, cast)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, BufferError, RuntimeError):
        return None
    return out


def safetensors_header(f: IO[bytes], size: int) -> tuple[dict[str, Any] | None, int]:
    """The JSON header of an open safetensors file of ``size`` bytes (name -> dtype, shape,
    data_offsets; ``__metadata__`` left out) and where its data starts; None when it is not one."""
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


def _mapped_copy(
    fd: int, offset: int, nbytes: int, dtype: torch.dtype, shape: list[int], cast: torch.dtype | None
) -> torch.Tensor:
    """A tensor of its own from ``nbytes`` at ``offset`` of the file, through a mapping of just those bytes."""
    if nbytes == 0:
        return torch.empty(shape, dtype=cast or dtype)
    aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
    with mmap.mmap(fd, nbytes + offset - aligned, access=mmap.ACCESS_READ, offset=aligned) as mm:
        with warnings.catch_warnings():  # read-only memory: it is only read, then copied
            warnings.simplefilter("ignore", UserWarning)
            mapped = torch.frombuffer(mm, dtype=torch.uint8, count=nbytes, offset=offset - aligned)
        view = mapped.view(dtype).reshape(shape)
        copy = view.to(cast) if cast else view.clone()
        del mapped, view  # the mapping can only close once nothing views it
    return copy


def check_shapes(config: ASTConfig, path: Path, source: str) -> None:
    """Compare config.json with the shapes in a safetensors file's header, before any tensor is read
    or built: a config that disagrees with its weights is named field by field."""
    try:
        with open(path, "rb") as f:
            header, _ = safetensors_header(f, os.fstat(f.fileno()).st_size)
    except OSError:
        return
    if not header:
        return  # not readable as safetensors: reading it says why
    shapes = {}
    for name, info in header.items():
        native = hf_native_key(name)
        if native is not None and isinstance(info, dict) and isinstance(info.get("shape"), list):
            shapes[native] = info["shape"]
    layers = {int(m.group(1)) for name in shapes if (m := re.match(r"blocks\.(\d+)\.", name))}
    found = {  # the head first: the mistake people make most (id2label edited by hand)
        "num_labels": (shapes.get("head.weight") or [None])[0],
        "hidden_size": (shapes.get("cls_token") or [None])[-1],
        "num_hidden_layers": max(layers) + 1 if layers else None,
        "patch_size": (shapes.get("patch_embed.proj.weight") or [None])[-1],
    }
    for field, value in found.items():
        wanted = getattr(config, field)
        if value is None or value == wanted:
            continue
        if field == "num_labels":
            raise ModelError(
                f"{source}: the head has {value} outputs but config.json names {wanted} labels",
                hint="fix id2label in config.json so it has one label per output",
            )
        raise ModelError(
            f"{source}: config.json says {field} {wanted}, the weights have {value}",
            hint="config.json must describe these weights",
        )


def _has_tensors(d: dict) -> bool:
    return any(isinstance(v, torch.Tensor) for v in d.values())


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (torch's run to dozens), or its type's name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
