"""Audio in: decode (libsndfile, else ffmpeg), downmix to mono, resample to 16 kHz, in bounded blocks.

Long recordings are never held whole: ``stream()`` yields 16 kHz mono blocks, resampled so that the
concatenation equals resampling the whole signal at once (each block is filtered with enough
neighbouring input around it; see ``StreamResampler``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import cuts
from .errors import AudioError, UsageError
from .options import parse_channel

SAMPLE_RATE = 16000  # every AST checkpoint was trained on 16 kHz audio
BLOCK_SECONDS = 30.0  # decode granularity: ~10 MB of 44.1 kHz stereo float32 per block
MAX_BLOCK_VALUES = 1 << 23  # samples x channels of one block (32 MB): 384 kHz x 8 channels gets blocks of 2.7 s
STDIN = "-"
# Float samples beyond this are not audio (120 dB above full scale); from ~1e17 on, the float32 fbank
# overflows and every score is NaN.
MAX_ABS_SAMPLE = 1e6
_SPOOL_BYTES = 64 << 20  # stdin kept in memory up to this size, then spilled to a temporary file

ffmpeg_hint = (
    "install ffmpeg (e.g. 'apt install ffmpeg') to decode formats libsndfile cannot read, "
    "or convert the file to WAV or FLAC"
)


@dataclass
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int | None  # samples per channel; None when the decoder cannot tell in advance (ffmpeg pipes)

    @property
    def duration_s(self) -> float | None:
        return None if self.frames is None else self.frames / self.sample_rate


class AudioReader:
    """An open audio input: a path, or ``-`` for standard input. Use as a context manager."""

    def __init__(self, source: str | os.PathLike, channel: str | int = "mean"):
        self.path = os.fspath(source)
        self.channel = parse_channel(channel)
        self._spool: BinaryIO | None = None
        self._tmp_path: str | None = None
        self._sf = None
        self._proc: subprocess.Popen | None = None
        try:
            self.info = self._open()
        except BaseException:
            self.close()
            raise
        if isinstance(self.channel, int) and self.channel >= self.info.channels:
            self.close()
            raise AudioError(
                f"{self.path}: has {self.info.channels} channel(s), no channel {self.channel}",
                hint="use --channel mean or a number from 0",
            )

    # -- opening ------------------------------------------------------------------------------
    def _open(self) -> AudioInfo:
        import soundfile as sf

        if self.path == STDIN:
            self._spool = _spool_stdin()
            target = self._spool
        else:
            if _check_path(self.path):  # a pipe (<(curl ...), a named pipe): libsndfile needs to seek
                with open(self.path, "rb") as pipe:
                    self._spool = _spool(
                        pipe, f"{self.path}: the pipe gave no data", hint="check the command writing to it"
                    )
                target = self._spool
            else:
                target = os.fsencode(
                    self.path
                )  # bytes: soundfile encodes str paths strictly, so undecodable names would fail
        try:
            self._sf = sf.SoundFile(target)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            reason = _sf_reason(exc)
            if _looks_like_text(target):  # a .wav that is a text file (an error page, a list): ffmpeg would not help
                raise AudioError(
                    f"{self.path}: not audio: it is a text file",
                    hint="check what was saved or piped in under this name",
                ) from None
            if shutil.which("ffmpeg") is None:
                raise AudioError(f"{self.path}: cannot decode audio ({reason})", hint=ffmpeg_hint) from None
            return self._open_ffmpeg(reason)
        if self._sf.samplerate <= 0 or self._sf.channels <= 0:
            raise AudioError(
                f"{self.path}: invalid header (sample rate {self._sf.samplerate}, {self._sf.channels} channels)"
            )
        if cuts.length_estimated(self._sf) and shutil.which("ffmpeg") is not None:  # ffmpeg reads every frame
            self._sf.close()
            self._sf = None
            return self._open_ffmpeg("an MP3 without a length header")
        frames = self._sf.frames if self._sf.frames < cuts.UNKNOWN_FRAMES else None
        return AudioInfo(self.path, self._sf.samplerate, self._sf.channels, frames)

    def _open_ffmpeg(self, sf_reason: str) -> AudioInfo:
        path = self.path
        if self._spool is not None:  # ffmpeg needs a real file to probe and seek in
            self._spool.seek(0)
            fd, self._tmp_path = tempfile.mkstemp(prefix="ast-stdin-")
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(self._spool, f)
            path = self._tmp_path
        rate, channels = _ffprobe(path, self.path, sf_reason)
        self._proc = subprocess.Popen(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-i",
                path,
                "-map",
                "0:a:0",
                "-f",
                "f32le",
                "-acodec",
                "pcm_f32le",
                "-",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        return AudioInfo(self.path, rate, channels, None)

    # -- reading ------------------------------------------------------------------------------
    def blocks(self, seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
        """Mono float32 blocks at the file's own sample rate."""
        n = max(1, min(int(seconds * self.info.sample_rate), MAX_BLOCK_VALUES // self.info.channels))
        source = self._sf_blocks(n) if self._sf is not None else self._ffmpeg_blocks(n)
        for block in source:
            _check_samples(block, self.path)
            yield self._downmix(block)

    def _sf_blocks(self, n: int) -> Iterator[np.ndarray]:
        """libsndfile's frames up to the first one it cannot decode, then a warning if the file was cut."""
        assert self._sf is not None
        done, reason = 0, ""
        while not reason:
            out = np.empty((n, self.info.channels), dtype=np.float32)
            got, reason = cuts.read_into(self._sf, out)
            if got == 0:
                break
            done += got
            yield out[:got]
        if reason and done == 0:
            raise AudioError(f"{self.path}: cannot decode audio ({reason})")
        cuts.warn(self.path, cuts.notes(self._sf, self.info.frames, done, reason), done / self.info.sample_rate)
        self.info.frames = done

    def _ffmpeg_blocks(self, n: int) -> Iterator[np.ndarray]:
        assert self._proc is not None and self._proc.stdout is not None
        ch = self.info.channels
        frame_bytes = 4 * ch
        done = 0
        while True:
            data = self._proc.stdout.read(n * frame_bytes)
            if not data:
                break
            usable = len(data) - len(data) % frame_bytes
            done += usable // frame_bytes
            yield np.frombuffer(data[:usable], dtype="<f4").reshape(-1, ch)
        err = self._proc.stderr.read().decode(errors="replace").strip() if self._proc.stderr else ""
        if self._proc.wait() != 0:
            raise AudioError(f"{self.path}: ffmpeg could not decode it ({_last_line(err) or 'unknown error'})")
        if err:  # ffmpeg goes on past undecodable data (a cut file: "partial file") and says so
            cuts.warn(self.path, [cuts.ffmpeg_note(err)], done / self.info.sample_rate)

    def _downmix(self, block: np.ndarray) -> np.ndarray:
        # (n, channels) -> (n,). The authors' loader silently kept channel 0; we average unless asked.
        if self.channel == "mean":
            return block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        return np.ascontiguousarray(block[:, self.channel])

    # -- closing ------------------------------------------------------------------------------
    def close(self) -> None:
        if self._sf is not None:
            self._sf.close()
            self._sf = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            for pipe in (self._proc.stdout, self._proc.stderr):
                if pipe is not None:
                    pipe.close()
            self._proc = None
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._tmp_path is not None:
            os.unlink(self._tmp_path)
            self._tmp_path = None

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc) -> None:
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
        if (
            self._buf_start + len(self._buf) == self._done
        ):  # nothing left (an empty stream): torchaudio cannot take 0 samples
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


def array_stream(waveform: np.ndarray, sample_rate: int, channel: str | int = "mean") -> Iterator[np.ndarray]:
    """An in-memory waveform, (samples,) or (samples, channels) as soundfile returns it, as 16 kHz mono blocks."""
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, (int, float, np.number))
        or not sample_rate > 0
        or sample_rate != int(sample_rate)
    ):
        raise UsageError(f"a waveform array needs a positive whole sample_rate in Hz, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    wave = np.asarray(waveform, dtype=np.float32)
    _check_samples(wave, "<array>")  # before the downmix, whose sum could overflow
    channel = parse_channel(channel)
    if wave.ndim == 2:
        if channel == "mean":
            wave = wave.mean(axis=1, dtype=np.float32)
        elif channel >= wave.shape[1]:
            raise UsageError(f"the array has {wave.shape[1]} channel(s), no channel {channel}")
        else:
            wave = np.ascontiguousarray(wave[:, channel])
    elif wave.ndim != 1:
        raise UsageError(f"a waveform array must be (samples,) or (samples, channels), got shape {wave.shape}")
    step = int(BLOCK_SECONDS * sample_rate)
    return resampled((wave[i : i + step] for i in range(0, len(wave), step)), sample_rate)


def load(source: str | os.PathLike, channel: str | int = "mean") -> tuple[np.ndarray, AudioInfo]:
    """The whole input as one 16 kHz mono array (for short clips and tests; prefer ``stream``)."""
    with AudioReader(source, channel) as reader:
        parts = list(stream(reader))
        info = reader.info
    return (np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)), info


