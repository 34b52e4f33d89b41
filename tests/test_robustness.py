"""Bad input never breaks a run: a corpus of broken files through `ast tag`, `ast stats`, `ast finetune`
and `ast embed`; random bytes into the decoder and random waveforms into the tagger (hypothesis);
Ctrl-C and a closed pipe; plain output for non-terminals and NO_COLOR."""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import make_sound_dataset, run, tone, tone_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ast_cli import audio
from ast_cli.cli import main
from ast_cli.errors import AudioError, UsageError
from ast_cli.process import one_line

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root reads files whatever their mode

# name -> what `ast tag` says about it: None (tagged) or a piece of the one-line error
CORPUS: dict[str, str | None] = {
    "empty.wav": "empty file",
    "zero_frames.wav": "too short",
    "one_sample.wav": "too short",
    "text.wav": "not audio: it is a text file",
    "truncated_header.wav": "cannot decode audio",
    "truncated_data.wav": None,  # libsndfile reads the frames that are there; a warning names the cut
    "random_bytes.wav": "cannot decode audio",
    "flac_named.wav": None,  # libsndfile goes by the content, not the name
    "wav_named.mp3": None,
    "nan.wav": "NaN or infinite",
    "inf.wav": "NaN or infinite",
    "huge_values.wav": "far outside the [-1, 1]",
    "rate_1hz.wav": None,
    "rate_384khz.wav": None,
    "rate_44101hz.wav": None,  # shares no factor with 16000: the exact sinc kernel would need 2.8 GB
    "eight_channels.wav": None,
    "silence.wav": None,
    "dc_only.wav": None,
    "dir.wav": "is a directory",
    "no_permission.wav": "permission denied",
    "broken_link.wav": "broken symbolic link",
    "link_loop.wav": "broken symbolic link",
    "with space.wav": None,
    "ünïcødé 音.wav": None,
    "a,b.wav": None,
    "q\"uo'te.wav": None,
    "new\nline.wav": None,
    os.fsdecode(b"not-utf8-\xff.wav"): None,  # a name Python can only hold as surrogates
}
BAD = sorted(name for name, error in CORPUS.items() if error and not (name == "no_permission.wav" and IS_ROOT))
BAD_FILES = [name for name in BAD if name != "dir.wav"]


def files(corpus: dict[str, Path]) -> dict[str, Path]:
    """The corpus but its folder: a folder, even one named x.wav, is searched by tag, embed and batch, not read."""
    return {name: path for name, path in corpus.items() if name != "dir.wav"}


