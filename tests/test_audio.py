"""Decoding, downmix, streaming resampling, stdin, and the errors users meet."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from helpers import tone

from ast_cli import audio
from ast_cli.errors import AudioError, UsageError


@pytest.mark.parametrize("sr", [8000, 11025, 22050, 44100, 48000, 96000, 7])
def test_stream_resampler_equals_whole_signal_resampling(sr):
    rng = np.random.default_rng(sr)
    x = rng.standard_normal(int(sr * 3.7) + 13).astype(np.float32) * 0.3
    whole = torchaudio.functional.resample(torch.from_numpy(x), sr, 16000).numpy()
    resampler = audio.StreamResampler(sr)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, max(2, sr)))
        parts.append(resampler.feed(x[i : i + n]))
        i += n
    parts.append(resampler.flush())
    streamed = np.concatenate(parts)
    assert streamed.shape == whole.shape
    assert np.max(np.abs(streamed - whole)) <= 1e-5


def test_long_file_is_read_in_blocks(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, tone(65.0, 44100, 2), 44100)
    with audio.AudioReader(path) as reader:
        sizes = [len(b) for b in audio.stream(reader, block_seconds=5.0)]
    assert len(sizes) > 10  # 65 s in blocks of 5 s: never one array
    assert max(sizes) <= 5 * 16000 + 1000
    assert sum(sizes) == 65 * 16000


def test_downmix_mean_and_channel(tmp_path):
    x = np.stack([np.full(16000, 0.5), np.full(16000, -0.1), np.full(16000, 0.2)], 1).astype(np.float32)
    path = tmp_path / "three.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    mean, info = audio.load(path)
    assert info.channels == 3
    assert np.allclose(mean, 0.2, atol=1e-6)
    second, _ = audio.load(path, channel="1")
    assert np.allclose(second, -0.1, atol=1e-6)
    with pytest.raises(AudioError, match="no channel 3"):
        audio.load(path, channel=3)
    with pytest.raises(UsageError):
        audio.parse_channel("left")


@pytest.mark.parametrize(
    "fmt,subtype",
    [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS"), ("OGG", "OPUS"), ("MP3", "MPEG_LAYER_III")],
)
def test_formats_libsndfile_reads(tmp_path, fmt, subtype):
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile has no {fmt}/{subtype}")
    sr = 48000 if subtype == "OPUS" else 44100
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, tone(2.0, sr, 2), sr, format=fmt, subtype=subtype)
    wave, info = audio.load(path)
    assert info.channels == 2
    assert abs(len(wave) / 16000 - 2.0) < 0.1
    assert np.isfinite(wave).all() and np.abs(wave).max() > 0.1


def test_stdin_is_read(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, tone(1.5, 22050), 22050, format="FLAC")
    code = "import sys; from ast_cli import audio; w, i = audio.load('-'); print(len(w), i.sample_rate, i.channels)"
    out = subprocess.run([sys.executable, "-c", code], input=buf.getvalue(), capture_output=True, check=True)
    n, sr, ch = out.stdout.split()
    assert (int(n), int(sr), int(ch)) == (24000, 22050, 1)


def test_errors_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")  # no ffmpeg to fall back on
    with pytest.raises(AudioError, match="no such file"):
        audio.load(tmp_path / "missing.wav")
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(AudioError, match="is a directory"):
        audio.load(tmp_path / "dir.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty file"):
        audio.load(tmp_path / "empty.wav")
    (tmp_path / "binary.wav").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(AudioError, match=r"binary\.wav: cannot decode audio .*ffmpeg"):
        audio.load(tmp_path / "binary.wav")
    (tmp_path / "text.wav").write_text("hello, I am not audio\n" * 20)  # ffmpeg would not help: no hint to install it
    with pytest.raises(AudioError, match=r"text\.wav: not audio: it is a text file \(check what was saved"):
        audio.load(tmp_path / "text.wav")
    os.symlink(tmp_path / "gone.wav", tmp_path / "link.wav")
    with pytest.raises(AudioError, match="broken symbolic link"):
        audio.load(tmp_path / "link.wav")


def test_nan_samples_are_refused(tmp_path):
    x = tone(1.0)
    x[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        audio.load(path)


@pytest.mark.ffmpeg
def test_ffmpeg_decodes_what_libsndfile_cannot(tmp_path):
    src = tmp_path / "clip.wav"
    sf.write(src, tone(2.5, 44100, 2), 44100)
    m4a = tmp_path / "clip.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-c:a", "aac", str(m4a)], check=True)
    wave, info = audio.load(m4a)
    assert (info.sample_rate, info.channels, info.frames) == (44100, 2, None)
    assert abs(len(wave) / 16000 - 2.5) < 0.05  # AAC adds a little priming/padding
    reference, _ = audio.load(src)

    def rms(x):  # AAC shifts samples: compare energy
        return float(np.sqrt(np.mean(x**2)))

    assert rms(wave) == pytest.approx(rms(reference), rel=0.1)
    (tmp_path / "bad.m4a").write_bytes(m4a.read_bytes()[:2000])
    with pytest.raises(AudioError, match=r"bad\.m4a: cannot decode audio"):
        audio.load(tmp_path / "bad.m4a")


@pytest.mark.parametrize("sr", [44101, 22051, 15999, 192001])
def test_rates_without_a_small_ratio_are_resampled_through_a_bounded_kernel(sr):
    """Exact resampling from a rate sharing no factor with 16000 would build a kernel of gigabytes."""
    resampler = audio.StreamResampler(sr)
    assert audio._kernel_floats(resampler.a, resampler.b) <= resampler.MAX_KERNEL
    assert abs(resampler.a / resampler.b * 16000 - sr) / sr < 1e-4  # a speed error below 0.01 %
    x = tone(2.0, sr)
    out = np.concatenate(list(audio.resampled([x[: sr // 2], x[sr // 2 :]], sr)))
    assert abs(len(out) - 32000) <= 2
    nearest = torchaudio.functional.resample(torch.from_numpy(x), resampler.a, resampler.b).numpy()
    assert out.shape == nearest.shape and np.max(np.abs(out - nearest)) <= 1e-5


@pytest.mark.parametrize("sr", [1, 44100, 16000])
def test_an_empty_stream_resamples_to_nothing(sr):
    assert list(audio.resampled([np.zeros(0, np.float32)], sr)) == []
    assert list(audio.resampled([], sr)) == []


def test_array_sample_rates_and_values_are_checked():
    x = np.zeros(1600, np.float32)
    for rate in (0, -5, 44100.5, "44100", True, float("nan")):
        with pytest.raises(UsageError, match="sample_rate"):
            audio.array_stream(x, rate)
    assert sum(len(b) for b in audio.array_stream(x, 8000.0)) == 3200  # a whole float is a rate
    big = np.full(1600, 2e6, np.float32)
    with pytest.raises(AudioError, match="far outside"):
        audio.array_stream(big, 16000)
    loud = np.full((1600, 2), 3e38, np.float32)  # finite, but their sum is not: checked before the downmix
    with pytest.raises(AudioError, match="far outside"):
        audio.array_stream(loud, 16000)


def test_blocks_stay_bounded_for_many_channels_at_high_rates(tmp_path, monkeypatch):
    path = tmp_path / "wide.wav"
    sf.write(path, tone(1.0, 96000, channels=8), 96000, subtype="FLOAT")
    whole, _ = audio.load(path)
    monkeypatch.setattr(audio, "MAX_BLOCK_VALUES", 8 * 10000)
    with audio.AudioReader(path) as reader:
        sizes = [len(b) for b in reader.blocks()]
    assert max(sizes) == 10000 and sum(sizes) == 96000
    small, _ = audio.load(path)
    assert small.shape == whole.shape and np.max(np.abs(small - whole)) <= 1e-5  # blockwise resampling: equal to 1e-5


def test_a_name_too_long_is_an_audio_error(tmp_path):
    with pytest.raises(AudioError, match="cannot open"):
        audio.load(tmp_path / ("a" * 300 + ".wav"))


def test_a_named_pipe_is_read_like_standard_input(tmp_path):
    import threading

    src = tmp_path / "a.flac"
    sf.write(src, tone(1.0, 22050), 22050, format="FLAC")
    fifo = tmp_path / "pipe.flac"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(src.read_bytes()))  # <(cat a.flac) in a shell
    writer.start()
    try:
        wave, info = audio.load(fifo)
    finally:
        writer.join(timeout=30)
    expected, _ = audio.load(src)
    assert info.sample_rate == 22050 and np.array_equal(wave, expected)


# -- cut files: the audio that is there, once, and a warning naming the cut ---------------------------
CUT_SECONDS = 10.0
# How far short of its share of the bytes a cut file may decode: the decoder's unit that a cut discards
# whole. WAV: one frame; FLAC: one block (4096 frames, 0.26 s at 16 kHz); MP3: a frame and the next one's
# reservoir (2 x 1152 frames); Ogg: one page (ffmpeg's Opus pages hold 1 s, libvorbis's a few k bytes
# of 32 kb/s); plus the bitrate's wander over seeded noise (measured below 3 % of the file).
CUT_SLACK_S = {"wav": 0.01, "flac": 0.6, "ogg": 1.5, "mp3": 0.6, "opus": 1.5}


def _noise_file(folder, ext: str):
    """10 s of seeded white noise (no period, so a repeated block is a decoding fault) as ``ext``:
    WAV, FLAC and Ogg Vorbis by libsndfile, MP3 and Opus by ffmpeg (libmp3lame, libopus)."""
    rng = np.random.default_rng(23)
    x = (0.3 * rng.standard_normal(int(CUT_SECONDS * 16000))).astype(np.float32)
    wav = folder / "noise.wav"
    sf.write(wav, x, 16000, subtype="PCM_16")
    if ext in ("wav", "flac", "ogg"):
        path = folder / f"noise.{ext}"
        if ext != "wav":
            sf.write(path, x, 16000)
        return path
    codec = {"mp3": ["libmp3lame", "-b:a", "64k"], "opus": ["libopus", "-b:a", "32k"]}[ext]
    path = folder / f"noise.{ext}"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), "-c:a", *codec, str(path)], check=True)
    return path


def _native(path) -> tuple[np.ndarray, int]:
    """Every decoded frame at the file's own rate (no resampling between the two decodes compared)."""
    with audio.AudioReader(path) as reader:
        return np.concatenate(list(reader.blocks(1.0))), reader.info.sample_rate


