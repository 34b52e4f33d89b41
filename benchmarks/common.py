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

    from ast_cli.devices import precision_name, resolve_precision
    from ast_cli.threads import available_cpus

    auto = precision_name(resolve_precision("auto", torch.device("cpu")))
    return (
        f"{cpu} [{' '.join(cpu_flags()) or 'no AVX2'}], {os.cpu_count()} cores ({available_cpus()} usable), "
        f"--precision auto -> {auto} on the CPU, torch {torch.__version__}, Python {platform.python_version()}, "
        f"load average {load:.2f} at start"
    )


SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")  # what decides the model's speed


def cpu_flags() -> list[str]:
    """The CPU flags among SPEED_FLAGS (AVX2 only: bf16 emulated, fp32 chosen; AVX512-BF16; AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in SPEED_FLAGS if flag in flags]


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


SOUND_CLASSES = (
    "tone 250 Hz",
    "tone 500 Hz",
    "tone 1 kHz",
    "tone 2 kHz",
    "tone 4 kHz",
    "tremolo tone",
    "white noise",
    "rumble",
    "rising chirp",
    "falling chirp",
    "slow clicks",
    "fast clicks",
)


def class_sound(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of one of SOUND_CLASSES (random pitch and timing within the class), peak about 1."""
    seconds = n / SR
    t = np.arange(n) / SR
    jitter = rng.uniform(0.9, 1.1)
    if kind.startswith("tone"):
        hz = float(kind.split()[1]) * (1000 if kind.endswith("kHz") else 1)
        return np.sin(2 * np.pi * hz * jitter * t)
    if kind == "tremolo tone":
        return np.sin(2 * np.pi * 1000 * jitter * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 8 * t))
    if kind == "white noise":
        return rng.standard_normal(n)
    if kind == "rumble":  # integrated noise: most energy below ~100 Hz
        x = np.cumsum(rng.standard_normal(n))
        return (x - x.mean()) / (np.abs(x).max() + 1e-9)
    if kind.endswith("chirp"):
        f0, f1 = (300 * jitter, 6000) if kind.startswith("rising") else (6000, 300 * jitter)
        return np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
    x = np.zeros(n)  # click trains, 4 or 30 a second
    period = int(SR / ((4 if kind.startswith("slow") else 30) * jitter))
    x[int(rng.integers(0, period)) :: period] = 1.0
    return x


def class_clips(
    directory: str | os.PathLike, per_class: int, seconds: float = 2.0, seed: int = 0
) -> list[tuple[Path, int]]:
    """``per_class`` generated clips of each of SOUND_CLASSES (random pitch, timing and gain within
    the class), as 16-kHz WAV in a folder per class (what ``ast finetune`` reads); returns (path,
    class index) pairs."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    out = []
    for label, kind in enumerate(SOUND_CLASSES):
        for i in range(per_class):
            x = class_sound(kind, n, rng) * rng.uniform(0.1, 0.8) + 0.003 * rng.standard_normal(n)
            (directory / kind).mkdir(exist_ok=True)
            path = directory / kind / f"{i:03d}.wav"
            sf.write(path, np.clip(x, -1, 1).astype(np.float32), SR, subtype="PCM_16")
            out.append((path, label))
    return out
