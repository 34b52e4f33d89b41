"""Helpers the tests share: tiny model configs with random weights, generated audio and labelled
datasets (``from helpers import ...``). The fixtures built on them live in conftest.py."""

from __future__ import annotations

import numpy as np
import soundfile as sf

TINY_LABELS = ["Speech", "Music", "Dog", "Rain", "Siren"]
TINY_SIZE = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128
)  # ours and transformers'


def run(capsys, *args) -> tuple[int, str, str]:
    """The command line in this process, as a user types it (each argument turned into a string): its exit
    status, stdout and stderr."""
    from ast_cli.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


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


# -- spoken digits (espeak-ng) ------------------------------------------------------------------------
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ESPEAK_VOICES = (
    "en-us+m1",
    "en-us+f2",
    "en-gb+m3",
    "en-gb+f4",
    "en-us+m7",
    "en-gb-x-rp+f1",
)  # accents and voice variants


def espeak() -> str | None:
    """The espeak-ng program, or None where it is not installed (the tests that need it skip)."""
    import shutil

    return shutil.which("espeak-ng")


def make_spoken_digits(
    root, per_class: int = 40, seed: int = 0, voices=ESPEAK_VOICES, speeds=(130, 200), pitches=(30, 70)
) -> dict[str, list]:
    """DATA_DIR/<digit>/<digit>_NN.wav: ``per_class`` clips of each English digit word (``make_spoken_words``)."""
    return make_spoken_words(root, DIGITS, per_class, seed, voices, speeds, pitches)


def make_spoken_words(
    root, words, per_class: int = 40, seed: int = 0, voices=ESPEAK_VOICES, speeds=(130, 200), pitches=(30, 70)
) -> dict[str, list]:
    """DATA_DIR/<word>/<word>_NN.wav: ``per_class`` clips of each word spoken by espeak-ng, each in one of
    ``voices`` (accent and voice variant), at a speed (words a minute) and pitch drawn from the ranges, then
    light noise (30 dB below the speech) and 0-0.15 s of leading silence; 16 kHz. A folder already holding
    the same set is reused (a session cache)."""
    import subprocess
    import tempfile
    from pathlib import Path

    import torch
    import torchaudio

    root = Path(root)
    done = root / ".complete"
    recipe = f"{per_class} {seed} {voices} {speeds} {pitches}"
    if tuple(words) != DIGITS:  # the digits' recipe line stays as it was: their caches hold
        recipe += f" {tuple(words)}"
    if done.exists() and done.read_text() == recipe:
        return {w: sorted((root / w).glob("*.wav")) for w in words}
    rng = np.random.default_rng(seed)
    paths: dict[str, list] = {}
    resample = torchaudio.transforms.Resample(22050, 16000)  # espeak-ng speaks at 22.05 kHz; one kernel for all clips
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "raw.wav"
        for word in words:
            (root / word).mkdir(parents=True, exist_ok=True)
            paths[word] = []
            for i in range(per_class):
                voice = str(rng.choice(voices))
                speed, pitch = (
                    int(rng.integers(speeds[0], speeds[1] + 1)),
                    int(rng.integers(pitches[0], pitches[1] + 1)),
                )
                subprocess.run(
                    [espeak(), "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), word],
                    check=True,
                    capture_output=True,
                )
                wave = resample(torch.from_numpy(sf.read(raw, dtype="float32")[0])).numpy()
                wave = np.concatenate([np.zeros(int(rng.uniform(0, 0.15) * 16000), np.float32), wave])
                wave = wave + rng.standard_normal(len(wave)).astype(np.float32) * 0.03 * float(
                    np.sqrt(np.mean(wave**2)) + 1e-4
                )
                path = root / word / f"{word}_{i:02d}.wav"
                sf.write(path, np.clip(wave, -1, 1), 16000)
                paths[word].append(path)
    done.write_text(recipe)
    return paths


# -- a Ray cluster on the loopback address (test_ray.py, benchmarks/ray_throughput.py) ------------------
def ray_cluster(nodes: int = 2, cpus: int = 1, object_store_mb: int = 150):
    """A context manager: a Ray head and ``nodes - 1`` more nodes started with ``ray start`` on
    127.0.0.1, ``cpus`` CPUs each; yields (address, environment for drivers). At the end its processes,
    and only its, are stopped (``ray stop`` would end every Ray of the machine)."""
    import contextlib
    import os
    import socket
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    @contextlib.contextmanager
    def run():
        temp = tempfile.mkdtemp(prefix="ast-ray-", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
        marker = f"AST_TEST_RAY_CLUSTER={temp}"
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", AST_TEST_RAY_CLUSTER=temp)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ray = str(Path(sys.executable).with_name("ray"))
        node = [
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={cpus}",
            "--num-gpus=0",
            f"--object-store-memory={object_store_mb * 2**20}",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ]
        try:
            subprocess.run(
                [ray, "start", "--head", f"--port={port}", "--include-dashboard=false", *node],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
            for _ in range(nodes - 1):
                subprocess.run(
                    [ray, "start", f"--address=127.0.0.1:{port}", *node],
                    env=env,
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
            yield f"127.0.0.1:{port}", env
        finally:
            group = processes_of(marker)
            stop_processes(group)
            import shutil

            shutil.rmtree(temp, ignore_errors=True)
            assert not [pid for pid in group if alive(pid)], "the Ray cluster left processes"

    return run()


def processes_of(marker: str) -> set[int]:
    """Processes whose environment holds ``marker``, and their descendants: Ray's agents rename
    themselves over their environment, but their parents are the cluster's raylets."""
    import os

    parents, found = {}, set()
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                parents[pid] = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() in f.read().split(b"\0") and pid != os.getpid():
                    found.add(pid)
        except (OSError, ValueError, IndexError):
            pass
    while True:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        if not more:
            return found
        found |= more


def stop_processes(group: set[int]) -> None:
    """SIGTERM, then SIGKILL what is left after 3 s (Ray's agents ignore SIGTERM)."""
    import os
    import signal
    import time

    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        for pid in group:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(alive(pid) for pid in group):
            time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # a zombie has ended
    except OSError:
        return False
