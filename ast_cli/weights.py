"""Weight files: safetensors (mapped one tensor at a time, cast as read where asked) and PyTorch pickles
loaded with ``weights_only=True`` (never arbitrary code); the shapes in a safetensors header checked
against a config before any tensor is read.

A model file is checked against bounds before anything is allocated for it: a safetensors header's
size, nesting and entries (known dtypes, offsets inside the file that overlap nowhere and hold exactly
dtype x shape), a PyTorch file's size and its pickle's. Only the tensors the network uses are read,
chosen by name (``layouts.hf_uses``/``authors_uses``); the bytes of the others are never touched.

A safetensors file is 8 bytes of header length (little-endian), a JSON header (name -> dtype, shape,
data_offsets relative to the end of the header) and the tensors' bytes.
"""

from __future__ import annotations

import math
import mmap
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from .config import ASTConfig
from .errors import ModelError, UnsafeCheckpointError
from .jsonfiles import MB, loads
from .layouts import hf_native_key, is_matrix

# The dtypes of the safetensors format and their sizes in bytes; the ones an AST's weights may have read as torch's.
_DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2}
_DTYPE_SIZES |= {"I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}
_SAFETENSORS_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
}
# A header names each tensor in ~100 bytes: an AST's has ~200 (~30 KB). The format's own limit is 100 MB.
MAX_HEADER = 16 * MB
# A PyTorch file's pickle holds names and storage references, not tensor data: ~100 bytes a tensor.
MAX_PICKLE = 64 * MB
# A pickle without the zip container (torch.save before 1.6) is read whole: larger ones are refused.
MAX_LEGACY = 1 << 30
_WRAPPERS = ("state_dict", "model", "model_state_dict")  # what training scripts put the weights under
Select = Callable[[str], bool]  # layouts.hf_uses/authors_uses with the source bound: read this key?


@dataclass(frozen=True)
class Entry:
    """One tensor of a safetensors header: its dtype, shape and bytes [start, end) of the data."""

    dtype: str
    shape: list[int]
    start: int
    end: int


def read_state_dict(
    path: str | os.PathLike, select: Select, matrix_dtype: torch.dtype | None = None, most_bytes: int | None = None
) -> dict[str, torch.Tensor]:
    """The tensors ``select`` keeps, by name before any is read, of a safetensors file or a PyTorch
    file loaded with ``weights_only=True`` (never arbitrary code); the bytes of the others are never read.

    ``matrix_dtype`` (safetensors only): the weight matrices (``*.weight`` of 2 or more dimensions:
    Linear and Conv layers) are cast as each is read, so the fp32 file is never resident whole next to
    its cast copy; everything else stays as stored. ``most_bytes``: a PyTorch file's largest size."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path, select, matrix_dtype)
    return _read_pickle(path, select, most_bytes)


def _read_pickle(path: Path, select: Select, most_bytes: int | None) -> dict[str, torch.Tensor]:
    """The selected tensors of a PyTorch file, unwrapped from a training script's ``{"state_dict": ...}``.
    A zip-format file (torch.save since 1.6) is mapped, so only the selected tensors are read."""
    zipped = _pickle_bounds(path, most_bytes)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
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
    # a copy of each: a mapped tensor would read the file again later (and see it if it were rewritten)
    chosen = [k for k, v in state.items() if isinstance(v, torch.Tensor) and select(str(k))]
    return {str(k): state[k].clone() for k in chosen}


def _pickle_bounds(path: Path, most_bytes: int | None) -> bool:
    """Whether a PyTorch file is a zip (torch.save since 1.6), after refusing one larger than
    ``most_bytes``, a legacy one larger than ``MAX_LEGACY`` (read whole) or a zip whose pickle is larger
    than ``MAX_PICKLE`` (a state dict's pickle holds only names)."""
    try:
        size = path.stat().st_size
        zipped = zipfile.is_zipfile(path)
        pickles = (
            [i.file_size for i in zipfile.ZipFile(path).infolist() if i.filename.endswith(".pkl")] if zipped else []
        )
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({first_line(exc)})") from None
    hint = "the file is damaged, or not these weights"
    if most_bytes is not None and size > most_bytes:
        raise ModelError(
            f"{path}: {_mb(size)}, more than the weights of its config.json take ({_mb(most_bytes)})", hint=hint
        )
    if not zipped and size > MAX_LEGACY:
        raise ModelError(
            f"{path}: {_mb(size)} in PyTorch's legacy format, read whole (at most {_mb(MAX_LEGACY)})",
            hint="save it again with torch.save (the zip format, read a tensor at a time) or as safetensors",
        )
    if sum(pickles) > MAX_PICKLE:
        raise ModelError(
            f"{path}: its pickle is {_mb(sum(pickles))}, more than weights need (at most {_mb(MAX_PICKLE)})", hint=hint
        )
    return zipped


def _read_safetensors(path: Path, select: Select, matrix_dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """The selected tensors of a safetensors file, each mapped on its own and unmapped once copied (the
    weight matrices cast to ``matrix_dtype``): the file is never mapped whole, so its pages do not stay
    resident next to the copy, and the tensors not selected are never mapped or read."""
    out = {}
    try:
        with open(path, "rb") as f:
            header, base = safetensors_header(f, path)
            chosen = [name for name in header if select(name)]  # every name judged before any tensor is read
            for name in chosen:
                entry = header[name]
                dtype = _SAFETENSORS_DTYPES.get(entry.dtype)
                if dtype is None:
                    raise ModelError(
                        f"{path}: not a readable safetensors file ({name!r} is {entry.dtype}, no AST weight's dtype)"
                    )
                cast = (
                    matrix_dtype if matrix_dtype and is_matrix(name, entry.shape) and dtype.is_floating_point else None
                )
                out[name] = _mapped_copy(
                    f.fileno(), base + entry.start, entry.end - entry.start, dtype, entry.shape, cast
                )
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror})") from None
    return out


