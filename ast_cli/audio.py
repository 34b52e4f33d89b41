"""Audio in: decode (``decoders``: libsndfile, else ffmpeg), downmix to mono, resample to 16 kHz, in bounded blocks.

Long recordings are never held whole: ``stream()`` yields 16 kHz mono blocks, resampled so that the
concatenation equals resampling the whole signal at once (each block is filtered with enough
neighbouring input around it; see ``StreamResampler``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction

import numpy as np

from . import decoders
from .decoders import AudioInfo
from .errors import AudioError, UsageError
from .options import parse_channel

SAMPLE_RATE = 16000  # every AST checkpoint was trained on 16 kHz audio
BLOCK_SECONDS = 30.0  # decode granularity: ~10 MB of 44.1 kHz stereo float32 per block
MAX_BLOCK_VALUES = 1 << 23  # samples x channels of one block (32 MB): 384 kHz x 8 channels gets blocks of 2.7 s
# Float samples beyond this are not audio (120 dB above full scale); from ~1e17 on, the float32 fbank
# overflows and every score is NaN.
MAX_ABS_SAMPLE = 1e6


class AudioReader:
    """An open audio input: a path, or ``-`` for standard input. Use as a context manager."""

    def __init__(self, source: str | os.PathLike, channel: str | int = "mean"):
        self.path = os.fspath(source)
        self.channel = parse_channel(channel)
        self._decoder = decoders.open_input(self.path)
        self.info = self._decoder.info
        if isinstance(self.channel, int) and self.channel >= self.info.channels:
            self.close()
            raise AudioError(
                f"{self.path}: has {self.info.channels} channel(s), no channel {self.channel}",
                hint="use --channel mean or a number from 0",
            )

    def blocks(self, seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
        """Mono float32 blocks at the file's own sample rate."""
        n = max(1, min(int(seconds * self.info.sample_rate), MAX_BLOCK_VALUES // self.info.channels))
        for block in self._decoder.blocks(n):
            _check_samples(block, self.path)
            yield _downmix(block, self.channel)

    def close(self) -> None:
        self._decoder.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamResampler:
    """Resample a stream block by block with the same result as resampling it whole.

    torchaudio's sinc resampler maps each period of ``a`` input samples to ``b`` output samples
    (a/b = orig/new reduced), reading ``width`` samples either side. Cutting the input on period
    boundaries and giving each piece ``context`` samples of its neighbours reproduces every output.

    The sinc kernel holds b x (a + 2 width) floats: 44.1 kHz -> 16 kHz (441/160) needs 76 k, but a
    rate sharing no factor with 16000 (44101 Hz: 44101/16000) would need gigabytes. Such rates are
    resampled as the nearest ratio with a kernel of at most ``MAX_KERNEL`` floats (a speed error
    below 0.01 %, nothing a tagger hears).
    """

    MAX_KERNEL = 1 << 22  # floats: 16 MB

    def __init__(self, orig_freq: int, new_freq: int = SAMPLE_RATE):
        g = math.gcd(orig_freq, new_freq)
        self.a, self.b = orig_freq // g, new_freq // g
        limit = self.b
        while _kernel_floats(self.a, self.b) > self.MAX_KERNEL:
            limit //= 2
            ratio = Fraction(orig_freq, new_freq).limit_denominator(limit)
            self.a, self.b = max(ratio.numerator, 1), ratio.denominator
        self.orig_freq, self.new_freq = self.a, self.b  # torchaudio reduces by the gcd: the same filter
        self.identity = self.a == self.b
        width = _sinc_width(self.a, self.b)
        self.context = (width // self.a + 2) * self.a  # a whole number of periods, > width + a
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # input index of _buf[0]
        self._done = 0  # input index up to which output has been produced (a multiple of a)

    def feed(self, block: np.ndarray) -> np.ndarray:
        if self.identity:
            return block
        self._buf = np.concatenate([self._buf, block])
        end = self._buf_start + len(self._buf)
        upto = (end - self.context) // self.a * self.a
        if upto <= self._done:
            return np.zeros(0, dtype=np.float32)
        return self._emit(upto, end_of_stream=False)

    def flush(self, last: np.ndarray | None = None) -> np.ndarray:
        """The rest of the stream; ``last`` (the final block) is resampled with it in one pass, so
        an input of a single block is resampled exactly as ``torchaudio.functional.resample`` does."""
        if self.identity:
            return np.zeros(0, dtype=np.float32) if last is None else last
        if last is not None:
            self._buf = np.concatenate([self._buf, last])
        # nothing left (an empty stream): torchaudio cannot take 0 samples
        if self._buf_start + len(self._buf) == self._done:
            return np.zeros(0, dtype=np.float32)
        return self._emit(self._buf_start + len(self._buf), end_of_stream=True)

    def _emit(self, upto: int, end_of_stream: bool) -> np.ndarray:
        import torch
        import torchaudio

        from . import threads

        seg_start = max(self._done - self.context, 0)  # a multiple of a: _done and context are
        seg_end = len(self._buf) + self._buf_start if end_of_stream else upto + self.context
        segment = self._buf[seg_start - self._buf_start : seg_end - self._buf_start]
        # the functional form (kernel built in float32 per call) is bit-identical to the reference's call
        with threads.per_file():
            out = torchaudio.functional.resample(
                torch.from_numpy(np.ascontiguousarray(segment)), self.orig_freq, self.new_freq
            ).numpy()
        first = (self._done - seg_start) // self.a * self.b
        if end_of_stream:
            result = out[first:]
        else:
            result = out[first : first + (upto - self._done) // self.a * self.b]
        self._done = upto
        keep_from = max(self._done - self.context, 0)
        self._buf = self._buf[keep_from - self._buf_start :]
        self._buf_start = keep_from
        return result


def _sinc_width(a: int, b: int) -> int:
    """Input samples torchaudio's kernel reads either side (lowpass_filter_width 6, rolloff 0.99)."""
    return math.ceil(6 * a / (min(a, b) * 0.99))


def _kernel_floats(a: int, b: int) -> int:
    return b * (a + 2 * _sinc_width(a, b))


def resampled(blocks: Iterable[np.ndarray], sample_rate: int) -> Iterator[np.ndarray]:
    """Mono blocks at ``sample_rate`` -> 16 kHz mono blocks, equal to resampling them joined."""
    resampler = StreamResampler(sample_rate)
    pending = None  # one block of look-ahead: the last block goes out with the flush
    for block in blocks:
        if pending is not None:
            out = resampler.feed(pending)
            if len(out):
                yield out
        pending = block
    tail = resampler.flush(pending)
    if len(tail):
        yield tail


def stream(reader: AudioReader, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """16 kHz mono float32 blocks of an open reader, in order."""
    return resampled(reader.blocks(block_seconds), reader.info.sample_rate)


def array_stream(waveform: np.ndarray, sample_rate: float | None, channel: str | int = "mean") -> Iterator[np.ndarray]:
    """An in-memory waveform, (samples,) or (samples, channels) as soundfile returns it, as 16 kHz mono blocks.
    ``sample_rate`` is checked here: a positive whole number of Hz (None is refused: an array has no header)."""
    rate = _whole_rate(sample_rate)
    wave = np.asarray(waveform, dtype=np.float32)
    _check_samples(wave, "<array>")  # before the downmix, whose sum could overflow
    channel = parse_channel(channel)
    if wave.ndim == 2:
        if isinstance(channel, int) and channel >= wave.shape[1]:
            raise UsageError(f"the array has {wave.shape[1]} channel(s), no channel {channel}")
        wave = _downmix(wave, channel)
    elif wave.ndim != 1:
        raise UsageError(f"a waveform array must be (samples,) or (samples, channels), got shape {wave.shape}")
    step = int(BLOCK_SECONDS * rate)
    return resampled((wave[i : i + step] for i in range(0, len(wave), step)), rate)


def load(source: str | os.PathLike, channel: str | int = "mean") -> tuple[np.ndarray, AudioInfo]:
    """The whole input as one 16 kHz mono array (for short clips and tests; prefer ``stream``)."""
    with AudioReader(source, channel) as reader:
        parts = list(stream(reader))
        info = reader.info
    return (np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)), info


# -- helpers ---------------------------------------------------------------------------------
def _downmix(block: np.ndarray, channel: str | int) -> np.ndarray:
    """(n, channels) -> (n,): one channel, or the mean of all (``channel`` as ``parse_channel`` gives it).
    The authors' loader silently kept channel 0; we average unless asked."""
    if isinstance(channel, int):
        return np.ascontiguousarray(block[:, channel])
    return block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]


def _whole_rate(sample_rate: object) -> int:
    """A waveform's sample rate as an int: UsageError unless a positive whole number (bool is not one)."""
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, (int, float, np.number))
        or not sample_rate > 0
        or sample_rate != int(sample_rate)
    ):
        raise UsageError(f"a waveform array needs a positive whole sample_rate in Hz, got {sample_rate!r}")
    return int(sample_rate)


def _check_samples(block: np.ndarray, name: str) -> None:
    """NaN, infinite or absurdly large samples would make NaN scores: refused as a bad input."""
    if not np.isfinite(block).all():
        raise AudioError(f"{name}: contains NaN or infinite samples", hint="repair or re-export the file")
    peak = float(np.abs(block).max()) if block.size else 0.0
    if peak > MAX_ABS_SAMPLE:
        raise AudioError(
            f"{name}: samples up to {peak:.3g}, far outside the [-1, 1] of audio",
            hint="rescale it, or re-export the file",
        )
