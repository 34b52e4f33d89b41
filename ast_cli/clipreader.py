"""The clips of ``ast stats``, read as far as the statistics need them (``ClipReader``); unreadable
files are warned about once and skipped."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Generator, Iterable, Sequence
from typing import Protocol

import numpy as np
import torch

from . import audio
from .errors import AudioError
from .features import FRAME_LENGTH, FRAME_SHIFT, fbank, num_frames, pad_or_cut

_log = logging.getLogger(__name__)


class ProgressBar(Protocol):
    """What the statistics use of a tqdm bar."""

    def update(self, n: int = 1) -> object: ...

    def clear(self) -> None: ...

    def refresh(self) -> object: ...


class ClipReader:
    """Reads clips as the statistics need them: only the samples of the first ``target_length``
    frames are kept, the rest of a file is streamed through for its mean and length. Counts the
    frames of audio and of padding in what it hands out (``fit``)."""

    def __init__(self, num_mel_bins: int, channel: str | int, target_length: int, bar: ProgressBar | None = None):
        self.target_length = target_length
        self.num_mel_bins = num_mel_bins
        self.channel = channel
        self.real_frames = self.all_frames = 0
        self.bad: dict[str, str] = {}
        self.done = 0  # files read (or skipped) so far
        self.bar = bar  # the progress bar, cleared while a warning is printed

    def mark_bad(self, path: str, exc: AudioError) -> None:
        if path not in self.bad:
            self.bad[path] = str(exc)
            if self.bar is not None:
                self.bar.clear()
            _log.warning("%s; skipped", exc)
            _log.debug("%s", exc, exc_info=True)  # called in the except block: --debug shows where
            if self.bar is not None:
                self.bar.refresh()

    @property
    def keep(self) -> int:
        """Samples of ``target_length`` frames."""
        return (self.target_length - 1) * FRAME_SHIFT + FRAME_LENGTH

    def fit(self, features: torch.Tensor) -> torch.Tensor:
        """(frames, F) padded or cut to (target_length, F), counting the frames of audio in it."""
        self.real_frames += min(len(features), self.target_length)
        self.all_frames += self.target_length
        return pad_or_cut(features, self.target_length)

    def longest(self, paths: Sequence[str]) -> int:
        """Frames of the longest readable clip at 16 kHz, from the headers (decoded where a header does
        not tell); unreadable files are marked bad here already. Only regular files: a pipe can be
        read once, by the statistics themselves."""
        longest = 0
        for path in paths:
            if not os.path.isfile(path):
                continue
            try:
                with audio.AudioReader(path, self.channel) as reader:
                    info = reader.info
                    if info.frames is None:
                        samples = sum(len(block) for block in audio.stream(reader))
                    else:  # what resampling to 16 kHz makes of it: ceil(n * 16000 / rate)
                        samples = -(-info.frames * audio.SAMPLE_RATE // info.sample_rate)
            except AudioError as exc:
                self.mark_bad(path, exc)
                continue
            longest = max(longest, num_frames(samples))
        return longest

    def _stream(self, path: str) -> Generator[np.ndarray, None, None]:
        with audio.AudioReader(path, self.channel) as reader:
            yield from audio.stream(reader)

    def features(self, path: str) -> torch.Tensor:
        """(T, F) fbank as the model is fed (no DC removal), padded or cut. Stops reading at T frames."""
        with contextlib.closing(self._stream(path)) as blocks:  # stopping early closes the decoder now
            kept = _take(blocks, self.keep)
        _check_length(len(kept), path)
        return self.fit(fbank(kept, self.num_mel_bins))

    def waveform(self, path: str) -> np.ndarray:
        """The first samples needed for ``target_length`` frames, minus the mean over the whole file
        (dataloader.py: ``waveform - waveform.mean()``)."""
        parts: list[np.ndarray] = []
        kept, total, length = 0, 0.0, 0
        for block in self._stream(path):
            total += float(block.sum(dtype=np.float64))
            length += len(block)
            if kept < self.keep:
                parts.append(block[: self.keep - kept])
                kept += len(parts[-1])
        _check_length(length, path)
        samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        mean = total / length if length else 0.0
        return (samples - mean).astype(np.float32)

    def partner(self, dataset: Sequence[str], rng: np.random.Generator) -> np.ndarray | None:
        """A mixup partner drawn uniformly from the dataset; unreadable draws are marked bad and
        drawn again (None once no file of the dataset can be read)."""
        while len(self.bad) < len(dataset):
            candidate = dataset[int(rng.integers(0, len(dataset)))]
            if candidate in self.bad:
                continue
            try:
                return self.waveform(candidate)
            except AudioError as exc:
                self.mark_bad(candidate, exc)
        return None


def _check_length(samples: int, path: str) -> None:
    # an all-padding clip would pull the statistics towards 0; tag and finetune refuse such clips too
    if samples < FRAME_LENGTH:
        raise AudioError(
            f"{path}: too short ({samples / audio.SAMPLE_RATE * 1000:.1f} ms of audio at 16 kHz; "
            "one 25 ms frame is the minimum)"
        )


def _take(blocks: Iterable[np.ndarray], n: int) -> np.ndarray:
    parts: list[np.ndarray] = []
    kept = 0
    for block in blocks:
        parts.append(block[: n - kept])
        kept += len(parts[-1])
        if kept >= n:
            break
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