def build_corpus(root: Path) -> dict[str, Path]:
    """Every entry of CORPUS as a file (or folder, or link) in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    clip = tone(0.5)
    good = io.BytesIO()
    sf.write(good, clip, 16000, format="WAV", subtype="PCM_16")
    wav_bytes = good.getvalue()
    paths = {name: root / name for name in CORPUS}
    paths["empty.wav"].write_bytes(b"")
    sf.write(paths["zero_frames.wav"], np.zeros(0, np.float32), 16000)
    sf.write(paths["one_sample.wav"], np.zeros(1, np.float32), 16000)
    paths["text.wav"].write_text("this is not audio, just text\n")
    paths["truncated_header.wav"].write_bytes(wav_bytes[:30])
    paths["truncated_data.wav"].write_bytes(wav_bytes[: 44 + (len(wav_bytes) - 44) // 2])
    paths["random_bytes.wav"].write_bytes(np.random.default_rng(0).bytes(4000))
    sf.write(paths["flac_named.wav"], clip, 16000, format="FLAC")
    sf.write(paths["wav_named.mp3"], clip, 16000, format="WAV")
    for name, value in (("nan.wav", np.nan), ("inf.wav", -np.inf), ("huge_values.wav", 1e20)):
        x = clip.copy()
        x[1000] = value
        sf.write(paths[name], x, 16000, subtype="FLOAT")
    sf.write(paths["rate_1hz.wav"], np.array([0.1, -0.2, 0.3], np.float32), 1)
    sf.write(paths["rate_384khz.wav"], tone(0.5, 384000), 384000)
    sf.write(paths["rate_44101hz.wav"], tone(0.5, 44101), 44101)
    sf.write(paths["eight_channels.wav"], tone(0.5, channels=8), 16000)
    sf.write(paths["silence.wav"], np.zeros(8000, np.float32), 16000)
    sf.write(paths["dc_only.wav"], np.full(8000, 0.5, np.float32), 16000, subtype="FLOAT")
    paths["dir.wav"].mkdir()
    if not IS_ROOT:
        sf.write(paths["no_permission.wav"], clip, 16000)
        paths["no_permission.wav"].chmod(0)
    paths["broken_link.wav"].symlink_to(root / "does-not-exist.wav")
    paths["link_loop.wav"].symlink_to(paths["link_loop.wav"])
    for name in (
        "with space.wav",
        "ünïcødé 音.wav",
        "a,b.wav",
        "q\"uo'te.wav",
        "new\nline.wav",
        os.fsdecode(b"not-utf8-\xff.wav"),
    ):
        paths[name].write_bytes(wav_bytes)
    if IS_ROOT:
        del paths["no_permission.wav"]
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return build_corpus(tmp_path_factory.mktemp("corpus") / "in")


def assert_one_error_line(err: str, path: Path, reason: str) -> None:
    assert err.startswith(f"ast: error: {one_line(str(path))}: "), err
    assert reason in err and err.count("\n") == 1 and "Traceback" not in err


# -- ast tag ------------------------------------------------------------------------------------
def test_tag_every_input_at_once(capsys, tiny_model_dir, corpus):
    """One run over the whole corpus: each bad input is one line naming it and its reason, in order; the
    others are tagged with finite scores (the cut one with a warning); exit status 1 (and 0 for the good
    ones alone)."""
    corpus = files(corpus)
    paths = list(corpus.values())
    code, out, err = run(capsys, "tag", *paths, "-m", tiny_model_dir, "-f", "json", "--top", "0")
    assert code == 1 and "Traceback" not in err
    records = json.loads(out)
    assert [r["path"] for r in records] == [str(p) for p in paths]
    cut = f"ast: warning: {one_line(str(corpus['truncated_data.wav']))}: cut short or damaged ("
    warned = [line for line in err.splitlines() if line.startswith("ast: warning: ")]
    assert len(warned) == 1 and warned[0].startswith(cut), warned
    errors = [line for line in err.splitlines() if line not in warned]
    assert len(errors) == len(BAD_FILES)
    for name, record in zip(corpus, records, strict=True):
        if CORPUS[name] is None:
            assert "error" not in record and len(record["labels"]) == 5, name
            assert all(math.isfinite(x["score"]) and 0.0 <= x["score"] <= 1.0 for x in record["labels"])
        else:
            assert record["labels"] == [] and record["duration_s"] is None and CORPUS[name] in record["error"], name
            line = errors.pop(0)
            assert line == f"ast: error: {one_line(record['error'])}"
            assert line.startswith(f"ast: error: {one_line(str(corpus[name]))}: "), line
    good = [corpus[name] for name in corpus if CORPUS[name] is None]
    code, out, err = run(capsys, "tag", *good, "-m", tiny_model_dir, "-f", "jsonl", "--top", "1")
    assert code == 0 and err.splitlines() == warned and len(out.splitlines()) == len(good)


def test_truncated_data_and_odd_rates_keep_their_duration(capsys, tiny_model_dir, corpus):
    names = ["truncated_data.wav", "rate_1hz.wav", "rate_384khz.wav", "rate_44101hz.wav"]
    code, out, _ = run(capsys, "tag", *(corpus[n] for n in names), "-m", tiny_model_dir, "-f", "jsonl")
    assert code == 0
    durations = [json.loads(line)["duration_s"] for line in out.splitlines()]
    assert durations == [pytest.approx(0.25, abs=0.001), 3.0, 0.5, 0.5]


def test_csv_of_every_input_round_trips_the_names(capsys, tiny_model_dir, corpus):
    paths = [
        p for p in files(corpus).values() if "\udcff" not in str(p)
    ]  # CSV writes that name's own bytes: not capsys text
    code, out, _ = run(capsys, "tag", *paths, "-m", tiny_model_dir, "--top", "2", "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert [r["path"] for r in rows] == [str(p) for p in paths]  # commas, quotes, newlines round-trip
    assert [bool(r["error"]) for r in rows] == [str(p) in {str(corpus[n]) for n in BAD} for p in paths]


def test_json_is_valid_utf8_for_any_file_name(capsys, tiny_model_dir, corpus):
    path = corpus[os.fsdecode(b"not-utf8-\xff.wav")]
    for fmt in ("json", "jsonl"):
        code, out, _ = run(capsys, "tag", path, "-m", tiny_model_dir, "-f", fmt)
        assert code == 0
        out.encode("utf-8")  # strict: no lone surrogates, so the bytes written are valid UTF-8
        record = json.loads(out)[0] if fmt == "json" else json.loads(out)
        assert record["path"] == str(path) and os.path.exists(record["path"])
    # CSV keeps the name's own bytes, even where Python's stdout would be strict (a non-C UTF-8 locale)
    proc = subprocess.run(
        [sys.executable, "-m", "ast_cli", "tag", path, "-m", str(tiny_model_dir), "-f", "csv"],
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
    )
    assert proc.returncode == 0, proc.stderr
    assert os.fsencode(path) in proc.stdout


def test_debug_shows_the_traceback_of_a_failed_file(capsys, tiny_model_dir, corpus):
    code, _, err = run(capsys, "tag", corpus["text.wav"], "-m", tiny_model_dir, "-f", "jsonl", "--debug")
    assert code == 1
    assert "Traceback" in err and "AudioError" in err and err.rstrip().splitlines()[-1].startswith("ast: error: ")


def test_an_unexpected_exception_is_one_line_and_exit_1(capsys, tiny_model_dir, wav, monkeypatch):
    import ast_cli.inference

    def boom(*args, **kwargs):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(ast_cli.inference.Tagger, "run", boom)
    code, _, err = run(capsys, "tag", wav(1.0), "-m", tiny_model_dir)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("ast: error: unexpected RuntimeError: something nobody expected") and "--debug" in err
    code, _, err = run(capsys, "tag", wav(1.0), "-m", tiny_model_dir, "--debug")
    assert code == 1 and "Traceback" in err


# -- ast stats and ast finetune -----------------------------------------------------------------
def test_stats_skips_each_bad_file_with_one_line_and_goes_on(capsys, corpus):
    folder = next(iter(corpus.values())).parent
    code, out, err = run(capsys, "stats", folder, "--method", "exact", "--target-length", "64", "-f", "json", "-q")
    assert code == 0, err
    result = json.loads(out)
    good = [n for n in corpus if CORPUS[n] is None]
    assert result["files"] == len(good)
    bad_files = [n for n in BAD if n != "dir.wav"]  # a folder is searched, not read
    cut = [w for w in err.splitlines() if "cut short or damaged" in w]  # read, with a warning naming the cut
    assert cut and all(w.startswith(f"ast: warning: {corpus['truncated_data.wav']}: ") for w in cut), cut
    warnings_ = [w for w in err.splitlines() if w not in cut]
    assert len(warnings_) == len(bad_files) and all(
        w.startswith("ast: warning: ") and w.endswith("; skipped") for w in warnings_
    )
    for name in bad_files:
        assert any(str(corpus[name]) in w for w in warnings_), name


def test_stats_debug_shows_the_traceback_of_a_skipped_file(capsys, corpus):
    args = [
        "stats",
        corpus["text.wav"],
        corpus["silence.wav"],
        "--method",
        "exact",
        "--target-length",
        "64",
        "-q",
        "--debug",
    ]
    code, _, err = run(capsys, *args)
    assert code == 0 and "Traceback" in err and "AudioError" in err and f"ast: warning: {corpus['text.wav']}" in err


def test_finetune_skips_each_bad_file_and_trains(capsys, tiny_model_dir, corpus, tmp_path):
    data = tmp_path / "data"
    make_sound_dataset(data, per_class=2)
    for name, path in corpus.items():
        target = data / "tone" / f"x{len(name)}_{path.name}"
        if path.is_symlink():
            target.symlink_to(os.readlink(path) if name != "link_loop.wav" else target)
        elif path.is_file():
            target.write_bytes(path.read_bytes()) if os.access(path, os.R_OK) and name != "no_permission.wav" else None
    out = tmp_path / "model"
    args = [
        "finetune",
        data,
        "-o",
        out,
        "--base",
        tiny_model_dir,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--workers",
        "0",
    ]
    code, stdout, err = run(capsys, *args, "--precision", "fp32", "--val-split", "0.5", "--norm-stats", "base")
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("ast: warning: skipped ")]
    expected = [n for n in BAD if n not in ("dir.wav", "no_permission.wav")]
    assert len(warned) == len(expected) and "Traceback" not in err
    assert (out / "model.safetensors").is_file()


# -- property-based: the decoder and the tagger ---------------------------------------------------
def _wav_bytes(
    seconds: float = 0.05, sr: int = 16000, channels: int = 1, subtype: str = "PCM_16", fmt: str = "WAV"
) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds, sr, channels), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


SEEDS = [_wav_bytes(), _wav_bytes(subtype="FLOAT", channels=2), _wav_bytes(fmt="FLAC", subtype="PCM_16", sr=44100)]


@st.composite
def damaged_files(draw) -> bytes:
    """A valid WAV or FLAC with bytes overwritten (often in the header), cut short, or random bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=600))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, min(len(data) - 1, draw(st.sampled_from([64, len(data) - 1])))))
        data[pos] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


