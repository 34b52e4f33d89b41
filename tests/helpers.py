"""Helpers the tests share: tiny model configs with random weights, generated audio and labelled
datasets (``from helpers import ...``). The fixtures built on them live in conftest.py."""

from __future__ import annotations

import numpy as np
import soundfile as sf

TINY_LABELS = ["Speech", "Music", "Dog", "Rain", "Siren"]
TINY_SIZE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)  # ours and transformers'


def tiny_config(**changes):
    """A small AST (2 layers, 64 wide) with a 1.28-s window: fast enough for every test."""
    from ast_cli.config import ASTConfig

    return ASTConfig(**{**TINY_SIZE, "max_length": 128, "id2label": dict(enumerate(TINY_LABELS)), **changes})


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


def tone(seconds: float, sr: int = 16000, channels: int = 1, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A tone plus a little noise, (samples,) or (samples, channels), float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    x = 0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))
    if channels == 1:
        return x.astype(np.float32)
    return np.stack([x * (0.5 + 0.5 * c / channels) + 0.01 * c for c in range(channels)], 1).astype(np.float32)


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


def authors_state_dict(model) -> dict:
    """Our model's weights renamed the way the authors' DataParallel .pth stores them."""
    import torch

    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("fc_norm."):
            sd["module.mlp_head.0." + k.split(".", 1)[1]] = v
        elif k.startswith("head."):
            sd["module.mlp_head.1." + k.split(".", 1)[1]] = v
        else:
            sd["module.v." + k] = v
    D = model.config.hidden_size
    sd["module.v.head.weight"] = torch.zeros(1000, D)  # DeiT heads, unused by AST
    sd["module.v.head_dist.weight"] = torch.zeros(1000, D)
    return sd


def tone_files(folder, count: int, seconds: float, name: str = "{i:02d}.wav") -> list:
    """``count`` generated 16 kHz clips in ``folder`` (made if needed), each with its own seed."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / name.format(i=i)
        sf.write(path, tone(seconds, seed=i), 16000)
        paths.append(path)
    return paths
