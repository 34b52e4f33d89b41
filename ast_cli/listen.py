"""``ast listen``: tag live audio as it arrives: standard input (a WAV stream or raw PCM) or a
microphone (``sounddevice``, the ``[listen]`` extra).

A reader thread turns the source into 16 kHz mono blocks and keeps the last window of them in a
bounded buffer; the tagger wakes every ``hop`` seconds of audio and tags the newest window. When
tagging falls behind the audio, it skips to the newest window instead of queueing (the skipped hops
are counted), so memory stays at one window however long it runs. Every hop gives a record
``{"start_s", "end_s", "labels"}``; with ``events`` only changes are reported, with hysteresis.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, BinaryIO

import numpy as np
import torch

from .audio import SAMPLE_RATE, StreamResampler
from .errors import AudioError, UsageError
from .features import FRAME_LENGTH, FRAMES_PER_SECOND, fbank
from .inference import Tagger
from .options import ListenOptions, RawFormat, TagOptions
from .records import RecordMaker
from .wavheader import read_wav_header

DTYPES = {"s16le": ("<i2", 32768.0), "s32le": ("<i4", 2147483648.0), "f32le": ("<f4", 1.0)}
READ_SECONDS = 0.1  # how much a read of the source asks for: the latency it adds at most


# -- sources: 16 kHz mono blocks as they come ---------------------------------------------------
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
        yield samples.mean(axis=1, dtype=np.float32) if channel == "mean" else np.ascontiguousarray(samples[:, channel])


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
                yield (
                    block.mean(axis=1, dtype=np.float32)
                    if channel == "mean"
                    else np.ascontiguousarray(block[:, min(channel, channels - 1)])
                )

    return blocks(), rate


def import_sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the module is there, PortAudio is not
        raise UsageError(
            f"the microphone needs sounddevice and PortAudio ({exc})",
            hint="pip install 'ast-cli[listen]' (and apt install libportaudio2), or pipe audio in: ast listen -",
        ) from None
    return sounddevice


def list_devices() -> list[str]:
    sd = import_sounddevice()
    return [
        f"{i}\t{d['name']}\t{d['max_input_channels']} ch\t{d['default_samplerate']:.0f} Hz"
        for i, d in enumerate(sd.query_devices())
        if d["max_input_channels"] > 0
    ]


# -- the rolling window ---------------------------------------------------------------------------
class Recent:
    """The last ``size`` samples at 16 kHz and how many have arrived, filled by the reader thread."""

    def __init__(self, size: int, ahead: int | None = None):
        self.size = size
        self.ahead = ahead  # a file, not a live source: the reader waits while this many samples are untagged
        self.tagged_to = 0
        self.buf = np.zeros(0, dtype=np.float32)
        self.total = 0  # samples received so far
        self.arrived = time.monotonic()  # when the newest samples came
        self.ended = False
        self.error: BaseException | None = None
        self.changed = threading.Condition()

    def add(self, samples: np.ndarray) -> None:
        with self.changed:
            while self.ahead is not None and self.total - self.tagged_to >= self.ahead:
                self.changed.wait(0.5)
            self.buf = np.concatenate([self.buf, samples])[-self.size :]
            self.total += len(samples)
            self.arrived = time.monotonic()
            self.changed.notify_all()

    def end(self, error: BaseException | None = None) -> None:
        with self.changed:
            self.ended, self.error = True, error
            self.changed.notify_all()

    def wait_for(self, total: int) -> tuple[np.ndarray, int, float, bool]:
        """Once ``total`` samples have arrived, or the source ended: the newest window, the sample
        count it ends at, when that audio arrived, and whether the source has ended."""
        with self.changed:
            while self.total < total and not self.ended:
                self.changed.wait(0.5)
            if self.error is not None:
                raise self.error
            return self.buf.copy(), self.total, self.arrived, self.ended


def read_into(blocks: Iterator[np.ndarray], rate: int, recent: Recent, piece: int) -> None:
    """The reader thread: resample to 16 kHz and keep the newest window, ``piece`` samples at a time."""
    try:
        resampler = StreamResampler(rate)
        for block in blocks:
            out = resampler.feed(block)
            for i in range(0, len(out), piece):
                recent.add(out[i : i + piece])
        tail = resampler.flush()
        for i in range(0, len(tail), piece):
            recent.add(tail[i : i + piece])
        recent.end()
    except BaseException as exc:
        recent.end(exc)


# -- events ---------------------------------------------------------------------------------------
@dataclass
class Active:
    start_s: float
    peak: float
    below_since: float | None = None
    last_above_s: float = 0.0


@dataclass
class Events:
    """Hysteresis over the hop scores: a label starts when it reaches ``threshold`` and ends once it
    has stayed below it for ``hold`` seconds, so one bark is one event, not one a hop."""

    labels: list[str]
    mask: torch.Tensor
    threshold: float
    hold: float
    active: dict[int, Active] = field(default_factory=dict)

    def update(self, scores: torch.Tensor, end_s: float) -> list[dict]:
        out = []
        for i in torch.nonzero(self.mask).flatten().tolist():
            score = float(scores[i])
            state = self.active.get(i)
            if score >= self.threshold:
                if state is None:
                    self.active[i] = Active(end_s, score, last_above_s=end_s)
                    out.append(
                        {
                            "event": "start",
                            "label": self.labels[i],
                            "index": i,
                            "time_s": round(end_s, 3),
                            "score": round(score, 6),
                        }
                    )
                else:
                    state.peak, state.below_since, state.last_above_s = max(state.peak, score), None, end_s
            elif state is not None:
                state.below_since = end_s if state.below_since is None else state.below_since
                if end_s - state.below_since >= self.hold:
                    out.append(self.ended(i, state))
        return out

    def ended(self, index: int, state: Active) -> dict:
        del self.active[index]
        return {
            "event": "end",
            "label": self.labels[index],
            "index": index,
            "start_s": round(state.start_s, 3),
            "end_s": round(state.last_above_s, 3),
            "duration_s": round(state.last_above_s - state.start_s, 3),
            "peak": round(state.peak, 6),
        }

    def close(self) -> list[dict]:
        return [self.ended(i, state) for i, state in list(self.active.items())]


# -- the listener ---------------------------------------------------------------------------------
@dataclass
class Summary:
    audio_s: float = 0.0
    hops: int = 0
    skipped: int = 0
    latency_total_s: float = 0.0  # a sum, not a list: the summary of a run of days stays a few numbers

    def line(self) -> str:
        mean = f", mean latency {self.latency_total_s / self.hops:.2f} s" if self.hops else ""
        return f"listened to {self.audio_s:.1f} s of audio: {self.hops} hop(s) tagged, {self.skipped} skipped{mean}"


def listen(
    tagger: Tagger,
    blocks: Iterator[np.ndarray],
    rate: int,
    options: TagOptions,
    *,
    emit: Callable[[dict], None],
    summary: Summary,
    hop_s: float = 1.0,
    events: bool = False,
    hold_s: float = 2.0,
    warn: Callable[[str], None] = lambda message: None,
    live: bool = True,
) -> Summary:
    """Tag the audio of ``blocks`` (mono, ``rate`` Hz) every ``hop_s`` seconds of it, over the last
    window (zero-padded while shorter, as ``ast tag`` pads a short clip), and ``emit`` each record, or
    each event with ``events``. A ``live`` source that outruns the tagger is skipped ahead; a file
    (not live) is read no faster than it is tagged, every hop. Returns ``summary`` when the source
    ends (its last audio tagged); a KeyboardInterrupt propagates with ``summary`` up to date."""
    if not (hop_s > 0 and hold_s >= 0):
        raise UsageError(f"--hop must be a positive number of seconds and --hold 0 or more, got {hop_s} and {hold_s}")
    if events and options.threshold is None:
        raise UsageError("--events needs --threshold", hint="e.g. --events --threshold 0.5")
    window, _ = tagger.window_hop_frames(options)
    maker: RecordMaker = tagger.record_maker(options)
    spec = tagger.window_spec(options)
    tracker = Events(tagger.labels, maker.mask, options.threshold, hold_s) if events else None
    hop = max(1, round(hop_s * SAMPLE_RATE))
    window_samples = (window - 1) * (SAMPLE_RATE // FRAMES_PER_SECOND) + FRAME_LENGTH
    recent = Recent(
        window_samples + 2 * hop, ahead=None if live else 2 * hop
    )  # a window and what came after it was due
    threading.Thread(target=read_into, args=(blocks, rate, recent, hop), name="ast-listen-reader", daemon=True).start()
    due, tagged_to, warned = hop, 0, False
    while True:
        samples, total, arrived, ended = recent.wait_for(due)
        summary.audio_s = total / SAMPLE_RATE
        if total > tagged_to and len(samples) >= FRAME_LENGTH:
            behind = live and total - due >= hop  # whole hops came while the last one was tagged: go to the newest
            if behind:  # (a file or in-memory source is read no faster than it is tagged: never behind, every hop)
                summary.skipped += (total - due) // hop
                if not warned:
                    warn(
                        "tagging falls behind the audio: skipping to the newest "
                        f"(a hop takes longer than {hop_s} s here; try a longer --hop)"
                    )
                    warned = True
            end = total if behind or total < due else due  # on time: the window ends where the hop is due
            samples = samples[: len(samples) - (total - end)][-window_samples:]
            scores = tagger.scores(spec.prepare(fbank(samples, spec.num_mel_bins))[None], options.activation)[0]
            end_s = end / SAMPLE_RATE
            if tracker is None:
                emit(
                    {
                        "start_s": round(end_s - len(samples) / SAMPLE_RATE, 3),
                        "end_s": round(end_s, 3),
                        "labels": maker.select(scores),
                    }
                )
            else:
                for event in tracker.update(scores, end_s):
                    emit(event)
            summary.hops += 1
            summary.latency_total_s += time.monotonic() - arrived
            tagged_to = end
            with recent.changed:
                recent.tagged_to = end
                recent.changed.notify_all()
        if ended and (tagged_to >= total or len(samples) < FRAME_LENGTH):
            break
        due = (tagged_to // hop + 1) * hop
    for event in tracker.close() if tracker else ():
        emit(event)
    return summary


class Prefixed:
    """A stream with bytes already read from it put back in front."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self.head, self.stream = head, stream

    def read(self, n: int = -1) -> bytes:
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
    return _stdin_stream(stdin, channel, stack)


