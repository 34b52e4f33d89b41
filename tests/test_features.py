"""Features equal transformers' ASTFeatureExtractor (the reference) to <= 1e-5."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from helpers import tone
from transformers import ASTFeatureExtractor

from ast_cli import audio
from ast_cli.checkpoints import load
from ast_cli.features import FbankStream, extract, fbank, num_frames
from ast_cli.inference import Tagger, TagOptions
from ast_cli.spec import ModelSpec


def reference_features(path, max_length=1024, mean=-4.2677393, std=4.5689974):
    """What a careful transformers user does: read, average channels, resample whole, extract."""
    wave, sr = sf.read(path, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if sr != 16000:
        wave = torchaudio.functional.resample(torch.from_numpy(wave), sr, 16000).numpy()
    fe = ASTFeatureExtractor(max_length=max_length, mean=mean, std=std)
    return fe(wave, sampling_rate=16000, return_tensors="pt")["input_values"][0]


@pytest.mark.parametrize(
    "seconds,sr,channels",
    [(3.0, 16000, 1), (12.5, 16000, 1), (4.2, 8000, 1), (6.0, 44100, 2), (10.0, 44100, 1), (0.7, 22050, 2)],
)
def test_features_match_ast_feature_extractor(wav, seconds, sr, channels):
    path = wav(seconds, sr, channels)
    ours_wave, info = audio.load(path)
    assert info.sample_rate == sr and info.channels == channels
    ours = extract(ours_wave, 1024, -4.2677393, 4.5689974)
    ref = reference_features(path)
    assert ours.shape == ref.shape == (1024, 128)
    assert torch.max(torch.abs(ours - ref)).item() <= 1e-5


def test_first_window_of_the_tagger_is_the_reference(wav, tiny_model_dir):
    """The streamed path (blocks -> resample -> fbank stream -> window) equals the reference too."""
    path = wav(0.9, 44100, 2)
    tagger = Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="fp32"))
    windows, _ = tagger.windows(path, TagOptions())
    first = next(windows).features
    ref = reference_features(path, max_length=128, mean=-5.0, std=4.0)
    assert torch.max(torch.abs(first - ref)).item() <= 1e-5


def test_fbank_stream_equals_whole_fbank():
    x = tone(7.3)
    whole = fbank(x)
    stream = FbankStream()
    rng = np.random.default_rng(0)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 9000))
        parts.append(stream.feed(x[i : i + n]))
        i += n
    streamed = torch.cat(parts)
    assert streamed.shape == whole.shape == (num_frames(len(x)), 128)
    assert torch.max(torch.abs(streamed - whole)).item() <= 1e-5


def test_frame_counts_match_the_reference_facts():
    assert num_frames(160000) == 998  # 10 s
    assert num_frames(80000) == 498  # 5 s
    assert num_frames(16000) == 98  # 1 s
    assert num_frames(399) == 0


def test_silence_has_finite_features():
    feats = extract(np.zeros(16000, dtype=np.float32), 1024, -4.27, 4.57)
    assert torch.isfinite(feats).all()
