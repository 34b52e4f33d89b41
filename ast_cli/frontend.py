"""The log-mel front end as a plain-torch module, for graphs that take 16 kHz waveforms.

``torchaudio.compliance.kaldi.fbank`` frames the signal with ``as_strided`` and works on one
waveform at a time, which neither the ONNX exporter nor a batched graph can take. ``KaldiFbank``
computes the same features (``features.fbank``, tested to 1e-4) from operations every exporter
knows, for a batch of equal-length waveforms:

frames via ``unfold`` (25 ms every 10 ms, snip_edges) -> per-frame DC removal -> pre-emphasis 0.97
-> Hanning window -> power spectrum of the 512-point DFT -> kaldi's mel filter bank (20 Hz to
Nyquist) -> log with kaldi's floor (float32 epsilon).

The spectrum comes from ``torch.stft`` over the frames (one 512-sample STFT frame each): the ONNX
exporter has no ``fft_rfft`` but maps ``stft`` to ONNX's STFT operator. A DFT written as a product
with a cosine/sine basis was tried and rejected: in float32 it moves low-energy mel bins by up to
1e-3 from kaldi's FFT, more than the 1e-4 the features must meet.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .audio import SAMPLE_RATE
from .features import FRAME_LENGTH, FRAME_SHIFT

N_FFT = 512  # kaldi rounds the 400-sample frame up to a power of two
PREEMPHASIS = 0.97
LOW_FREQ = 20.0  # Hz, kaldi's default
EPSILON = torch.finfo(torch.float32).eps  # kaldi.fbank: max(mel_energies, eps).log()


class KaldiFbank(nn.Module):
    """(B, samples) 16 kHz waveforms -> (B, frames, num_mel_bins) log-mel, as ``features.fbank``."""

    ones: torch.Tensor  # buffers (register_buffer): tensors, not modules
    window: torch.Tensor
    mel: torch.Tensor

    def __init__(self, num_mel_bins: int = 128):
        super().__init__()
        import torchaudio.compliance.kaldi as kaldi

        self.register_buffer("ones", torch.ones(N_FFT), persistent=False)  # the STFT's own window: none
        window = torch.hann_window(FRAME_LENGTH, periodic=False, dtype=torch.float32)  # kaldi's "hanning"
        self.register_buffer("window", window, persistent=False)
        mel, _ = kaldi.get_mel_banks(num_mel_bins, N_FFT, float(SAMPLE_RATE), LOW_FREQ, 0.0, 100.0, -500.0, 1.0)
        mel = F.pad(mel.float(), (0, 1))  # (num_mel_bins, 257): kaldi gives the Nyquist bin no weight
        self.register_buffer("mel", mel.T.contiguous(), persistent=False)  # (257, num_mel_bins)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        # frames by gathering (m, 400) sample indices: the ONNX exporter cannot take unfold over an
        # axis of unknown length
        m = (waveform.shape[-1] - FRAME_LENGTH) // FRAME_SHIFT + 1
        starts = torch.arange(m, device=waveform.device) * FRAME_SHIFT
        index = starts[:, None] + torch.arange(FRAME_LENGTH, device=waveform.device)[None, :]  # (m, 400)
        frames = waveform[:, index]  # (B, m, 400)
        frames = frames - frames.mean(dim=-1, keepdim=True)  # per-frame DC removal
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # x[j-1], x[0] for j = 0
        frames = (frames - PREEMPHASIS * previous) * self.window
        B, m = frames.shape[0], frames.shape[1]
        padded = F.pad(frames, (0, N_FFT - FRAME_LENGTH)).reshape(-1, N_FFT)  # (B*m, 512)
        with warnings.catch_warnings():
            # the real (..., 2) form is deprecated, but the ONNX exporter cannot take the complex one
            warnings.filterwarnings("ignore", message="stft with return_complex=False")
            spec = torch.stft(padded, N_FFT, hop_length=N_FFT, window=self.ones, center=False, return_complex=False)
        power = spec.pow(2).sum(-1).reshape(B, m, N_FFT // 2 + 1)  # (B, m, 257) |X|^2
        mel = power @ self.mel  # (B, m, num_mel_bins)
        return torch.clamp(mel, min=EPSILON).log()


class Frontend(nn.Module):
    """Waveforms -> the model's input: fbank, zero-padded or cut to ``max_length`` frames, normalised."""

    def __init__(self, num_mel_bins: int, max_length: int, mean: float, std: float, normalize: bool = True):
        super().__init__()
        self.fbank = KaldiFbank(num_mel_bins)
        self.max_length = max_length
        self.mean, self.scale = (mean, 2 * std) if normalize else (0.0, 1.0)  # (x - mean) / (2 * std)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.fbank(waveform)  # (B, m, F)
        # pad then cut, so one graph serves inputs shorter and longer than a window
        x = F.pad(x, (0, 0, 0, self.max_length))[:, : self.max_length]  # (B, T, F)
        return (x - self.mean) / self.scale
