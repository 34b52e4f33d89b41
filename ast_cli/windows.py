"""How a recording becomes model inputs: one stream of fbank frames, computed block by block, cut
into windows of the model's input length, each padded and normalised.

A recording shorter than a window is one zero-padded window, exactly what transformers' feature
extractor makes of it (``--crop-short``: cut after the patches that cover its audio instead,
``cropped_frames``); the last window of a long recording is aligned with its end so no window is
mostly padding. Memory stays at about one window plus one decoded block whatever the length.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from . import audio, threads
from .errors import AudioError, Terminated
from .features import FRAME_LENGTH, FRAME_SHIFT, FbankStream, fbank, normalize, pad_or_cut

CHUNK_WINDOWS = 4  # windows per decode message (ast batch): ~2 MB of features at the default size


@dataclass
class Window:
    start: int  # first frame
    frames: int  # frames of audio in it (the rest is padding)
    features: torch.Tensor  # (T, F) normalised, T = the model's max_length (cropped_frames with --crop-short)


@dataclass(frozen=True, kw_only=True)
class WindowSpec:
    """How an input becomes windows: fbank size, window/hop in frames, normalisation, downmix."""

    num_mel_bins: int
    max_length: int  # frames the model takes; shorter windows are zero-padded to it
    window: int
    hop: int
    mean: float
    std: float
    do_normalize: bool = True
    channel: str | int = "mean"
    remove_dc: bool = False  # the authors' loader: each window's waveform minus its mean before the fbank
    crop: tuple[int, int] | None = None  # --crop-short: the model's (patch size, time stride) in frames

    def prepare(self, feats: torch.Tensor) -> torch.Tensor:
        frames = self.max_length if self.crop is None else cropped_frames(len(feats), self.max_length, *self.crop)
        feats = pad_or_cut(feats, frames)  # (T, F): padding before normalisation, as the reference
        return normalize(feats, self.mean, self.std) if self.do_normalize else feats


def cropped_frames(frames: int, max_length: int, patch: int, stride: int) -> int:
    """The frames a window of ``frames`` frames of audio keeps with ``--crop-short``: the fewest whose
    patches (``patch`` wide, every ``stride``) cover all of them, padding included as the full window
    pads; ``max_length`` where those are all the model's patches anyway."""
    steps = max(-(-(frames - patch) // stride), 0)  # ceil: the last patch reaches past the last frame
    full = (max_length - patch) // stride  # strides to the full window's last patch
    return max_length if steps >= full else patch + steps * stride


def iter_windows(
    source: str | os.PathLike | np.ndarray, spec: WindowSpec, sample_rate: int | None = None, meta: dict | None = None
) -> Iterator[Window]:
    """Normalised windows of a path (``-``: stdin) or a waveform array; ``meta["duration_s"]`` is set at the end.

    The fbank is computed once over the whole stream, block by block, and cut into windows: memory
    stays at about one window plus one decoded block whatever the recording's length."""
    stream = FbankStream(spec.num_mel_bins)
    samples = WindowSamples() if spec.remove_dc else None
    with contextlib.ExitStack() as stack:
        if isinstance(source, np.ndarray):
            blocks, name = audio.array_stream(source, sample_rate, spec.channel), "<array>"
        else:
            reader = stack.enter_context(audio.AudioReader(source, spec.channel))
            blocks, name = audio.stream(reader), reader.path
        frames = (stream.feed(samples.keep(block) if samples else block) for block in blocks)
        windows = sliding_windows(frames, spec.window, spec.hop, spec.num_mel_bins)
        for start, feats in samples.recomputed(windows, spec.num_mel_bins) if samples else windows:
            yield Window(start, feats.shape[0], spec.prepare(feats))
        if meta is not None:
            meta["duration_s"] = stream.samples / audio.SAMPLE_RATE
    if stream.samples < FRAME_LENGTH:
        raise AudioError(
            f"{name}: too short to tag ({stream.samples / audio.SAMPLE_RATE * 1000:.1f} ms of audio at 16 kHz; "
            "one 25 ms frame is the minimum)"
        )


class WindowSamples:
    """The samples of the windows still to come, for the authors' front end: ``_wav2fbank`` in their
    dataloader.py removes the waveform's mean before ``kaldi.fbank``. Kaldi's per-frame DC removal
    makes that almost a no-op, but not quite in float32 (log-mel differences up to ~0.02 near the
    floor, tests/test_authors.py)."""

    def __init__(self) -> None:
        self.buf = np.zeros(0, dtype=np.float32)
        self.offset = 0  # stream index of buf[0]

    def keep(self, block: np.ndarray) -> np.ndarray:
        self.buf = np.concatenate([self.buf, block]) if len(self.buf) else block
        return block

    def recomputed(
        self, windows: Iterator[tuple[int, torch.Tensor]], mel_bins: int
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """The same windows, their frames computed again from their samples minus their mean. A
        recording of one window is the authors' clip: the mean of all its samples, the < 160 after
        its last frame included (the first window waits for the second to know)."""
        first = next(windows, None)
        if first is None:
            return
        second = next(windows, None)
        if second is None:
            yield 0, fbank(self.centered(0, None), mel_bins)
            return
        for start, feats in itertools.chain((first, second), windows):
            yield start, fbank(self.centered(start, len(feats)), mel_bins)

    def centered(self, start: int, frames: int | None) -> torch.Tensor:
        """The samples of ``frames`` frames from frame ``start`` (None: all the rest), minus their
        mean; what comes before them is dropped (windows only move forward). The mean as the authors
        take it, ``waveform - waveform.mean()`` on a float32 (1, samples) tensor, on one thread as in
        their DataLoader workers: the same rounding, so the same frames bit for bit."""
        begin = start * FRAME_SHIFT - self.offset
        end = None if frames is None else begin + (frames - 1) * FRAME_SHIFT + FRAME_LENGTH
        waveform = torch.from_numpy(np.ascontiguousarray(self.buf[begin:end])).reshape(1, -1)
        self.buf, self.offset = self.buf[begin:], start * FRAME_SHIFT
        with threads.per_file():
            return (waveform - waveform.mean())[0]


def sliding_windows(
    frame_blocks: Iterable[torch.Tensor], window: int, hop: int, num_mel_bins: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Windows of ``window`` frames every ``hop`` frames over a stream of (n, F) frame blocks.

    Holds at most about one window plus one block of frames. A stream shorter than a window gives
    one short window (padded later); otherwise a last window aligned with the end covers the tail.
    """
    buf = torch.zeros(0, num_mel_bins)
    buf_start = 0  # frame index of buf[0]
    total = 0
    next_start = 0
    last_end = 0
    for block in frame_blocks:
        if not len(block):
            continue
        buf = torch.cat([buf, block]) if len(buf) else block
        total += len(block)
        while next_start + window <= total:
            yield next_start, buf[next_start - buf_start : next_start - buf_start + window]
            last_end = next_start + window
            next_start += hop
        keep_from = min(next_start, max(total - window, 0))
        buf = buf[keep_from - buf_start :]
        buf_start = keep_from
    if total == 0:
        return
    if last_end == 0:
        yield 0, buf  # nothing was cut yet: the whole short stream
    elif last_end < total:
        start = total - window
        yield start, buf[start - buf_start :]


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def decode(seq: int, path: str, spec: WindowSpec) -> Iterator[tuple]:
    """``ast batch``'s messages for one input (from a decode worker, or a Ray task): ("w", seq, starts,
    features (n, T, F)) chunks, then ("d", seq, windows, duration_s), or ("e", seq, message) when it
    cannot be read (after any chunks)."""
    meta: dict = {}
    count = 0
    starts: list[int] = []
    chunk: list[np.ndarray] = []
    try:
        for window in iter_windows(path, spec, meta=meta):
            starts.append(window.start)
            chunk.append(window.features.numpy())
            if len(chunk) == CHUNK_WINDOWS:
                yield ("w", seq, starts, np.stack(chunk))
                count += len(chunk)
                starts, chunk = [], []
        if chunk:
            yield ("w", seq, starts, np.stack(chunk))
            count += len(chunk)
        yield ("d", seq, count, meta.get("duration_s", 0.0))
    except AudioError as exc:
        yield ("e", seq, str(exc))
    except (KeyboardInterrupt, SystemExit, Terminated):  # a signal stops the run, it is no fault of the file
        raise
    except Exception as exc:
        yield ("e", seq, f"{path}: cannot tag ({type(exc).__name__}: {exc})")
