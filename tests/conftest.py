"""Shared fixtures: tiny checkpoints (saved by this package and by transformers) and generated audio.

No test touches the network: HF_HUB_OFFLINE is set for the whole session and HF_HOME points at an
empty temporary cache.
"""

from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="ast-test-hf-"))
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

TINY_LABELS = ["Speech", "Music", "Dog", "Rain", "Siren"]


def tiny_config(**changes):
    """A small AST (2 layers, 64 wide) with a 1.28-s window: fast enough for every test."""
    from ast_cli.config import ASTConfig

    values = dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_length=128,
        id2label=dict(enumerate(TINY_LABELS)),
    )
    values.update(changes)
    return ASTConfig(**values)


def random_model(config, seed: int = 0):
    """An AST with random weights of a useful scale (every parameter drawn, LayerNorms included)."""
    import torch

    from ast_cli.model import AST

    torch.manual_seed(seed)
    model = AST(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.ndim == 1:  # LayerNorm gains around 1
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A Hub-layout checkpoint written by ast_cli.checkpoints.save (non-AudioSet mean/std)."""
    from ast_cli.checkpoints import save
    from ast_cli.config import PreprocessorConfig

    directory = tmp_path_factory.mktemp("tiny-ast")
    save(random_model(tiny_config()), PreprocessorConfig(max_length=128, mean=-5.0, std=4.0), directory)
    return directory


@pytest.fixture(scope="session")
def hf_model_dir(tmp_path_factory):
    """A checkpoint written by transformers' save_pretrained, with its feature extractor."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(1)
    config = ASTConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_length=200,
        frequency_stride=12,
        time_stride=8,
        id2label=dict(enumerate(TINY_LABELS[:3])),
        label2id={n: i for i, n in enumerate(TINY_LABELS[:3])},
    )
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    directory = tmp_path_factory.mktemp("hf-ast")
    model.save_pretrained(directory)
    ASTFeatureExtractor(max_length=200, mean=-3.0, std=5.0).save_pretrained(directory)
    return directory


def tone(seconds: float, sr: int = 16000, channels: int = 1, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A tone plus a little noise, (samples,) or (samples, channels), float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    x = 0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))
    if channels == 1:
        return x.astype(np.float32)
    return np.stack([x * (0.5 + 0.5 * c / channels) + 0.01 * c for c in range(channels)], 1).astype(np.float32)


@pytest.fixture
def wav(tmp_path):
    """Factory: wav(seconds, sr=16000, channels=1, name=None, fmt=None) -> path of a generated file."""

    def make(seconds: float, sr: int = 16000, channels: int = 1, name: str | None = None, **kwargs):
        path = tmp_path / (name or f"clip_{seconds}s_{sr}_{channels}ch.wav")
        sf.write(path, tone(seconds, sr, channels, **kwargs), sr)
        return path

    return make


# -- labelled datasets (finetune, eval) ---------------------------------------------------------------
SOUND_CLASSES = ("chirp", "clicks", "noise", "tone")


def synthetic_sound(kind: str, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """One clip of 0.6-1 s of a learnable class with random pitch, length and gain: a steady low tone,
    a broadband noise burst, a high rising chirp or a slow click train (each class also has its own
    spectral region or rhythm, so a tiny model learns them in a few epochs)."""
    n = int(sr * rng.uniform(0.6, 1.0))
    t = np.arange(n) / sr
    if kind == "tone":
        x = np.sin(2 * np.pi * rng.uniform(300, 1200) * t)
    elif kind == "noise":
        x = np.zeros(n)
        a, b = sorted(rng.integers(0, n, 2))
        b = max(b, a + n // 4)
        x[a:b] = rng.standard_normal(len(x[a:b]))
    elif kind == "chirp":
        f0, f1 = rng.uniform(1500, 2500), rng.uniform(5000, 7000)
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1])))
    else:  # clicks
        x = np.zeros(n)
        period = int(sr / rng.uniform(3, 8))
        x[rng.integers(0, period) :: period] = 1.0
    x = x * rng.uniform(0.1, 0.8) + 0.003 * rng.standard_normal(n)
    return np.clip(x, -1, 1).astype(np.float32)


def make_sound_dataset(root, per_class: int = 16, seed: int = 0) -> dict[str, list]:
    """DATA_DIR/<class>/<class>_NN.wav for the four SOUND_CLASSES; returns the paths per class."""
    rng = np.random.default_rng(seed)
    paths: dict[str, list] = {}
    for kind in SOUND_CLASSES:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        paths[kind] = []
        for i in range(per_class):
            path = folder / f"{kind}_{i:02d}.wav"
            sf.write(path, synthetic_sound(kind, rng), 16000)
            paths[kind].append(path)
    return paths

