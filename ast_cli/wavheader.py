"""The header of a WAV stream (``ast listen -``): its format, read up to the data chunk, every field
checked, so a header that cannot be streamed is one line naming the field at fault.

A stream's sizes are not trusted: streaming writers put 0 or 0xFFFFFFFF in the RIFF and data sizes,
and a chunk may claim any size; the samples go on until the stream ends.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from .errors import AudioError
from .options import RawFormat, SampleFormat


def read_wav_header(stream: BinaryIO, name: str) -> RawFormat:
    """The format of a WAV stream, read up to its data chunk; the data size is not trusted (streaming
    writers put 0 or 0xFFFFFFFF there): the samples go on until the stream ends. A header that cannot
    be streamed is an ``AudioError`` naming the field at fault."""
    head = stream.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        raw = "for raw PCM give --raw --rate R --channels C --sample-format s16le|s32le|f32le"
        raise AudioError(f"{name}: not a WAV stream", hint=raw)
    fmt = None
    while True:
        chunk = stream.read(8)
        if len(chunk) < 8:
            raise AudioError(f"{name}: the WAV stream ended in its header, before its data chunk")
        kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if kind == b"data":
            break
        if kind != b"fmt ":
            ended = f"{name}: the WAV stream ended in its {kind!r} chunk, before its data chunk"
            _skip(stream, size + (size & 1), ended)
            continue
        if not FMT_SIZE <= size <= MAX_FMT_SIZE:
            raise AudioError(f"{name}: WAV header: fmt chunk size is {size}, not {FMT_SIZE} to {MAX_FMT_SIZE} bytes")
        body = stream.read(size + (size & 1))
        if len(body) < size:
            raise AudioError(f"{name}: WAV header: the stream ended in the fmt chunk ({len(body)} of its {size} bytes)")
        fmt = _wav_format(body[:size], name)
    if fmt is None:
        raise AudioError(f"{name}: WAV header: no fmt chunk before the data chunk")
    return fmt


FMT_SIZE = 16  # format tag, channels, sample rate, byte rate, block align, bits per sample
MAX_FMT_SIZE = 1024  # the extensible fmt chunk is 40 bytes; a size beyond this is not a fmt chunk
WAV_FORMATS = {  # (format tag, bits per sample): the samples
    (1, 16): SampleFormat.s16le,
    (1, 32): SampleFormat.s32le,
    (3, 32): SampleFormat.f32le,
}
EXTENSIBLE = 0xFFFE  # WAVE_FORMAT_EXTENSIBLE: the format tag is the sub-format GUID's first two bytes
STREAMED = "send 16- or 32-bit PCM or 32-bit float"


def _wav_format(body: bytes, name: str) -> RawFormat:
    """The fmt chunk's fields, each checked: channels and sample rate above 0, a streamed sample format,
    a block align of channels x bytes per sample."""
    code, channels, rate, _, align, bits = struct.unpack("<HHIIHH", body[:FMT_SIZE])
    if code == EXTENSIBLE:
        if len(body) < 26:
            raise AudioError(f"{name}: WAV header: an extensible fmt chunk of {len(body)} bytes has no sub-format")
        code = struct.unpack("<H", body[24:26])[0]
    where = f"{name}: WAV header"
    if channels == 0:
        raise AudioError(f"{where}: channels is 0")
    if rate == 0:
        raise AudioError(f"{where}: sample rate is 0 Hz")
    if code not in (1, 3):
        raise AudioError(f"{where}: format tag {code:#06x} is not streamed (1: PCM, 3: IEEE float)", hint=STREAMED)
    if (code, bits) not in WAV_FORMATS:
        kind = "PCM" if code == 1 else "float"
        raise AudioError(f"{where}: {bits} bits per sample of {kind} is not streamed", hint=STREAMED)
    if align != channels * bits // 8:
        frame = channels * bits // 8
        raise AudioError(f"{where}: block align is {align}, but {channels} channel(s) of {bits} bits make {frame}")
    return RawFormat(rate=rate, channels=channels, sample_format=WAV_FORMATS[(code, bits)])


def _skip(stream: BinaryIO, size: int, ended: str) -> None:
    """Read past a chunk in pieces (its size may be anything: the stream is not trusted)."""
    while size > 0:
        piece = stream.read(min(size, 1 << 16))
        if not piece:
            raise AudioError(ended)
        size -= len(piece)