def _decode(data: bytes, from_stdin: bool):
    """audio.load of the bytes as a file, or as standard input (soundfile then reads a file object)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.wav"
        path.write_bytes(data)
        stdin = sys.stdin
        sys.stdin = io.TextIOWrapper(io.BytesIO(data)) if from_stdin else stdin
        try:
            return audio.load("-" if from_stdin else path)
        except (AudioError, UsageError):
            return None
        finally:
            sys.stdin = stdin


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_files(), st.booleans())
def test_damaged_bytes_raise_only_audio_errors(data, from_stdin):
    result = _decode(data, from_stdin)
    if result is not None:
        wave, info = result
        assert wave.dtype == np.float32 and wave.ndim == 1 and np.isfinite(wave).all()
        assert info.sample_rate > 0 and info.channels > 0


@pytest.fixture(scope="module")
def tagger(tiny_model_dir):
    import ast_cli

    return ast_cli.load_model(str(tiny_model_dir), device="cpu", precision="fp32")


SAMPLES = st.floats(width=32, allow_nan=True, allow_infinity=True) | st.floats(-1.0, 1.0, width=32)
RATES = st.sampled_from([1, 7, 8000, 16000, 22050, 44100, 44101, 96000, 384000]) | st.integers(1, 200_000)


@st.composite
def waveforms(draw) -> tuple[np.ndarray, int]:
    """(samples,) or (samples, channels) float32 of any values, at most 3 s long (a 1-Hz array of
    3000 samples would be 50 minutes at 16 kHz)."""
    rate = draw(RATES)
    shape = (draw(st.integers(0, min(3000, 3 * rate))),) + draw(st.sampled_from([(), (1,), (2,), (3,)]))
    return draw(arrays(np.float32, shape, elements=SAMPLES)), rate


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(waveforms())
def test_random_waveforms_give_finite_scores_or_audio_errors(tagger, example):
    wave, sample_rate = example
    try:
        record = tagger.tag(wave, sample_rate=sample_rate, top=0)
    except (AudioError, UsageError):
        return
    scores = [x["score"] for x in record["labels"]]
    assert len(scores) == len(tagger.labels)
    assert all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)


@pytest.mark.parametrize("value", [0.0, 0.5, -1.0])
def test_silence_and_dc_tag_without_nan(tagger, value):
    record = tagger.tag(np.full(20000, value, np.float32), sample_rate=16000, top=0, timeline=True)
    scores = [x["score"] for x in record["labels"]] + [x["score"] for w in record["windows"] for x in w["labels"]]
    assert scores and all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)


# -- Ctrl-C and a closed pipe ---------------------------------------------------------------------
def _wav_file_bytes() -> bytes:
    return _wav_bytes(seconds=1.0)


def test_ctrl_c_gives_a_one_line_summary_and_exit_130(tiny_model_dir, wav):
    """The second input is standard input, kept open: the process waits there when we interrupt it."""
    first = wav(1.0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ast_cli", "tag", str(first), "-", "-m", str(tiny_model_dir), "-f", "jsonl"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        line = proc.stdout.readline()  # the first record: the process now reads stdin
        assert json.loads(line)["path"] == str(first)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert err.decode() == "ast: interrupted after 1 of 2 file(s)\n"
    assert out == b""


@pytest.mark.slow
def test_ctrl_c_in_finetune_says_how_to_resume(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    make_sound_dataset(data, per_class=2)
    out = tmp_path / "model"
    args = ["finetune", str(data), "-o", str(out), "--base", str(tiny_model_dir), "--epochs", "500", "--workers", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ast_cli", *args, "--precision", "fp32", "--val-split", "0.5", "--norm-stats", "base"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    try:
        for line in proc.stderr:  # training has begun: interrupt it
            if line.startswith("epoch 1/500"):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err
    metrics = out / "metrics.jsonl"  # written after each epoch's state: what --resume continues from
    saved = len(metrics.read_text().splitlines()) if metrics.exists() else 0
    command = shlex.join(
        [
            os.path.basename(sys.executable),
            "-m",
            "ast_cli",
            *args,
            "--precision",
            "fp32",
            "--val-split",
            "0.5",
            "--norm-stats",
            "base",
        ]
    )
    if saved:  # the exact command that continues
        assert (
            err.splitlines()[-1] == f"ast: interrupted after {saved} of 500 epoch(s); to continue: {command} --resume"
        )
    else:
        assert (
            err.splitlines()[-1]
            == "ast: interrupted before the first of 500 epoch(s) finished; nothing to resume from; to "
            f"start again: {command}"
        )


def test_ctrl_c_in_stats_says_how_far_it_got(tmp_path, wav):
    """The second input is a named pipe: once we open it for writing, stats is waiting on it."""
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ast_cli", "stats", str(wav(1.0)), str(fifo), "--method", "exact", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    try:
        with open(fifo, "wb"):  # returns once stats has opened the pipe for reading
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and out == ""
    assert err == "ast: interrupted after 1 of 2 file(s); no statistics were written\n"


def test_closed_pipe_ends_quietly(tiny_model_dir, wav):
    """Like `ast tag a.wav - c.wav | head -1`: the reader is gone before the second record is written."""
    first, third = wav(1.0, name="first.wav"), wav(1.0, name="third.wav")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ast_cli", "tag", str(first), "-", str(third), "-m", str(tiny_model_dir), "-f", "jsonl"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert json.loads(proc.stdout.readline())["path"] == str(first)
        proc.stdout.close()  # what `head -1` does after its line
        proc.stdin.write(_wav_file_bytes())
        proc.stdin.close()
        err = proc.stderr.read()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert err == b""
    assert proc.returncode == 141  # 128 + SIGPIPE, as a shell reports a writer whose reader went away


# -- plain output for non-terminals and NO_COLOR ----------------------------------------------------
def _run_on_terminal(args: list[str], env: dict[str, str]) -> bytes:
    """stdout on a pseudo-terminal, so rich sees a terminal; what it wrote."""
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ast_cli", *args],
            stdout=follower,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=120)
    finally:
        os.close(leader)
    return b"".join(chunks)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("no_color", [False, True])
def test_no_color_gets_plain_tables_at_a_terminal(tiny_model_dir, wav, monkeypatch, no_color):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["tag", str(wav(1.0)), "-m", str(tiny_model_dir)]) == 0  # a terminal: a table by default
    out = terminal.getvalue()
    assert "score" in out and ("\x1b[" in out) is not no_color  # colour and bold at a terminal, none with NO_COLOR


def test_tables_off_a_terminal_are_plain(capsys, tiny_model_dir, wav, monkeypatch):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    code, out, _ = run(capsys, "tag", wav(1.0), "-m", tiny_model_dir, "-f", "table", "--timeline")
    assert code == 0 and "score" in out and "timeline" in out and "\x1b[" not in out


# -- ast batch ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_batch_goes_on_past_every_bad_input_and_resumes_to_nothing(capsys, tiny_model_dir, corpus, tmp_path, fmt):
    root = next(iter(corpus.values())).parent
    out = tmp_path / f"tags.{fmt}"
    code, stdout, err = run(capsys, "batch", root, "-o", out, "-m", tiny_model_dir, "--workers", "1", "-q")
    assert code == 1 and stdout == "" and "Traceback" not in err
    if fmt == "jsonl":
        records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    else:
        with open(out, encoding="utf-8", errors="surrogateescape", newline="") as f:
            records = list(csv.DictReader(f))
    files = {str(p) for n, p in corpus.items() if n != "dir.wav"}  # a folder named x.wav is walked, not tagged
    assert sorted(r["path"] for r in records) == sorted(files)  # each exactly once, odd names included
    failed = {r["path"] for r in records if r.get("error")}
    assert failed == {str(corpus[n]) for n in BAD if n != "dir.wav"}
    assert err.count("ast: error: ") == len(failed)
    code, _, err = run(capsys, "batch", root, "-o", out, "-m", tiny_model_dir, "--workers", "0", "-q", "--resume")
    assert code == 0 and "0 tagged, 0 failed" in err and f"{len(files)} already in the output" in err


# -- faults of the environment (issue 19) -----------------------------------------------------------
@pytest.mark.parametrize("code,status", [(errno.ENOSPC, 1), (errno.EROFS, 2), (errno.EACCES, 2), (errno.EDQUOT, 1)])
def test_the_environment_is_named_not_called_a_bug(capsys, tiny_model_dir, wav, tmp_path, monkeypatch, code, status):
    """A full disk or a read-only folder while an output is written: one line naming the file, what
    happened and what to do; no temporary file left; exit 1 (stopped partway) or 2 (could not start)."""
    import ast_cli.embedding

    out = tmp_path / "e.npy"

    def fail(self, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(out))

    monkeypatch.setattr(ast_cli.embedding.EmbeddingWriter, "close", fail)
    result, _, err = run(capsys, "embed", wav(0.5), "-m", tiny_model_dir, "-o", out, "-q")
    assert result == status and err.count("\n") == 1 and "a bug" not in err, err
    assert err.startswith(f"ast: error: {out}: {os.strerror(code)} (") and "nothing half-written is left" in err


def test_a_batch_output_on_a_full_disk_stops_with_what_was_written(capsys, tiny_model_dir, tmp_path, monkeypatch):
    import ast_cli.sinks

    folder = tmp_path / "in"
    tone_files(folder, 5, 0.3)
    out = tmp_path / "out.json"
    real = ast_cli.sinks.FileSink.write
    written = []

    def write(self, record):
        if len(written) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out))
        written.append(record)
        real(self, record)

    monkeypatch.setattr(ast_cli.sinks.FileSink, "write", write)
    code, _, err = run(capsys, "batch", folder, "-o", out, "-m", tiny_model_dir, "-q")
    assert code == 1 and "a bug" not in err
    assert f"ast: error: {out}: No space left on device after 3 record(s); run the same command with --resume" in err
    assert "3 tagged, 0 failed" in err  # the summary counts what the output holds
    assert len(json.loads(out.read_text())) == 3  # the array was closed: still valid JSON
    monkeypatch.setattr(ast_cli.sinks.FileSink, "write", real)
    assert run(capsys, "batch", folder, "-o", out, "-m", tiny_model_dir, "--resume", "-q")[0] == 0
    assert sorted(r["path"] for r in json.loads(out.read_text())) == sorted(str(p) for p in folder.iterdir())


def test_an_export_that_cannot_fit_is_refused_before_it_writes(capsys, tiny_model_dir, tmp_path, monkeypatch):
    """torch.jit.save aborts the whole process on a full disk: the space is checked first."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    code, _, err = run(capsys, "export", tiny_model_dir, "-o", tmp_path / "m.pt", "--format", "torchscript", "-q")
    assert code == 2 and "MB free, the torchscript file needs about" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # no temporary file either


