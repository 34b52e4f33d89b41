"""Decoders: an audio input opened by libsndfile or, when libsndfile cannot read it, by an ffmpeg pipe.

``open_input`` checks the path, keeps a stream that cannot seek (standard input, a pipe) in memory,
and returns a ``Decoder``: the input's rate and channel count, and its frames as ``(n, channels)``
float32 blocks at that rate. Downmixing and resampling are ``audio``'s.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from . import cuts
from .chatter import ChildStderr, c_output_captured, child_line
from .errors import AudioError

STDIN = "-"
SPOOL_BYTES = 64 << 20  # stdin kept in memory up to this size, then spilled to a temporary file
_FLOAT32_OUT = ("-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-")  # first audio stream, raw, to stdout

_log = logging.getLogger(__name__)  # debug: what libsndfile's libraries print

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


class Decoder(Protocol):
    """An open input: what it holds, and its frames in blocks of at most ``n``."""

    info: AudioInfo

    def blocks(self, n: int) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


class SoundFileDecoder:
    """libsndfile's frames up to the first one it cannot decode, then a warning if the file was cut."""

    def __init__(self, sound_file: Any, info: AudioInfo, spool: IO[bytes] | None):
        self.info = info
        self._sf = sound_file
        self._spool = spool  # the bytes libsndfile reads, for standard input and pipes

    def blocks(self, n: int) -> Iterator[np.ndarray]:
        done, reason = 0, ""
        while not reason:
            out = np.empty((n, self.info.channels), dtype=np.float32)
            if self._sf.format == "MP3":  # libmpg123 notes what it skips on stderr
                with c_output_captured() as said:
                    got, reason = cuts.read_into(self._sf, out)
                _log_c_output(self.info.path, said)
            else:
                got, reason = cuts.read_into(self._sf, out)
            if got == 0:
                break
            done += got
            yield out[:got]
        if reason and done == 0:
            raise AudioError(f"{self.info.path}: cannot decode audio ({reason})")
        cuts.warn(self.info.path, cuts.notes(self._sf, self.info.frames, done, reason), done / self.info.sample_rate)
        self.info.frames = done

    def close(self) -> None:
        self._sf.close()
        if self._spool is not None:
            self._spool.close()
            self._spool = None


class FfmpegDecoder:
    """ffmpeg's first audio stream as float32 on a pipe; ffprobe tells its rate and channels first."""

    def __init__(self, shown: str, path: str, sf_reason: str, tmp_path: str | None):
        self._tmp_path = tmp_path  # standard input or a pipe written to a file: removed on close
        self._names = {path: shown}  # ffmpeg names its input in its messages: the user's name, never the temp file
        rate, channels = _ffprobe(path, shown, sf_reason, self._names)
        self.info = AudioInfo(shown, rate, channels, None)
        self._proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", path, *_FLOAT32_OUT],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stderr is not None  # Popen was given stderr=PIPE
        self._stderr = ChildStderr(self._proc.stderr)  # read as it comes: a full pipe would stop ffmpeg

    def blocks(self, n: int) -> Iterator[np.ndarray]:
        assert self._proc.stdout is not None  # Popen was given stdout=PIPE
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
        failed = self._proc.wait() != 0
        err = child_line(self._stderr.text(), self._names)
        if failed:
            raise AudioError(f"{self.info.path}: ffmpeg could not decode it ({err or 'unknown error'})")
        if err:  # ffmpeg goes on past undecodable data (a cut file: "partial file") and says so
            cuts.warn(self.info.path, [f"ffmpeg: {err}"], done / self.info.sample_rate)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()
        if self._tmp_path is not None:
            os.unlink(self._tmp_path)
            self._tmp_path = None


def open_input(path: str) -> Decoder:
    """The decoder of a path, or of ``-`` for standard input; AudioError for what is not audio."""
    if path == STDIN:
        spool: IO[bytes] | None = _spool_stdin()
    elif _check_path(path):  # a pipe (<(curl ...), a named pipe): libsndfile needs to seek
        with open(path, "rb") as pipe:
            spool = _spool(pipe, f"{path}: the pipe gave no data", hint="check the command writing to it")
    else:
        spool = None
    try:
        return _open(path, spool)
    except BaseException:
        if spool is not None:
            spool.close()
        raise


