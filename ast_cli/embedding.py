"""Embeddings: the pooled AST representation before the classifier, per file and per window.

The embedding of a window is ``(cls + distillation) / 2`` after the final LayerNorm (the paper's
pooled output, transformers' ``ASTModel`` ``pooler_output``). A recording is cut into windows exactly
as ``ast tag`` cuts it (``Tagger.windows``); its embedding is the mean over its windows.

Files: ``.jsonl`` (one record a line, ``-`` for standard output), ``.npy`` (an array (files, D), one
row per input in order, NaN rows for inputs that failed), ``.npz`` (``embeddings`` (files, D), ``paths``,
``duration_s``; with windows ``window_embeddings`` (W, D), ``window_file``, ``window_start_s``,
``window_end_s``). Files are written atomically (``files.AtomicPath``): complete, or not at all.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TypedDict

import numpy as np
import torch

from .errors import AudioError, Interrupted, OutputExistsError, UsageError
from .features import FRAMES_PER_SECOND
from .files import AtomicPath
from .inference import Tagger
from .options import TagOptions
from .output import to_json
from .targets import refuse_overlap, target
from .windows import batched

SUFFIXES = (".jsonl", ".npy", ".npz")  # the output format is the file's suffix
DECIMALS = 7  # jsonl: float32 carries ~7 significant digits
_log = logging.getLogger(__name__)


@dataclass
class FileEmbedding:
    path: str
    duration_s: float | None = None
    embedding: np.ndarray | None = None  # (D,) mean over the windows
    starts: list[int] = field(default_factory=list)  # first frame of each window
    ends: list[float] = field(default_factory=list)  # seconds, the recording's end for the last window
    windows: np.ndarray | None = None  # (W, D)
    error: str | None = None


def embed(tagger: Tagger, source, options: TagOptions, sample_rate: int | None = None) -> FileEmbedding:
    """Embeddings of one input (a path, ``-``, or an array with ``sample_rate``), windows as ``ast tag`` makes them."""
    windows, meta = tagger.windows(source, options, sample_rate)
    window, _ = tagger.window_hop_frames(options)
    parts: list[np.ndarray] = []
    starts: list[int] = []
    for batch in batched(windows, tagger.windows_per_batch(options)):
        parts.append(tagger.embeddings(torch.stack([w.features for w in batch])).numpy())  # (B, D)
        starts.extend(w.start for w in batch)
    per_window = np.concatenate(parts)  # (W, D)
    duration = meta["duration_s"]
    ends = [min((start + window) / FRAMES_PER_SECOND, duration) for start in starts]
    path = "<array>" if isinstance(source, np.ndarray) else os.fspath(source)
    return FileEmbedding(path, duration, per_window.mean(0), starts, ends, per_window)


def embed_files(tagger: Tagger, sources: Iterable[str], options: TagOptions) -> Iterator[FileEmbedding]:
    """One FileEmbedding per input in order; an input that cannot be decoded gets one with ``error``."""
    tagger.window_hop_frames(options)  # a bad --window/--hop fails before any work
    for source in sources:
        try:
            yield embed(tagger, source, options)
        except AudioError as exc:
            _log.debug("%s", exc, exc_info=True)
            yield FileEmbedding(source, error=str(exc))


def check_output(out: str, timeline: bool, force: bool, reads: Iterable[str] = ()) -> str:
    """The output's format (its suffix), or a UsageError before any work is done: also when ``out`` is
    one of ``reads`` (the inputs and the model's files). A stream (a pipe, /dev/stdout) without a
    suffix takes JSON Lines, as ``-`` does."""
    if out == "-":
        return ".jsonl"
    where = target(out)
    if Path(out).is_dir():
        raise UsageError(f"-o {out}: is a directory", hint="give a file name ending in .jsonl, .npy or .npz")
    suffix = _format_of(out, where.stream)
    if suffix not in SUFFIXES:
        raise UsageError(
            f"-o {out}: unknown format {suffix or '(no suffix)'!r}",
            hint="name it .jsonl, .npy or .npz ('-': JSON Lines on stdout)",
        )
    if suffix == ".npy" and timeline:
        raise UsageError(
            "--timeline does not fit in a .npy file (one array of files x dimensions)", hint="write .npz or .jsonl"
        )
    refuse_overlap([where], reads)
    if os.path.lexists(out) and not force and not where.stream:
        raise OutputExistsError(f"{out} exists", hint="use --force to overwrite it, or another -o")
    return suffix


def _format_of(out: str, stream: bool) -> str:
    suffix = Path(out).suffix.lower()
    return ".jsonl" if out == "-" or (stream and suffix not in SUFFIXES) else suffix


class EmbeddingWriter:
    """Writes FileEmbeddings to ``out`` (see the module's docstring); ``close()`` completes the file."""

    def __init__(self, out: str, timeline: bool, dims: int):
        self.out = out
        self.dims = dims  # the model's width: a failed input is a NaN row of it
        self.stream = out != "-" and target(out).stream  # a pipe, a device: written in place, never replaced
        self.suffix = _format_of(out, self.stream)
        self.timeline = timeline
        self.items: list[FileEmbedding] = []
        self._target: AtomicPath | None = None
        self._stream: IO[str] | None = None  # JSON Lines only: the arrays are written whole by close()
        if out == "-":
            self._stream = sys.stdout
        elif self.stream:
            if self.suffix == ".jsonl":
                self._stream = open(out, "a", encoding="utf-8", errors="surrogateescape")
        else:
            self._target = AtomicPath(out)
            if self.suffix == ".jsonl":
                self._stream = self._target.open("w", encoding="utf-8", errors="surrogateescape")

    def write(self, item: FileEmbedding) -> None:
        if self._stream is not None:
            self._stream.write(to_json(self.record(item)) + "\n")
            self._stream.flush()
        else:  # kept for the array written at the end: without --timeline, only the (D,) mean
            self.items.append(item if self.timeline else replace(item, starts=[], ends=[], windows=None))

    def record(self, item: FileEmbedding) -> dict:
        """The JSON Lines record: path, duration_s, embedding; windows with --timeline; error on failure."""
        if item.error is not None:
            return {"path": item.path, "duration_s": None, "embedding": None, "error": item.error}
        assert item.duration_s is not None and item.embedding is not None  # embed() sets both, or the error
        record: dict = {
            "path": item.path,
            "duration_s": round(item.duration_s, 3),
            "embedding": _floats(item.embedding),
        }
        if self.timeline:
            assert item.windows is not None  # embed() sets the windows with the embedding
            record["windows"] = [
                {"start_s": round(start / FRAMES_PER_SECOND, 3), "end_s": round(end, 3), "embedding": _floats(vector)}
                for start, end, vector in zip(item.starts, item.ends, item.windows, strict=True)
            ]
        return record

    def close(self) -> None:
        """Complete the file; failing (a full disk), leave ``out`` as it was and no temporary. A stream
        (a pipe, a device) gets the arrays written in place."""
        try:
            if self._stream is not None:
                if self._stream is not sys.stdout:
                    self._stream.close()
            elif self._target is None:
                with open(self.out, "ab") as device:
                    if self.suffix == ".npy":
                        np.save(device, self._matrix())
                    else:
                        np.savez(device, **self._arrays())
            else:
                if self.suffix == ".npy":
                    matrix = self._matrix()
                    self._target.write_with(lambda f: np.save(f, matrix))
                else:
                    with self._target.open("wb") as f:
                        np.savez(f, **self._arrays())
            if self._target is not None:
                self._target.commit()
                self._target = None
        except BaseException as exc:
            self.abort()
            named = self.named(exc)
            if named is exc:
                raise
            raise named from exc

    def named(self, exc: BaseException) -> BaseException:
        """``exc`` naming ``out`` when the machine stopped the write (``files.AtomicPath.named``)."""
        return exc if self._target is None else self._target.named(exc)

    def abort(self) -> None:
        """Leave ``out`` as it was (an interrupted run): the temporary file goes, even when closing it
        fails (the buffer it could not flush to a full disk)."""
        try:
            if self._stream is not None and self._stream is not sys.stdout:
                self._stream.close()
        except OSError:
            pass
        finally:
            if self._target is not None:
                self._target.abort()

    def _matrix(self) -> np.ndarray:
        """(files, D) float32; a failed input is a row of NaN, so row i is always input i."""
        matrix = np.full((len(self.items), self.dims), np.nan, dtype=np.float32)
        for i, item in enumerate(self.items):
            if item.embedding is not None:
                matrix[i] = item.embedding
        return matrix

    def _arrays(self) -> _Arrays:
        arrays: _Arrays = {
            "embeddings": self._matrix(),
            "paths": np.array([item.path for item in self.items], dtype=str),
            "duration_s": np.array([np.nan if item.duration_s is None else item.duration_s for item in self.items]),
        }
        if self.timeline:
            done = [(i, item) for i, item in enumerate(self.items) if item.windows is not None]
            arrays["window_embeddings"] = (
                np.concatenate([item.windows for _, item in done]) if done else np.zeros((0, self.dims), np.float32)
            )
            arrays["window_file"] = np.array([i for i, item in done for _ in item.starts], dtype=np.int64)
            arrays["window_start_s"] = np.array([s / FRAMES_PER_SECOND for _, item in done for s in item.starts])
            arrays["window_end_s"] = np.array([e for _, item in done for e in item.ends])
        return arrays


class _Arrays(TypedDict, total=False):
    """The arrays of an .npz file, by name (the window ones with --timeline)."""

    embeddings: np.ndarray  # (files, D)
    paths: np.ndarray
    duration_s: np.ndarray
    window_embeddings: np.ndarray  # (W, D)
    window_file: np.ndarray
    window_start_s: np.ndarray
    window_end_s: np.ndarray


def _floats(vector: np.ndarray) -> list[float]:
    return [round(v, DECIMALS) for v in vector.tolist()]


def write_embeddings(
    items: Iterable[FileEmbedding], out: str, timeline: bool, total: int, dims: int, on_error=None
) -> int:
    """Write every item to ``out``; ``on_error(message)`` for each failed input. Returns the number
    that failed. Interrupted or failing, it leaves ``out`` as it was (no half-written file)."""
    writer = EmbeddingWriter(out, timeline, dims)
    done = failed = 0
    try:
        for item in items:
            if item.error is not None:
                failed += 1
                if on_error:
                    on_error(item.error)
            done += 1
            writer.write(item)
    except KeyboardInterrupt:
        writer.abort()
        kept = "" if out == "-" else f"; {out} was not written"
        raise Interrupted(f"interrupted after {done} of {total} file(s){kept}") from None
    except BaseException as exc:
        writer.abort()
        named = writer.named(exc)
        if named is exc:
            raise
        raise named from exc
    writer.close()
    return failed
