"""Generate the example clips in this folder (the project's own sounds; no third-party audio).

    python examples/make_examples.py

siren.wav: 12 s of a wailing siren (a tone sweeping 600-1300 Hz every 3 s, with harmonics) over
light traffic-like rumble, 16 kHz mono; long enough to use two windows of the AudioSet model.
"""

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def siren(seconds: float = 12.0, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    # instantaneous frequency: a slow triangle-like wail between 600 and 1300 Hz
    freq = 950 + 350 * np.sin(2 * np.pi * t / 3.0)
    phase = 2 * np.pi * np.cumsum(freq) / SR
    tone = sum(a * np.sin(k * phase) for k, a in ((1, 0.5), (2, 0.2), (3, 0.1)))
    rumble = np.convolve(rng.standard_normal(len(t)), np.ones(64) / 64, mode="same") * 0.3
    fade = np.minimum(1, np.minimum(t, t[-1] - t) / 0.2)
    return (0.6 * (tone + rumble) * fade).astype(np.float32)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sf.write(here / "siren.wav", siren(), SR, subtype="PCM_16")
    print(here / "siren.wav")