def _open(path: str, spool: IO[bytes] | None) -> Decoder:
    import soundfile as sf

    # bytes for a path: soundfile encodes str paths strictly, so undecodable names would fail
    target: bytes | IO[bytes] = os.fsencode(path) if spool is None else spool
    try:
        sound_file = _sound_file(sf, target, path)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = _sf_reason(exc)
        if spool is None and reason.startswith("File does not exist"):  # a file _check_path found: libmpg123 refused it
            reason = "Format not recognised"
        if _looks_like_text(target):  # a .wav that is a text file (an error page, a list): ffmpeg would not help
            raise AudioError(
                f"{path}: not audio: it is a text file",
                hint="check what was saved or piped in under this name",
            ) from None
        if shutil.which("ffmpeg") is None:
            raise AudioError(f"{path}: cannot decode audio ({reason})", hint=ffmpeg_hint) from None
        return _open_ffmpeg(path, spool, reason)
    if sound_file.samplerate <= 0 or sound_file.channels <= 0:
        sound_file.close()
        raise AudioError(
            f"{path}: invalid header (sample rate {sound_file.samplerate}, {sound_file.channels} channels)"
        )
    if cuts.length_estimated(sound_file) and shutil.which("ffmpeg") is not None:  # ffmpeg reads every frame
        sound_file.close()
        return _open_ffmpeg(path, spool, "an MP3 without a length header")
    frames = sound_file.frames if sound_file.frames < cuts.UNKNOWN_FRAMES else None
    return SoundFileDecoder(sound_file, AudioInfo(path, sound_file.samplerate, sound_file.channels, frames), spool)


def _open_ffmpeg(path: str, spool: IO[bytes] | None, sf_reason: str) -> FfmpegDecoder:
    if spool is None:
        return FfmpegDecoder(path, path, sf_reason, tmp_path=None)
    spool.seek(0)  # ffmpeg needs a real file to probe and seek in
    fd, tmp_path = tempfile.mkstemp(prefix="ast-stdin-")
    try:
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(spool, f)
        spool.close()
        return FfmpegDecoder(path, tmp_path, sf_reason, tmp_path=tmp_path)
    except BaseException:
        os.unlink(tmp_path)
        raise


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


def _looks_like_text(target: bytes | IO[bytes]) -> bool:
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


def _spool_stdin() -> IO[bytes]:
    stdin = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin  # a replaced stdin may have no .buffer
    if stdin is None or (hasattr(stdin, "isatty") and stdin.isatty()):
        raise AudioError("-: no audio on standard input", hint="pipe a file in, e.g. 'cat a.wav | ast tag -'")
    return _spool(stdin, "-: standard input was empty", hint="pipe an audio file in")


def _spool(stream: IO[Any], empty: str, hint: str) -> IO[bytes]:
    """A stream that cannot seek, kept in memory (spilled to a temporary file when large). ``IO[Any]``: a
    replaced ``sys.stdin`` is taken as it is, and must give bytes."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    shutil.copyfileobj(stream, spool)
    if spool.tell() == 0:
        spool.close()
        raise AudioError(empty, hint=hint)
    spool.seek(0)
    return spool


_PROBED = "stream=sample_rate,channels"


def _ffprobe(path: str, shown: str, sf_reason: str, names: dict[str, str]) -> tuple[int, int]:
    if shutil.which("ffprobe") is None:
        raise AudioError(f"{shown}: cannot decode audio ({sf_reason}); ffmpeg is installed but ffprobe is not")
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", _PROBED, "-of", "json", path],
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    try:
        stream = json.loads(proc.stdout or b"{}").get("streams", [])[0]
        rate, channels = int(stream["sample_rate"]), int(stream["channels"])
    except (IndexError, KeyError, ValueError, TypeError):
        reason = child_line(proc.stderr, names) or "no audio stream"
        raise AudioError(f"{shown}: cannot decode audio (libsndfile: {sf_reason}; ffmpeg: {reason})") from None
    if rate <= 0 or channels <= 0:
        raise AudioError(f"{shown}: invalid audio stream ({rate} Hz, {channels} channels)")
    return rate, channels


def _sound_file(sf: Any, target: bytes | IO[bytes], path: str) -> Any:
    """libsndfile's ``SoundFile`` of ``target``. libmpg123, which it tries on what no other format
    claims, prints notes on stderr: they are logged (with --debug), not shown."""
    said: list[str] = []
    try:
        with c_output_captured() as said:
            return sf.SoundFile(target)
    finally:
        _log_c_output(path, said)


def _log_c_output(path: str, lines: list[str]) -> None:
    """What libsndfile's libraries printed, with --debug only: their notes, not our message."""
    for line in lines:
        _log.debug("%s: libsndfile: %s", path, line)


def _sf_reason(exc: Exception) -> str:
    text = str(exc).strip()
    # "Error opening 'x.wav': Format not recognised." -> "Format not recognised."
    if text.startswith("Error opening") and ": " in text:
        text = text.split(": ", 1)[1]
    return text.rstrip(".") or type(exc).__name__