# -- helpers ---------------------------------------------------------------------------------
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


def _check_path(path: str) -> bool:
    """AudioError for what cannot be audio; True for a pipe, which is read like standard input."""
    p = Path(path)
    try:
        if p.is_symlink() and not p.exists():
            raise AudioError(
                f"{path}: broken symbolic link (or a link loop)",
                hint="point the link at an existing file, or remove it",
            )
        if not p.exists():
            raise AudioError(f"{path}: no such file", hint="check the path")
        if p.is_dir():
            raise AudioError(
                f"{path}: is a directory",
                hint="give the folder itself as an argument: ast tag, embed, batch and stats search folders",
            )
        if not os.access(path, os.R_OK):
            raise AudioError(f"{path}: permission denied", hint="check the file's read permission")
        info = p.stat()
    except OSError as exc:  # a name too long, an I/O error: pathlib ignores only 'not found'
        raise AudioError(f"{path}: cannot open ({exc.strerror or exc})") from None
    # only a regular file's size says it is empty: a pipe (<(curl ...)) or a device has size 0
    if stat.S_ISREG(info.st_mode) and info.st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)", hint="an interrupted copy or download? fetch the file again")
    return stat.S_ISFIFO(info.st_mode)


def _looks_like_text(target: bytes | BinaryIO) -> bool:
    """The first KB is printable UTF-8 text (audio headers hold NUL and other control bytes)."""
    try:
        if isinstance(target, bytes):
            with open(target, "rb") as f:
                head = f.read(1024)
        else:
            target.seek(0)
            head = target.read(1024)
            target.seek(0)
    except OSError:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(head) < 1024 or exc.start < len(head) - 3:  # only a character cut at the end is forgiven
            return False
        text = head[: exc.start].decode("utf-8")
    visible = "".join(text.split())  # newlines, tabs and spaces aside
    return bool(visible) and visible.isprintable()


