"""Log-mel filter banks exactly as transformers' ``ASTFeatureExtractor`` computes them.

The authors' loader (dataloader.py ``_wav2fbank``) also subtracts the waveform's mean first; kaldi's
per-frame DC removal makes that nearly, not exactly, the same in float32 (up to ~0.02 in log-mel
near the floor: tests/test_authors.py), and ``--frontend authors`` does it too (``windows.py``).

Kaldi-compatible fbank (torchaudio.compliance.kaldi), 25 ms Hanning frames every 10 ms, 128 mel bins,
no dither, no energy; zero-padded at the end or cut to the model's ``max_length`` frames; normalised
as ``(x - mean) / (2 * std)`` (the authors' choice, which puts the data at std 0.5).
"""

from __future__ import annotations

import numpy as np
import torch

from . import threads
from .audio import SAMPLE_RATE

FRAME_LENGTH = 400  # samples: 25 ms at 16 kHz
FRAME_SHIFT = 160  # samples: 10 ms at 16 kHz
FRAMES_PER_SECOND = SAMPLE_RATE // FRAME_SHIFT  # 100


def num_frames(num_samples: int) -> int:
    """Frames kaldi makes of ``num_samples`` with snip_edges=True (10 s -> 998)."""
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


def fbank(waveform: np.ndarray | torch.Tensor, num_mel_bins: int = 128) -> torch.Tensor:
    """(samples,) 16 kHz mono -> (frames, num_mel_bins) log-mel, the reference computation."""
    import torchaudio.compliance.kaldi as kaldi

    wave = torch.as_tensor(waveform, dtype=torch.float32)
    if num_frames(wave.shape[-1]) == 0:
        return torch.zeros(0, num_mel_bins)
    with threads.per_file():
        return kaldi.fbank(
            wave.reshape(1, -1),
            htk_compat=True,
            sample_frequency=SAMPLE_RATE,
            use_energy=False,
            window_type="hanning",
            num_mel_bins=num_mel_bins,
            dither=0.0,
            frame_shift=10,
        )


class FbankStream:
    """Fbank of a stream fed in blocks, equal to ``fbank`` of the whole stream.

    Kaldi frames are independent (per-frame DC removal and pre-emphasis, no dither), so frames
    computed block by block are the frames of the whole signal; only the 240-sample overlap
    between consecutive frames is carried over.
    """

    def __init__(self, num_mel_bins: int = 128):
        self.num_mel_bins = num_mel_bins
        self._buf = np.zeros(0, dtype=np.float32)
        self.samples = 0  # samples fed so far

    def feed(self, samples: np.ndarray) -> torch.Tensor:
        self.samples += len(samples)
        self._buf = np.concatenate([self._buf, samples]) if len(self._buf) else samples
        n = num_frames(len(self._buf))
        if n == 0:
            return torch.zeros(0, self.num_mel_bins)
        frames = fbank(self._buf[: (n - 1) * FRAME_SHIFT + FRAME_LENGTH], self.num_mel_bins)
        self._buf = self._buf[n * FRAME_SHIFT :]
        return frames


def pad_or_cut(features: torch.Tensor, frames: int) -> torch.Tensor:
    """(T, F) -> (frames, F): zero rows appended at the end, or the first ``frames`` kept."""
    missing = frames - features.shape[0]
    if missing > 0:
        return torch.nn.functional.pad(features, (0, 0, 0, missing))
    return features[:frames]


def normalize(features: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return (features - mean) / (2 * std)


def extract(
    waveform: np.ndarray | torch.Tensor, max_length: int, mean: float, std: float, num_mel_bins: int = 128
) -> torch.Tensor:
    """One clip as the model sees it: (max_length, num_mel_bins), as ASTFeatureExtractor makes it."""
    return normalize(pad_or_cut(fbank(waveform, num_mel_bins), max_length), mean, std)
