"""The authors' training augmentation (``src/dataloader.py``), with the draws taken from a numpy
``Generator``: waveform mixup with lambda ~ Beta(10, 10), and SpecAugment frequency and time masks
(torchaudio's ``FrequencyMasking``/``TimeMasking`` on the (F, T) transpose) writing 0 into the raw
log-mel. The one implementation that ``ast stats`` and ``ast finetune`` share.
"""

from __future__ import annotations

import numpy as np
import torch

MIXUP_BETA = 10.0  # dataloader.py: mix_lambda = np.random.beta(10, 10): mixes stay close to half and half


def center(wave: np.ndarray) -> np.ndarray:
    """The waveform minus its mean (dataloader.py: ``waveform - waveform.mean()``)."""
    return wave - wave.mean()


def mix(first: np.ndarray, second: np.ndarray, lam: float) -> np.ndarray:
    """lambda * first + (1 - lambda) * second, second zero-padded/cut to first's length (dataloader.py).

    No centring here: the authors centre both waveforms before and the mix after (``center``); a
    caller whose waveforms are centred already leaves it out."""
    n = len(first)
    other = np.zeros(n, dtype=np.float32)
    take = min(n, len(second))
    other[:take] = second[:take]
    return (lam * first + (1 - lam) * other).astype(np.float32)


def mask_along_axis(features: torch.Tensor, mask_param: int, axis: int, rng: np.random.Generator) -> torch.Tensor:
    """torchaudio.functional.mask_along_axis on (T, F), drawing from ``rng``: a width
    ``v = U * mask_param`` and a start ``U * (size - v)``, both truncated; rows or columns
    ``[start, start + int(v))`` set to 0. The input is not changed (a masked copy is returned)."""
    size = features.shape[axis]
    value = rng.random() * mask_param
    start = int(rng.random() * (size - value))
    end = start + int(value)
    start = max(start, 0)  # a mask wider than the axis may start before it: torchaudio masks from 0
    if end <= start:
        return features
    features = features.clone()
    if axis == 0:
        features[start:end] = 0
    else:
        features[:, start:end] = 0
    return features


def spec_augment(features: torch.Tensor, freqm: int, timem: int, rng: np.random.Generator) -> torch.Tensor:
    """One frequency mask (up to ``freqm`` mel bins) then one time mask (up to ``timem`` frames) on
    (T, F) features, as dataloader.py applies them; 0 turns a mask off (and draws nothing)."""
    if freqm:
        features = mask_along_axis(features, freqm, axis=1, rng=rng)
    if timem:
        features = mask_along_axis(features, timem, axis=0, rng=rng)
    return features