def stdin_bytes() -> BinaryIO:
    return sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin


def is_live(stream) -> bool:
    """A pipe, a socket or a device: audio that comes in its own time. A regular file (``< file``) or
    an in-memory stream is not: it is tagged hop by hop, none skipped."""
    import os
    import stat

    try:
        return not stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False


def _stdin_stream(stdin: BinaryIO, channel: str | int, stack: contextlib.ExitStack) -> tuple[Iterator[np.ndarray], int]:
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
    import shutil

    if shutil.which("ffmpeg") is None:
        raise AudioError(
            "-: not a WAV stream, and ffmpeg is not installed to decode it",
            hint="install ffmpeg, or send WAV or raw PCM (--raw --rate R --channels C --sample-format s16le)",
        )
    proc = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", "pipe:0", "-f", "wav", "-acodec", "pcm_f32le", "pipe:1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )

    def pump() -> None:  # standard input into ffmpeg, as it comes
        try:
            while data := source.read1(1 << 16):
                proc.stdin.write(data)
                proc.stdin.flush()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    threading.Thread(target=pump, name="ast-listen-ffmpeg", daemon=True).start()
    try:
        yield proc.stdout
    finally:
        proc.kill()
        proc.wait()


def run_listen(
    tagger: Tagger,
    options: TagOptions,
    how: ListenOptions,
    *,
    stream: IO[str],
    summary: Summary,
    warn: Callable[[str], None],
) -> Summary:
    """``ast listen``: open the source, then tag it until it ends; a live view at a terminal, else one
    JSON line a record (or an event), flushed at once."""
    from .output import isatty

    if how.events and options.threshold is None:  # before the source is opened (a microphone, a pipe)
        raise UsageError("--events needs --threshold", hint="e.g. --events --threshold 0.5")
    with contextlib.ExitStack() as stack:
        live = True
        if how.source == "-":
            blocks, rate = stdin_source(how.raw, options.channel, stack)
            live = is_live(stdin_bytes())
        else:
            device = int(how.input_device) if how.input_device and how.input_device.isdigit() else how.input_device
            blocks, rate = microphone_source(device, options.channel)
        emit = stack.enter_context(LiveView(stream)) if isatty(stream) and not how.events else print_record(stream)
        return listen(
            tagger,
            blocks,
            rate,
            options,
            emit=emit,
            summary=summary,
            hop_s=how.hop,
            events=how.events,
            hold_s=how.hold,
            warn=warn,
            live=live,
        )


class LiveView:
    """The newest labels at a terminal, redrawn every hop: time, label, score and a bar."""

    def __init__(self, stream: IO[str]):
        from rich.live import Live

        from .output import console

        self.live = Live(console=console(stream), auto_refresh=False, transient=False)

    def __enter__(self) -> Callable[[dict], None]:
        self.live.start()
        return self.show

    def __exit__(self, *exc) -> None:
        self.live.stop()

    def show(self, record: dict) -> None:
        from rich.table import Table

        from .output import score_bar

        table = Table(title=f"{record['start_s']:.1f} - {record['end_s']:.1f} s", title_justify="left", show_edge=False)
        table.add_column("label")
        table.add_column("score", justify="right")
        table.add_column("", no_wrap=True)
        for item in record["labels"]:
            table.add_row(item["label"], f"{item['score']:.3f}", score_bar(item["score"]))
        self.live.update(table, refresh=True)


def print_record(stream: IO[str]) -> Callable[[dict], None]:
    from .output import to_json

    def emit(record: dict) -> None:
        stream.write(to_json(record) + "\n")
        stream.flush()

    return emit
