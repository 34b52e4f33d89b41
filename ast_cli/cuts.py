"""A cut or damaged audio file: the frames libsndfile can decode, and what says the file was longer.

Every frame that decodes is kept and the first undecodable one ends the file; a warning names the cut
(the length its header promised, libsndfile's or ffmpeg's complaint). A file of which nothing decodes is
refused by the caller (``audio.AudioReader``).
"""

from __future__ import annotations

import re
import warnings

import numpy as np

UNKNOWN_FRAMES = 1 << 62  # libsndfile's count for a stream of unknown length (a FLAC written to a pipe)
# libsndfile's log of a file that ends before its header says: "data : 7056000 (should be 2116744)"
# for a WAV, W64 or AIFF chunk; for an Ogg, a last page not marked the end of the stream, or a partial
# page after it.
_CHUNK = re.compile(r"^\s*(data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMED_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF}  # a header written before its length was known (a pipe)


def read_into(sound_file, out: np.ndarray) -> tuple[int, str]:
    """Frames libsndfile decoded into ``out``, (frames, channels) float32, and its error ('' if none).

    libsndfile's own C call, through the binding soundfile uses: ``SoundFile.read`` seeks after every
    read, which fails at the end of a FLAC whose length is not in its header (written to a pipe) or
    that was cut short, and on an error it drops the frames that call did decode; ``SoundFile.blocks``
    also yields its whole reused buffer again after a short read (a cut MP3 came out at its header's
    length, its first seconds repeated).
    """
    from soundfile import _ffi, _snd

    handle = sound_file._file
    got = int(_snd.sf_readf_float(handle, _ffi.cast("float *", out.ctypes.data), len(out)))
    if _snd.sf_error(handle) == 0:
        return got, ""
    message = _ffi.string(_snd.sf_strerror(handle)).decode(errors="replace")
    return got, message.removeprefix("Error : ").strip().rstrip(".") or "libsndfile error"


def length_estimated(sound_file) -> bool:
    """An MP3 without a Xing, Info or VBRI header: libsndfile guesses its length from the file's size
    and the bitrate of its first frame (a VBR file can come out a fraction of its length), and reads no
    further than that guess."""
    return sound_file.format == "MP3" and re.search(r"bitrate mode\s*:\s*constant", sound_file.extra_info) is not None


def notes(sound_file, header: int | None, decoded: int, reason: str) -> list[str]:
    """What says that a file libsndfile decoded ``decoded`` frames of (then stopped, for ``reason``)
    was longer; empty for a whole file."""
    found = [f"its header says {header / sound_file.samplerate:.2f} s"] if header and decoded < header else []
    log = sound_file.extra_info
    if length_estimated(sound_file):  # the header's count is a guess: only reaching it says something
        guessed = "an MP3 without a length header, read as far as its length was guessed: install ffmpeg"
        found = [guessed] if decoded == header else []
    for chunk, claimed, there in _CHUNK.findall(log):  # libsndfile already counts only the frames there
        if int(claimed) > int(there) and int(claimed) not in _STREAMED_SIZES:
            found.append(f"its {chunk} chunk says {claimed} bytes, the file holds {there}")
    if "lacks an end-of-stream bit" in log or "Junk after the last page" in log:
        found.append("its Ogg stream stops short of its end-of-stream page")
    return found + ([reason] if reason else [])


def warn(path: str, found: list[str], decoded_s: float) -> None:
    """On stderr as ``ast: warning: ...`` (``process.prepare``), like every warning of the core."""
    if found:
        what = f"cut short or damaged ({'; '.join(found)})"
        warnings.warn(f"{path}: {what}: {decoded_s:.2f} s decoded, the audio that is there", stacklevel=3)