def _repeated_block(x: np.ndarray, size: int = 800) -> bool:
    """Any ``size``-sample block equal, bit for bit, to another: noise never repeats itself."""
    blocks = [x[i : i + size].tobytes() for i in range(0, len(x) - size + 1, size)]
    return len(set(blocks)) < len(blocks)


@pytest.mark.parametrize(
    "ext",
    [
        "wav",
        "flac",
        "ogg",
        pytest.param("mp3", marks=pytest.mark.ffmpeg),
        pytest.param("opus", marks=pytest.mark.ffmpeg),
    ],
)
def test_a_cut_file_decodes_to_the_audio_that_is_there_once_with_a_warning(tmp_path, ext):
    whole_file = _noise_file(tmp_path, ext)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the whole file: no warning
        whole, rate = _native(whole_file)
    assert len(whole) / rate == pytest.approx(CUT_SECONDS, abs=0.1) and not _repeated_block(whole)
    data = whole_file.read_bytes()
    for share in (0.2, 0.5, 0.77):
        cut = tmp_path / f"cut-{share}.{ext}"
        cut.write_bytes(data[: int(len(data) * share)])
        warning = r"cut short or damaged \(.+\): [0-9.]+ s decoded, the audio that is there"
        with pytest.warns(UserWarning, match=warning) as caught:
            got, _ = _native(cut)
        assert str(cut) in str(caught[0].message)
        seconds, there = len(got) / rate, share * CUT_SECONDS
        assert there - CUT_SLACK_S[ext] <= seconds <= there + 0.05, (share, seconds)
        assert np.array_equal(got, whole[: len(got)]), share  # the same samples as the whole file's, in place
        assert not _repeated_block(got), share
        with pytest.warns(UserWarning, match="cut short"):
            wave, info = audio.load(cut)  # 16 kHz, and the reader's count is what was decoded
        assert len(wave) == pytest.approx(seconds * 16000, abs=2) and info.frames in (None, len(got))


