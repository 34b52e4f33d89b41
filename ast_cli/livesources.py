"""The live sources of ``ast listen``: mono float32 blocks at the source's rate, as they arrive, from
standard input (raw PCM, a WAV stream, or anything ffmpeg decodes) or a microphone (``sounddevice``
and PortAudio, the ``[listen]`` extra). No torch here; resampling to 16 kHz is the listener's.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .chatter import ChildStderr, child_line
from .errors import AudioError, UsageError
from .options import ListenOptions, RawFormat
from .wavheader import read_wav_header

_log = logging.getLogger(__name__)  # warning: ffmpeg decoded past damaged audio
DTYPES = {"s16le": ("<i2", 32768.0), "s32le": ("<i4", 2147483648.0), "f32le": ("<f4", 1.0)}
READ_SECONDS = 0.1  # how much a read of the source asks for: the latency it adds at most


@dataclass
class Source:
    """An opened source: its mono blocks, their sample rate, and whether the audio comes in its own
    time (a pipe, a device) rather than as fast as it is read (a regular file)."""

    blocks: Iterator[np.ndarray]
    rate: int
    live: bool = True


def open_source(how: ListenOptions, channel: str | int, stack: contextlib.ExitStack) -> Source:
    """The source ``how`` names: standard input for '-', else the input device (a number is an index)."""
    if how.source == "-":
        blocks, rate = stdin_source(how.raw, channel, stack)
        return Source(blocks, rate, live=is_live(stdin_bytes()))
    device = int(how.input_device) if how.input_device and how.input_device.isdigit() else how.input_device
    blocks, rate = microphone_source(device, channel)
    return Source(blocks, rate)


def downmix(samples: np.ndarray, channel: str | int) -> np.ndarray:
    """One channel of ``(frames, channels)`` samples, or their mean (``channel`` 'mean')."""
    if isinstance(channel, int):
        return np.ascontiguousarray(samples[:, channel])
    return samples.mean(axis=1, dtype=np.float32)


# -- streams: raw PCM and WAV ---------------------------------------------------------------------
def pcm_blocks(stream: BinaryIO, fmt: RawFormat, channel: str | int) -> Iterator[np.ndarray]:
    """Mono float32 blocks of raw PCM at ``fmt.rate``, as the stream delivers them; a frame cut by the
    end of the stream is dropped."""
    dtype, scale = DTYPES[fmt.sample_format]
    frame = np.dtype(dtype).itemsize * fmt.channels
    want = max(frame, int(fmt.rate * READ_SECONDS) * frame)
    pending = b""
    read = getattr(stream, "read1", stream.read)  # what is there now, not a full buffer
    while True:
        data = read(want)
        if not data:
            return
        data = pending + data
        usable = len(data) - len(data) % frame
        pending = data[usable:]
        if not usable:
            continue
        samples = np.frombuffer(data[:usable], dtype=dtype).astype(np.float32).reshape(-1, fmt.channels) / scale
        yield downmix(samples, channel)


def stream_source(
    stream: BinaryIO, name: str, raw: RawFormat | None, channel: str | int
) -> tuple[Iterator[np.ndarray], int]:
    """(mono blocks, their sample rate) of a WAV or raw PCM stream."""
    fmt = raw or read_wav_header(stream, name)
    if isinstance(channel, int) and channel >= fmt.channels:
        raise AudioError(
            f"{name}: has {fmt.channels} channel(s), no channel {channel}", hint="use --channel mean or a number from 0"
        )
    return pcm_blocks(stream, fmt, channel), fmt.rate


# -- standard input -------------------------------------------------------------------------------
class Prefixed(io.BufferedIOBase, BinaryIO):
    """A stream with bytes already read from it put back in front."""

    def __init__(self, head: bytes, stream: BinaryIO):
        super().__init__()
        self.head, self.stream = head, stream

    def read(self, n: int | None = -1) -> bytes:
        n = -1 if n is None else n
        head, self.head = (self.head, b"") if n < 0 or n >= len(self.head) else (self.head[:n], self.head[n:])
        rest = n - len(head) if n >= 0 else -1
        return head + (self.stream.read(rest) if rest else b"")

    def read1(self, n: int = -1) -> bytes:
        if self.head:
            return self.read(n)
        return getattr(self.stream, "read1", self.stream.read)(n)


def stdin_source(
    raw: RawFormat | None, channel: str | int, stack: contextlib.ExitStack
) -> tuple[Iterator[np.ndarray], int]:
    """(mono blocks, rate) of standard input: raw PCM as described, a WAV stream, or anything ffmpeg
    decodes (FLAC, OGG, ...) when it is installed."""
    stdin = stdin_bytes()
    if hasattr(stdin, "isatty") and stdin.isatty():
        raise UsageError(
            "-: no audio on standard input",
            hint="pipe a stream in, e.g. "
            "arecord -f S16_LE -r 16000 -t raw | ast listen - --raw --rate 16000 --channels 1",
        )
    if raw is not None:
        return stream_source(stdin, "-", raw, channel)
    return sniffed_source(stdin, channel, stack)


def stdin_bytes() -> BinaryIO:
    """The bytes of standard input (a stream put in place of ``sys.stdin`` that has no text layer is
    read as it is)."""
    stdin: Any = getattr(sys.stdin, "buffer", sys.stdin)
    return stdin


def is_live(stream: BinaryIO) -> bool:
    """A pipe, a socket or a device: audio that comes in its own time. A regular file (``< file``) or
    an in-memory stream is not: it is tagged hop by hop, none skipped."""
    try:
        return not stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False


def sniffed_source(
    stdin: BinaryIO, channel: str | int, stack: contextlib.ExitStack
) -> tuple[Iterator[np.ndarray], int]:
    """A WAV stream, or anything else through ffmpeg: the first bytes tell."""
    head = stdin.read(4)
    if not head:
        raise AudioError("-: standard input was empty", hint="pipe a stream in")
    if head in (b"RIFF", b"RF64"):
        return stream_source(Prefixed(head, stdin), "-", None, channel)
    return stream_source(stack.enter_context(ffmpeg_stream(Prefixed(head, stdin))), "-", None, channel)


@contextlib.contextmanager
def ffmpeg_stream(source: Prefixed) -> Iterator[BinaryIO]:
    """FLAC, OGG and the rest through ffmpeg, decoded to a 32-bit float WAV stream as they arrive."""
    if shutil.which("ffmpeg") is None:
        raise AudioError(
            "-: not a WAV stream, and ffmpeg is not installed to decode it",
            hint="install ffmpeg, or send WAV or raw PCM (--raw --rate R --channels C --sample-format s16le)",
        )
    proc = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", "pipe:0", "-f", "wav", "-acodec", "pcm_f32le", "pipe:1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # the pipes were asked for, and Popen's default buffering makes them a BufferedWriter and Readers
    assert isinstance(proc.stdin, io.BufferedWriter) and isinstance(proc.stdout, io.BufferedReader)
    assert proc.stderr is not None
    threading.Thread(target=pump, args=(source, proc.stdin), name="ast-listen-ffmpeg", daemon=True).start()
    try:
        yield FfmpegOutput(proc, proc.stdout, ChildStderr(proc.stderr))
    finally:
        proc.kill()
        proc.wait()


class FfmpegOutput(io.BufferedIOBase, BinaryIO):
    """ffmpeg's decoded stream; at its end, what ffmpeg said on stderr folded into one line: an
    ``AudioError`` when it failed ("Invalid data found when processing input"), else a warning."""

    def __init__(self, proc: subprocess.Popen, stdout: io.BufferedReader, stderr: ChildStderr):
        super().__init__()
        self.proc, self.stdout, self.stderr = proc, stdout, stderr
        self.ended = False

    def read(self, n: int | None = -1) -> bytes:
        return self._checked(self.stdout.read(n))

    def read1(self, n: int = -1) -> bytes:
        return self._checked(self.stdout.read1(n))

    def _checked(self, data: bytes) -> bytes:
        if data or self.ended:
            return data
        self.ended = True
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)  # its output ended: it is exiting
        said = child_line(self.stderr.text(), {"pipe:0": "-"})
        if self.proc.returncode not in (0, None):
            raise AudioError(
                f"-: ffmpeg could not decode standard input ({said or 'unknown error'})",
                hint="send WAV or a format ffmpeg reads, or raw PCM with --raw --rate R --channels C",
            )
        if said:
            _log.warning("-: damaged audio on standard input, decoded past it (ffmpeg: %s)", said)
        return data


def pump(source: Prefixed, sink: BinaryIO) -> None:
    """Standard input into ffmpeg, as it comes; ffmpeg gone (a broken pipe) ends it."""
    try:
        while data := source.read1(1 << 16):
            sink.write(data)
            sink.flush()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.close()


# -- the microphone -------------------------------------------------------------------------------
def microphone_source(device: str | int | None, channel: str | int) -> tuple[Iterator[np.ndarray], int]:
    """(mono blocks, sample rate) of an input device, through sounddevice (PortAudio)."""
    sd = import_sounddevice()
    try:
        info = sd.query_devices(device, "input")
    except (ValueError, sd.PortAudioError) as exc:
        raise UsageError(
            f"--device {device}: {exc}", hint="'ast listen --list-devices' lists the input devices"
        ) from None
    rate, channels = int(info["default_samplerate"]), max(1, min(2, int(info["max_input_channels"])))
    queue: list[np.ndarray] = []
    ready = threading.Condition()

    def callback(indata, frames, when, status):  # PortAudio's thread: hand the block over, nothing more
        with ready:
            queue.append(indata.copy())
            ready.notify()

    def blocks() -> Iterator[np.ndarray]:
        with sd.InputStream(device=device, channels=channels, samplerate=rate, dtype="float32", callback=callback):
            while True:
                with ready:
                    while not queue:
                        ready.wait()
                    block = queue.pop(0)
                yield downmix(block, min(channel, channels - 1) if isinstance(channel, int) else channel)

    return blocks(), rate


def import_sounddevice() -> Any:
    """The sounddevice module; without it (or without PortAudio) a UsageError saying what to install."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the module is there, PortAudio is not
        raise UsageError(
            f"the microphone needs sounddevice and PortAudio ({exc})",
            hint="pip install 'ast-cli[listen]' (and apt install libportaudio2), or pipe audio in: ast listen -",
        ) from None
    return sounddevice


def list_devices() -> list[str]:
    """One line an input device: index, name, channels, default sample rate."""
    sd = import_sounddevice()
    return [
        f"{i}\t{d['name']}\t{d['max_input_channels']} ch\t{d['default_samplerate']:.0f} Hz"
        for i, d in enumerate(sd.query_devices())
        if d["max_input_channels"] > 0
    ]
