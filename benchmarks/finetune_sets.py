"""The data sets of ``benchmarks/finetune_defaults.py`` (issue 25): spoken words and generated sounds.

Each set is a training folder and a held-out test folder of other draws (another seed), one subfolder a
class, as ``ast finetune`` reads them. Built once in the work folder and reused.

- ``digits-N``: the ten digit words spoken by espeak-ng (``tests/helpers.make_spoken_words``: twelve
  voices, speeds 110-210, pitches 20-80, light noise), N clips a class; ``digits5-N`` the first five
  folders; ``words50-N``: fifty words (Speech Commands' 35 and 15 more), N a class.
- ``sounds-N``: ten classes of generated sound (``make_sounds``), each clip 0.3-5 s long, placed at a
  random time in a clip of its own length plus up to 0.5 s, over noise at a random level.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import DIGITS, make_spoken_words  # noqa: E402
from spoken_digits import ALL_VOICES  # noqa: E402

WORDS50 = (
    *("yes no up down left right on off stop go".split()),
    *DIGITS,
    *("bed bird cat dog happy house marvin sheila tree wow backward forward follow learn visual".split()),
    *("red green blue black white apple water music river window table paper light sound voice".split()),
)
SOUNDS = (
    "low-tone",
    "high-tone",
    "rising-chirp",
    "falling-chirp",
    "white-noise",
    "rumble",
    "clicks",
    "tremolo",
    "buzz",
    "vibrato",
)
SR = 16000
TEST_PER_CLASS = 20
# name: (words or SOUNDS, classes, training clips a class)
SETS: dict[str, tuple[tuple[str, ...], int, int]] = {
    "digits-20": (DIGITS, 10, 20),
    "digits5-50": (DIGITS, 5, 50),
    "digits-50": (DIGITS, 10, 50),
    "sounds-20": (SOUNDS, 10, 20),
    "words50-20": (WORDS50, 50, 20),
    "digits-200": (DIGITS, 10, 200),
    "sounds-100": (SOUNDS, 10, 100),
    "digits-500": (DIGITS, 10, 500),
}


def sound(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One clip of class ``kind``: 0.3-5 s of the sound at a random time and gain, over noise."""
    seconds = rng.uniform(0.3, 5.0)
    n = int(SR * seconds)
    t = np.arange(n) / SR
    f = rng.uniform(0.8, 1.25)  # each class's pitch varies by a factor of about 1.25 either way
    if kind in ("low-tone", "high-tone"):
        x = np.sin(2 * np.pi * (300 if kind == "low-tone" else 2500) * f * t)
    elif kind in ("rising-chirp", "falling-chirp"):
        f0, f1 = 500 * f, 4000 * f
        if kind == "falling-chirp":
            f0, f1 = f1, f0
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
    elif kind in ("white-noise", "rumble"):
        x = rng.standard_normal(n)
        if kind == "rumble":  # noise below ~300 Hz: a running mean of 25 ms
            x = np.convolve(x, np.ones(400) / 20, mode="same")
    elif kind == "clicks":
        x = np.zeros(n)
        period = int(SR / rng.uniform(4, 12))
        x[rng.integers(0, period) :: period] = 1.0
    elif kind == "tremolo":  # a 1 kHz tone beating at 4-8 Hz
        x = np.sin(2 * np.pi * 1000 * f * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(4, 8) * t))
    elif kind == "buzz":  # a sawtooth at 100-160 Hz: many harmonics
        x = 2 * ((130 * f * t) % 1.0) - 1
    else:  # vibrato: a 1.5 kHz tone whose pitch swings by 10 % at 5 Hz
        x = np.sin(2 * np.pi * 1500 * f * t + 15 * np.sin(2 * np.pi * 5 * t))
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.1, 0.8)
    clip = np.zeros(n + int(rng.uniform(0, 0.5) * SR))
    start = int(rng.integers(0, len(clip) - n + 1))
    clip[start : start + n] = x
    clip += rng.standard_normal(len(clip)) * 10 ** rng.uniform(-3.5, -2)
    return np.clip(clip, -1, 1).astype(np.float32)


def make_sounds(root: Path, per_class: int, seed: int) -> None:
    """ROOT/<class>/<class>_NN.wav for the ten SOUNDS (reused when already made with these values)."""
    done = root / ".complete"
    recipe = f"{per_class} {seed}"
    if done.exists() and done.read_text() == recipe:
        return
    rng = np.random.default_rng(seed)
    for kind in SOUNDS:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            sf.write(root / kind / f"{kind}_{i:03d}.wav", sound(kind, rng), SR)
    done.write_text(recipe)


def make_set(work: Path, name: str) -> tuple[Path, Path]:
    """The training and test folders of data set ``name`` (made once; a subset of classes is copied)."""
    vocabulary, classes, per_class = SETS[name]
    hard = dict(voices=ALL_VOICES, speeds=(110, 210), pitches=(20, 80))
    folders = []
    for part, n, seed in (("train", per_class, 0), ("test", TEST_PER_CLASS, 1)):
        kind = "sounds" if vocabulary == SOUNDS else f"words{len(vocabulary)}"
        full = work / f"{kind}-{n}-{part}"
        if vocabulary == SOUNDS:
            make_sounds(full, n, seed)
        else:
            make_spoken_words(full, vocabulary, per_class=n, seed=seed, **hard)
        target = work / name / part
        if not target.exists():
            target.mkdir(parents=True)
            for label in sorted(p.name for p in full.iterdir() if p.is_dir())[:classes]:
                shutil.copytree(full / label, target / label)
        folders.append(target)
    return folders[0], folders[1]
