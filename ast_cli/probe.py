"""The cached linear probe of ``ast finetune --freeze-backbone``: each clip's pooled embedding is computed
once, stored on disk, and the head is trained on the stored vectors.

A frozen backbone maps a clip to the same vector in every epoch, so running it once per epoch (what
``--freeze-backbone`` did) repeats the whole cost of a forward pass for nothing; the head (LayerNorm +
Linear) on a (N, D) matrix takes milliseconds an epoch. Augmentation would make each epoch's vectors
differ, so a cached probe has none.

The cache (``cache_dir()``: ``$AST_CACHE_DIR``, else ``$XDG_CACHE_HOME/ast``, else ``~/.cache/ast``) holds
``embeddings/<model key>/<clip key>.npy`` (float32, D values) and ``frames/<clip key>`` (the clip's fbank
frames, so a re-run decodes nothing). A clip's key hashes its absolute path, size and modification
time; the model key the base (its files' paths, sizes and times, or its Hub id), its architecture at
the run's input length, the normalisation and the precision of the pass. Deleting the folder is safe.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import data as D
from .config import ASTConfig, PreprocessorConfig
from .devices import autocast
from .files import AtomicPath
from .finetune_options import FinetuneOptions
from .model import AST
from .progress import bar as progress_bar

CACHE_ENV = "AST_CACHE_DIR"


def cache_dir() -> Path:
    """Where cached embeddings and clip lengths live: ``$AST_CACHE_DIR``, ``$XDG_CACHE_HOME/ast`` or
    ``~/.cache/ast``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ast"


def _digest(*parts: Any) -> str:
    return hashlib.sha256(
        json.dumps(parts, sort_keys=True, default=str).encode("utf-8", "surrogateescape")
    ).hexdigest()[:32]


def clip_key(path: str) -> str | None:
    """The clip's identity: absolute path, size and modification time (None when it cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _digest(os.path.abspath(path), st.st_size, st.st_mtime_ns)


def _files_of(spec: str) -> list[Any]:
    """A local base's files (name, size, mtime), or the spec itself (a Hub id: the snapshot does not change)."""
    path = Path(os.path.expanduser(spec))
    if not path.exists():
        return [spec]
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return [
        (str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns)
        for f in files
        if f.is_file() and not f.name.startswith(".")
    ]


def model_key(options: FinetuneOptions, config: ASTConfig, pre: PreprocessorConfig, dtype: torch.dtype) -> str:
    """What an embedding depends on: the base's weights (by its files), the backbone's shape at this
    run's input length (not its head), the normalisation and the precision of the pass."""
    shape = {k: v for k, v in asdict(config).items() if k not in ("id2label", "label2id", "problem_type", "num_labels")}
    return _digest(
        _files_of(options.base),
        options.fstride,
        options.tstride,
        options.input_tdim,
        shape,
        pre.mean,
        pre.std,
        str(dtype),
    )


class FrameCache:
    """Clip lengths in fbank frames, by clip key: ``data.scan`` skips decoding a clip found here."""

    def __init__(self, root: Path | None = None):
        self.root = (root or cache_dir()) / "frames"

    def get(self, path: str) -> int | None:
        key = clip_key(path)
        try:
            return int((self.root / key).read_text()) if key else None
        except (OSError, ValueError):
            return None

    def put(self, path: str, frames: int) -> None:
        key = clip_key(path)
        if key:
            self.root.mkdir(parents=True, exist_ok=True)
            with AtomicPath(self.root / key) as target:
                target.tmp.write_text(str(frames))


class EmbeddingSet(torch.utils.data.Dataset):
    """Items ``(embedding (D,), target (C,))`` of a labelled set, keys an index or ``(epoch, index)`` (as
    ``data.ClipDataset``). The embeddings are read from the cache; the missing ones are computed in
    batches of ``batch_size`` by ``model``'s backbone (no augmentation) and stored as they are made, so
    an interrupted pass keeps what it finished."""

    def __init__(
        self,
        model: AST,
        data: D.LabelledSet,
        fbanks: list | None,
        pre: PreprocessorConfig,
        key: str,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int,
        progress: bool | None = None,
        root: Path | None = None,
    ):
        self.folder = (root or cache_dir()) / "embeddings" / key
        self.clips = D.ClipDataset(
            data, pre.max_length, pre.mean, pre.std, fbanks=fbanks, num_mel_bins=pre.num_mel_bins
        )
        keys = [clip_key(c.path) for c in data.clips]
        vectors: list[np.ndarray | None] = [self._read(k) for k in keys]
        self.cached = sum(v is not None for v in vectors)
        missing = [i for i, v in enumerate(vectors) if v is None]
        if missing:
            bar = progress_bar(total=len(missing), unit="clip", desc="embeddings", enabled=progress)
            try:
                for start in range(0, len(missing), batch_size):
                    part = missing[start : start + batch_size]
                    for i, vector in zip(part, self._embed(model, part, device, dtype), strict=True):
                        vectors[i] = vector
                        self._write(keys[i], vector)
                    bar.update(len(part))
            finally:
                bar.close()
        embedded = [v for v in vectors if v is not None]
        assert len(embedded) == len(vectors)  # every clip not in the cache was embedded above
        self.embeddings = torch.from_numpy(np.stack(embedded)) if embedded else torch.zeros(0, model.config.hidden_size)
        self.targets = (
            torch.stack([self.clips.target(i) for i in range(len(self.clips))])
            if len(self.clips)
            else torch.zeros(0, 0)
        )

    def _embed(self, model: AST, indices: list[int], device: torch.device, dtype: torch.dtype) -> np.ndarray:
        x = torch.stack([self.clips[i][0] for i in indices])  # (B, T, F)
        model.eval()
        with torch.no_grad(), autocast(device, dtype):
            return model.forward_features(x.to(device)).float().cpu().numpy()  # (B, D)

    def _read(self, key: str | None) -> np.ndarray | None:
        if key is None:
            return None
        try:
            return np.load(self.folder / f"{key}.npy")
        except (OSError, ValueError):
            return None  # absent or damaged: computed again

    def _write(self, key: str | None, vector: np.ndarray) -> None:
        if key is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with AtomicPath(self.folder / f"{key}.npy") as target, target.open("wb") as f:
            np.save(f, vector.astype(np.float32))

    def __len__(self) -> int:
        return len(self.embeddings)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = key[1] if isinstance(key, tuple) else key
        return self.embeddings[index], self.targets[index]


class Head(torch.nn.Module):
    """The model's classifier alone (its LayerNorm and Linear, shared with the model): pooled embeddings
    (B, D) in, logits (B, C) out."""

    def __init__(self, model: AST):
        super().__init__()
        self.fc_norm, self.head = model.fc_norm, model.head

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc_norm(pooled))


def head_state(model: AST) -> dict[str, torch.Tensor]:
    """A copy of the classifier's weights (what a probe trains; the backbone stays the base's)."""
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items() if k.startswith(("fc_norm.", "head."))}