def safetensors_header(f: IO[bytes], path: Path) -> tuple[dict[str, Entry], int]:
    """The tensors named in the header of an open safetensors file (``__metadata__`` left out) and where
    its data starts, every entry checked before any data is read: a known dtype, a shape of whole
    numbers, bytes inside the file that overlap no other tensor's and that dtype x shape fill exactly."""
    size = os.fstat(f.fileno()).st_size
    n = int.from_bytes(f.read(8), "little")
    if not 2 <= n <= size - 8:
        raise _unreadable(path, f"a header of {n} bytes in a file of {size}")
    if n > MAX_HEADER:
        raise _unreadable(path, f"a header of {_mb(n)}, more than weights need (at most {_mb(MAX_HEADER)})")
    try:
        header = loads(f.read(n), "its header")
    except ModelError as exc:
        raise _unreadable(path, exc.message) from None
    if not isinstance(header, dict):
        raise _unreadable(path, "its header is not a JSON object")
    header.pop("__metadata__", None)
    entries = {str(name): _entry(path, str(name), info, size - 8 - n) for name, info in header.items()}
    previous: tuple[str, Entry] | None = None
    for name, entry in sorted(entries.items(), key=lambda item: (item[1].start, item[1].end)):
        if previous and entry.start < previous[1].end and entry.start < entry.end:
            raise _unreadable(path, f"{previous[0]!r} and {name!r} overlap")
        if entry.end > entry.start:
            previous = (name, entry)
    return entries, 8 + n


def _entry(path: Path, name: str, info: Any, data_size: int) -> Entry:
    """One header entry, checked: a dtype of the format, a list of whole numbers for the shape, offsets
    inside the data that hold exactly dtype x shape."""
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        raise _unreadable(path, f"{name!r} lacks a dtype, shape or data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in _DTYPE_SIZES:
        raise _unreadable(path, f"{name!r} has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_count(d) for d in shape):
        raise _unreadable(path, f"{name!r} has a shape that is not a list of whole numbers: {shape!r}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(o) for o in offsets):
        raise _unreadable(path, f"{name!r} has data_offsets that are not two whole numbers: {offsets!r}")
    start, end = offsets
    if not start <= end <= data_size:
        raise _unreadable(path, f"{name!r} lies outside the file (bytes {start} to {end} of {data_size})")
    needed = math.prod(shape) * _DTYPE_SIZES[dtype]
    if end - start != needed:
        raise _unreadable(path, f"{name!r} has {end - start} bytes, its {dtype} {tuple(shape)} needs {needed}")
    return Entry(dtype, shape, start, end)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _unreadable(path: Path, reason: str) -> ModelError:
    return ModelError(f"{path}: not a readable safetensors file ({reason})")


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB"


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
            header, _ = safetensors_header(f, path)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror})") from None
    shapes: dict[str, list[Any]] = {}
    for name, entry in header.items():
        native = hf_native_key(name)
        if native is not None:
            shapes[native] = entry.shape
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


def most_bytes(config: ASTConfig) -> int:
    """The largest PyTorch file the weights of ``config`` make: every parameter in float64, twice (a
    tensor saved as a view saves its whole storage), and room for the pickle."""
    from .model import AST

    with torch.device("meta"):
        parameters = sum(p.numel() for p in AST(config).parameters())
    return 16 * parameters + MAX_PICKLE


def _has_tensors(d: dict) -> bool:
    return any(isinstance(v, torch.Tensor) for v in d.values())


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (torch's run to dozens), or its type's name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