@pytest.mark.ffmpeg
def test_a_flac_written_to_a_pipe_has_no_length_and_decodes_whole(tmp_path):
    """A FLAC whose header does not know its length (streamed): libsndfile says 2^63 - 1 frames."""
    x = tone(3.0)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    to_pipe = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(tmp_path / "a.wav"), "-f", "flac", "-"]
    piped = subprocess.run(to_pipe, capture_output=True, check=True)
    (tmp_path / "piped.flac").write_bytes(piped.stdout)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wave, info = audio.load(tmp_path / "piped.flac")
    assert len(wave) == len(x) and info.frames == len(x)


@pytest.mark.ffmpeg
def test_an_mp3_without_a_length_header_is_read_to_its_end(tmp_path):
    """No Xing/Info header: libsndfile guesses the length from the first frame's bitrate (a VBR file
    came out at a sixth of its length); ffmpeg reads every frame."""
    rng = np.random.default_rng(1)
    quiet_then_loud = np.concatenate([np.zeros(16000 * 4), 0.5 * rng.standard_normal(16000 * 4)]).astype(np.float32)
    sf.write(tmp_path / "a.wav", quiet_then_loud, 16000, subtype="FLOAT")
    mp3 = tmp_path / "vbr.mp3"
    lame = ["-c:a", "libmp3lame", "-q:a", "4", "-write_xing", "0"]  # VBR, no Xing header
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(tmp_path / "a.wav"), *lame, str(mp3)], check=True)
    wave, info = audio.load(mp3)
    assert len(wave) / 16000 == pytest.approx(8.0, abs=0.15) and info.frames is None  # decoded by ffmpeg
