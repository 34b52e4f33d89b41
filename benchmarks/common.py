"""Shared pieces of the benchmarks: a full-size random-weight checkpoint and generated 10-s clips.

Speed does not depend on the weights' values, so a random full-size model (86.6 M parameters,
1214 tokens a window) measures what the released AudioSet model costs.
"""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def full_size_checkpoint(directory: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Save a full-size AST (AudioSet shape, 527 outputs) with random weights, once per folder."""
    import torch

    from ast_cli.checkpoints import save
    from ast_cli.config import ASTConfig, PreprocessorConfig
    from ast_cli.model import AST

    directory = Path(directory or Path(tempfile.gettempdir()) / "ast-bench-fullsize")
    if (directory / "model.safetensors").exists():
        return directory
    torch.manual_seed(seed)
    model = AST(ASTConfig(id2label={i: f"class {i}" for i in range(527)}))
    save(model, PreprocessorConfig(), directory)
    return directory


def clips(directory: str | os.PathLike, n: int, seconds: float = 10.0, sr: int = SR, seed: int = 0) -> list[Path]:
    """n generated clips (tones, chirps, noise bursts, clicks mixed at random), written as 16-bit WAV."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    paths = []
    for i in range(n):
        f0 = rng.uniform(100, 2000)
        x = 0.3 * np.sin(2 * np.pi * f0 * t * (1 + rng.uniform(0, 1) * t / seconds))
        x += rng.uniform(0.01, 0.2) * rng.standard_normal(len(t))
        x[:: int(rng.integers(800, 8000))] += 0.8
        path = directory / f"clip_{i:04d}.wav"
        sf.write(path, np.clip(x, -1, 1).astype(np.float32), sr, subtype="PCM_16")
        paths.append(path)
    return paths


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    import torch

    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}, "
        f"load average {load:.2f} at start"
    )


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"