def _spool_stdin() -> BinaryIO:
    stdin = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
    if stdin is None or (hasattr(stdin, "isatty") and stdin.isatty()):
        raise AudioError("-: no audio on standard input", hint="pipe a file in, e.g. 'cat a.wav | ast tag -'")
    return _spool(stdin, "-: standard input was empty", hint="pipe an audio file in")


def _spool(stream: BinaryIO, empty: str, hint: str) -> BinaryIO:
    """A stream that cannot seek, kept in memory (spilled to a temporary file when large)."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)
    shutil.copyfileobj(stream, spool)
    if spool.tell() == 0:
        spool.close()
        raise AudioError(empty, hint=hint)
    spool.seek(0)
    return spool


def _ffprobe(path: str, shown: str, sf_reason: str) -> tuple[int, int]:
    if shutil.which("ffprobe") is None:
        raise AudioError(f"{shown}: cannot decode audio ({sf_reason}); ffmpeg is installed but ffprobe is not")
    proc = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=sample_rate,channels",
            "-of",
            "json",
            path,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    try:
        stream = json.loads(proc.stdout or b"{}").get("streams", [])[0]
        rate, channels = int(stream["sample_rate"]), int(stream["channels"])
    except (IndexError, KeyError, ValueError, TypeError):
        reason = _last_line(proc.stderr.decode(errors="replace")) or "no audio stream"
        raise AudioError(f"{shown}: cannot decode audio (libsndfile: {sf_reason}; ffmpeg: {reason})") from None
    if rate <= 0 or channels <= 0:
        raise AudioError(f"{shown}: invalid audio stream ({rate} Hz, {channels} channels)")
    return rate, channels


def _sf_reason(exc: Exception) -> str:
    text = str(exc).strip()
    # "Error opening 'x.wav': Format not recognised." -> "Format not recognised."
    if text.startswith("Error opening") and ": " in text:
        text = text.split(": ", 1)[1]
    return text.rstrip(".") or type(exc).__name__


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