@pytest.mark.slow
def test_sigterm_at_any_moment_then_resume_gives_every_file_once(tiny_model_dir, tmp_path):
    """SIGTERM at random moments of a batch run: exit 143, no good file recorded as failed, and after
    --resume every file is in the output exactly once."""
    import random

    folder = tmp_path / "in"
    tone_files(folder, 40, 0.4)
    out = tmp_path / "out.csv"
    cmd = [sys.executable, "-m", "ast_cli", "batch", str(folder), "-o", str(out), "-m", str(tiny_model_dir), "-q"]
    rng = random.Random(0)
    for _attempt in range(20):
        proc = subprocess.Popen(
            cmd + (["--resume"] if out.exists() else []), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        time.sleep(rng.uniform(0.5, 3.5))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 143), err
        assert "Terminated" not in err and "cannot tag" not in err, err
    assert subprocess.run(cmd + ["--resume"], capture_output=True).returncode == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in folder.iterdir())
    assert all(r["error"] == "" for r in rows)


def test_sigterm_while_the_exit_handlers_run_ends_quietly(tmp_path):
    """A SIGTERM that arrives after the command finished, while the interpreter's exit handlers run
    (CI saw one land in torch's weakref finalizers), ends the process with 143 and no traceback."""
    script = tmp_path / "late.py"
    script.write_text(
        "import atexit, os, signal, time, typer\n"
        "from ast_cli import process\n"
        "app = typer.Typer()\n"
        "@app.command()\n"
        "def done():\n"
        "    atexit.register(late)  # as torch's import registers its finalizers, inside the command\n"
        "    print('result')\n"
        "@app.command()\n"
        "def other():\n"
        "    pass\n"
        "def late():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(5)\n"
        "    raise AssertionError('still running')\n"
        "raise SystemExit(process.main(app))\n"
    )
    proc = subprocess.run([sys.executable, str(script), "done"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143 and proc.stdout == "result\n" and proc.stderr == "", proc.stderr


def test_a_sigterm_during_an_import_ends_the_process_without_raising_into_it(tmp_path, monkeypatch):
    """CI saw a SIGTERM land while torch imported a module from C++: the exception raised there
    aborted the process ('terminate called after throwing ...'). Inside an import the handler ends
    the process at once (143) instead of raising."""
    from ast_cli import process

    (tmp_path / "probe_import.py").write_text(
        "import sys\nfrom ast_cli import process\nINSIDE = process.importing(sys._getframe())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import probe_import

    assert probe_import.INSIDE and not process.importing(sys._getframe())
    script = tmp_path / "late_import.py"
    (tmp_path / "slow_module.py").write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(5)\nraise "
        "AssertionError('still importing')\n"
    )
    script.write_text(
        "import sys, typer\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from ast_cli import process\n"
        "app = typer.Typer()\n"
        "@app.command()\n"
        "def run():\n"
        "    print('before', flush=True)\n"
        "    import slow_module\n"
        "@app.command()\n"
        "def other():\n"
        "    pass\n"
        "raise SystemExit(process.main(app))\n"
    )
    proc = subprocess.run([sys.executable, str(script), "run"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143 and proc.stdout == "before\n" and proc.stderr == "", (
        proc.stderr
    )  # ended at once, not unwound


@pytest.fixture
def small_disk(tmp_path):
    """A 256 kB tmpfs: a real full disk (and, remounted, a real read-only one). Skipped where this
    process may not mount (not root, or no CAP_SYS_ADMIN in its container)."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({proc.stderr.strip() or 'mount failed'}): the "
            "simulated-error tests above cover the messages"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_really_full_disk_and_a_really_read_only_folder(capsys, tiny_model_dir, tmp_path, small_disk):
    folder = tmp_path / "in"
    tone_files(folder, 30, 0.3)
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # leave room for a few records only
        try:
            f.write(b"\0" * (256 << 10))
        except OSError:
            pass
    filler.write_bytes(filler.read_bytes()[: (256 << 10) - 12 * 1024])
    out = small_disk / "tags.jsonl"
    code, _, err = run(capsys, "batch", folder, "-o", out, "-m", tiny_model_dir, "--top", "5", "-q")
    assert code == 1 and "No space left on device after" in err and "a bug" not in err, err
    kept = [json.loads(line) for line in out.read_text().splitlines()]  # whole records only
    assert 0 < len(kept) < 30
    filler.unlink()
    assert run(capsys, "batch", folder, "-o", out, "-m", tiny_model_dir, "--top", "5", "--resume", "-q")[0] == 0
    paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir())
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True).returncode == 0
    code, _, err = run(capsys, "embed", folder / "00.wav", "-m", tiny_model_dir, "-o", small_disk / "e.npy", "-q")
    assert code == 2 and "Read-only file system" in err and err.count("\n") == 1, err


# -- full disks and temporaries (issue 24) -----------------------------------------------------------
def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` up to ``leave`` bytes free (tmpfs counts whole 4 kB pages)."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * (1 << 20))
        except OSError:
            pass
    if leave:
        os.truncate(filler, filler.stat().st_size - leave)
    return filler


def left_on(disk: Path) -> list[str]:
    return sorted(p.name for p in disk.iterdir() if p.name != "filler")


@pytest.mark.parametrize("leave", [0, 4096])
def test_a_batch_that_cannot_start_on_a_full_disk_leaves_nothing(capsys, tiny_model_dir, tmp_path, small_disk, leave):
    """0 or 4 kB free: the output or its settings cannot be written. Exit 2, one line naming the file,
    no 0-byte output: the next run starts, plain or with --resume, once there is room."""
    folder = tmp_path / "in"
    tone_files(folder, 3, 0.3)
    filler = fill(small_disk, leave)
    out = small_disk / "tags.csv"
    code, _, err = run(capsys, "batch", folder, "-o", out, "-m", tiny_model_dir, "-q")
    assert code == 2 and err.count("\n") == 1 and "a bug" not in err, err
    assert err.startswith(f"ast: error: {out}") and "No space left on device (nothing was written" in err, err
    assert left_on(small_disk) == []
    filler.unlink()
    assert run(capsys, "batch", folder, "-o", out, "-m", tiny_model_dir, "-q", "--resume")[0] == 0
    assert len(out.read_text().splitlines()) == 4 and left_on(small_disk) == ["tags.csv", "tags.csv.ast.json"]


@pytest.mark.parametrize("suffix", [".npy", ".jsonl", ".npz"])
def test_an_embedding_file_on_a_full_disk_is_named_and_leaves_no_temporary(
    capsys, tiny_model_dir, wav, small_disk, suffix
):
    fill(small_disk, 0)
    out = small_disk / f"e{suffix}"
    code, _, err = run(capsys, "embed", wav(0.5), wav(0.6, name="b.wav"), "-m", tiny_model_dir, "-o", out, "-q")
    assert code == 1 and err.count("\n") == 1 and "a bug" not in err, err
    assert err.startswith(f"ast: error: {out}: No space left on device (") and "nothing half-written" in err
    assert left_on(small_disk) == []


def test_stats_write_on_a_full_disk_names_the_file(capsys, wav, small_disk):
    fill(small_disk, 0)
    target = small_disk / "model"
    code, _, err = run(capsys, "stats", wav(0.5), "--write", target, "-q")
    assert code == 1 and "a bug" not in err and err.count("\n") == 1, err
    assert err.startswith(f"ast: error: {target / 'preprocessor_config.json'}: No space left on device"), err
    assert left_on(target) == []


def test_a_write_stopped_by_the_disk_inside_torch_or_numpy_names_the_file(tmp_path, monkeypatch):
    """Simulated: torch.save wraps a failed write in a RuntimeError ("inline_container.cc"), numpy's
    tofile raises an OSError without an errno; the message still names the file and the reason."""
    import ast_cli.embedding
    import ast_cli.files
    from ast_cli.files import AtomicPath

    def enospc(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def torch_like(f):
        try:
            f.write(b"x" * 100)
            f.flush()
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534") from None

    monkeypatch.setattr(ast_cli.files._WriteOnly, "write", enospc)  # what a full disk does to a write
    with pytest.raises(OSError) as caught:
        with AtomicPath(tmp_path / "state.pt") as target:
            target.write_with(torch_like)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "state.pt")
    writer = ast_cli.embedding.EmbeddingWriter(str(tmp_path / "e.npy"), False, 300)
    writer.items = [ast_cli.embedding.FileEmbedding("a.wav", 1.0, np.zeros(300, np.float32))]
    with pytest.raises(OSError) as caught:
        writer.close()
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "e.npy")
    assert list(tmp_path.iterdir()) == []


def test_torch_and_numpy_on_a_really_full_disk_name_the_file(small_disk):
    """torch.save to a path raises "unexpected pos" without an errno, np.save to a file "requested and
    written" without one: written through ``AtomicPath.write_with``, the ENOSPC and the file come out."""
    import torch

    from ast_cli.files import AtomicPath

    fill(small_disk, 0)
    for name, save in [
        ("state.pt", lambda f: torch.save({"w": torch.zeros(1 << 16)}, f)),
        ("e.npy", lambda f: np.save(f, np.zeros(1 << 16, np.float32))),
    ]:
        with pytest.raises(OSError) as caught:
            with AtomicPath(small_disk / name) as target:
                target.write_with(save)
        assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(small_disk / name))
    assert left_on(small_disk) == []


@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_finetune_whose_state_save_fails_goes_on_as_the_message_says(capsys, tiny_model_dir, tmp_path, fail_at):
    """The disk fills as the state of epoch ``fail_at`` is saved (torch's RuntimeError around the
    ENOSPC): one line naming the state file and the command that goes on; that command finishes."""
    import torch

    data = tmp_path / "data"
    make_sound_dataset(data, per_class=3)
    out = tmp_path / "out"
    args = ["finetune", data, "-o", out, "--base", tiny_model_dir, "--epochs", "2", "--workers", "0", "-q"]
    real, calls = torch.save, []

    def save(obj, f, *rest, **kwargs):
        calls.append(1)
        if len(calls) == fail_at:
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0") from None
        return real(obj, f, *rest, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "save", save)
        code, _, err = run(capsys, *args)
    state = out / ".train_state" / "state.pt"
    assert code == (2 if fail_at == 1 else 1) and err.count("\n") == 1 and "a bug" not in err, err
    assert err.startswith(f"ast: error: {state}: No space left on device"), err
    again = "--resume" if fail_at == 2 else "start again with"
    assert again in err and "--force" not in err, err
    assert not list(out.rglob("*.tmp"))
    code, _, err = run(capsys, *args, *(["--resume"] if fail_at == 2 else []))
    assert code == 0, err
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2 and not (out / ".incomplete").exists()


@pytest.mark.parametrize("command", ["embed", "stats", "export"])
def test_the_next_run_removes_the_temporaries_a_killed_run_left(capsys, tiny_model_dir, wav, tmp_path, command):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "out"
    folder.mkdir()
    names = {"embed": "e.npy", "stats": "preprocessor_config.json", "export": "m.pt"}
    stale = folder / f".{names[command]}.{dead.stdout.strip()}-abcdef.tmp"
    live = folder / f".{names[command]}.{os.getpid()}-abcdef.tmp"
    stale.write_bytes(b"half")
    live.write_bytes(b"busy")
    args = {
        "embed": ["embed", wav(0.5), "-m", tiny_model_dir, "-o", folder / "e.npy"],
        "stats": ["stats", wav(0.5), "--write", folder],
        "export": ["export", tiny_model_dir, "-o", folder / "m.pt", "--format", "torchscript"],
    }[command]
    run(capsys, *args, "-q")
    assert not stale.exists() and live.exists()


def test_decode_workers_leave_nothing_in_tmp_when_their_parent_is_killed(tiny_model_dir, tmp_path):
    """multiprocessing's pymp-* folder (the forkserver's socket) goes with the forkserver, which ends
    when its parent does: SIGKILL of ast batch leaves nothing in the temporary folder."""
    folder = tmp_path / "in"
    tone_files(folder, 2, 0.3)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    cmd = [sys.executable, "-m", "ast_cli", "batch", "--files-from", "-", "-o", str(tmp_path / "o.csv")]
    cmd += ["-m", str(tiny_model_dir), "--workers", "2", "-q"]
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    assert proc.stdin is not None
    proc.stdin.write(f"{folder / '00.wav'}\n")  # then the pipe stays open: the run waits for more names
    proc.stdin.flush()
    deadline = time.monotonic() + 120
    while not list(scratch.glob("pymp-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(scratch.glob("pymp-*")) and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    time.sleep(1.0)  # the workers are up
    proc.kill()
    proc.wait()
    proc.stdin.close()
    deadline = time.monotonic() + 30
    while list(scratch.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(scratch.iterdir()) == []
