"""The plain-torch front end of exported graphs equals features.fbank (the kaldi reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tone

from ast_cli.features import extract, fbank
from ast_cli.frontend import Frontend, KaldiFbank

SIGNALS = {
    "tone and noise": tone(2.0),
    "quiet high tone": tone(1.3, freq=3000, seed=2) * 0.01,
    "pure sine": np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32),
    "white noise": np.random.default_rng(0).standard_normal(12345).astype(np.float32) * 0.3,
    "silence": np.zeros(8000, dtype=np.float32),
    "dc offset": tone(0.5) + 0.25,
    "one frame": tone(0.025),
}


@pytest.mark.parametrize("name", list(SIGNALS))
def test_kaldi_fbank_module_equals_the_reference(name):
    x = SIGNALS[name]
    ref = fbank(x)
    ours = KaldiFbank()(torch.from_numpy(x)[None])[0]
    assert ours.shape == ref.shape
    assert torch.max(torch.abs(ours - ref)).item() <= 1e-4


def test_batch_and_other_mel_counts():
    waves = np.stack([tone(1.1, seed=s, freq=300 + 500 * s) for s in range(3)])
    ours = KaldiFbank(64)(torch.from_numpy(waves))
    for i in range(3):
        assert torch.max(torch.abs(ours[i] - fbank(waves[i], 64))).item() <= 1e-4


@pytest.mark.parametrize("seconds", [0.5, 1.27, 3.0])  # padded, exact-ish, cut
def test_frontend_equals_extract(seconds):
    x = tone(seconds, seed=3)
    ours = Frontend(128, 128, -5.0, 4.0)(torch.from_numpy(x)[None])[0]
    ref = extract(x, 128, -5.0, 4.0)
    assert ours.shape == ref.shape == (128, 128)
    assert torch.max(torch.abs(ours - ref)).item() <= 1e-5
