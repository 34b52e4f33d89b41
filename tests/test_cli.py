"""`ast tag` end to end: formats, stdin, timeline, threshold, activation, errors and exit statuses."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from helpers import run, tone

ROOT = Path(__file__).resolve().parents[1]


def test_jsonl_record_schema(capsys, tiny_model_dir, wav):
    path = wav(2.0)
    code, out, err = run(capsys, "tag", path, "-m", tiny_model_dir, "--format", "jsonl", "--top", "3")
    assert code == 0, err
    record = json.loads(out)
    assert set(record) == {"path", "duration_s", "labels"}
    assert record["path"] == str(path) and record["duration_s"] == 2.0
    assert [set(x) for x in record["labels"]] == [{"label", "index", "score"}] * 3


def test_every_format(capsys, tiny_model_dir, wav):
    a, b = wav(1.0, name="a.wav"), wav(3.0, 44100, 2, name="b, with comma.wav")
    common = ["-m", tiny_model_dir, "--top", "2"]
    code, out, _ = run(capsys, "tag", a, b, *common, "-f", "json")
    assert code == 0 and [r["path"] for r in json.loads(out)] == [str(a), str(b)]
    code, out, _ = run(capsys, "tag", a, b, *common, "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["path", "duration_s", "label_1", "score_1", "label_2", "score_2", "error"]
    assert rows[1]["path"] == str(b) and rows[1]["error"] == ""
    code, out, _ = run(capsys, "tag", a, *common, "-f", "tsv")
    assert out.splitlines()[0].split("\t")[:2] == ["path", "duration_s"]
    code, out, _ = run(capsys, "tag", a, *common, "-f", "table")
    assert code == 0 and "label" in out and "score" in out and str(a) in out


def test_piped_stdout_defaults_to_jsonl(tiny_model_dir, wav):
    path = wav(1.0)
    proc = subprocess.run(
        [sys.executable, "-m", "ast_cli", "tag", str(path), "-m", str(tiny_model_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["path"] == str(path)
    assert proc.stderr == ""


def test_stdin_input(tiny_model_dir):
    buf = io.BytesIO()
    sf.write(buf, tone(1.2, 44100), 44100, format="FLAC")
    proc = subprocess.run(
        [sys.executable, "-m", "ast_cli", "tag", "-", "-m", str(tiny_model_dir), "-f", "jsonl"],
        input=buf.getvalue(),
        capture_output=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["path"] == "-" and record["duration_s"] == 1.2


def test_long_file_timeline(capsys, tiny_model_dir, wav):
    path = wav(4.0)
    code, out, _ = run(capsys, "tag", path, "-m", tiny_model_dir, "-f", "json", "--timeline", "--hop", "1.28")
    windows = json.loads(out)[0]["windows"]
    assert [w["start_s"] for w in windows] == [0.0, 1.28, 2.56, 2.7]
    assert all(set(w) == {"start_s", "end_s", "labels"} for w in windows)
    code, out, _ = run(capsys, "tag", path, "-m", tiny_model_dir, "-f", "csv", "--timeline", "--top", "1")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["start_s"] for r in rows] == ["0", "0.64", "1.28", "1.92", "2.56", "2.7"]


def test_threshold_and_activation(capsys, tiny_model_dir, wav):
    path = wav(1.0)
    _, out, _ = run(capsys, "tag", path, "-m", tiny_model_dir, "-f", "jsonl", "--top", "0")
    scores = [x["score"] for x in json.loads(out)["labels"]]
    cut = scores[1]
    _, out, _ = run(capsys, "tag", path, "-m", tiny_model_dir, "-f", "jsonl", "--top", "0", "--threshold", cut)
    assert len(json.loads(out)["labels"]) == 2
    _, out, _ = run(capsys, "tag", path, "-m", tiny_model_dir, "-f", "jsonl", "--top", "0", "--activation", "softmax")
    assert sum(x["score"] for x in json.loads(out)["labels"]) == pytest.approx(1.0, abs=1e-4)


def test_a_failed_file_gives_exit_1_and_the_rest_is_tagged(capsys, tiny_model_dir, wav, tmp_path):
    good = wav(1.0)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    code, out, err = run(capsys, "tag", bad, good, "-m", tiny_model_dir, "-f", "jsonl")
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert records[0]["path"] == str(bad) and "error" in records[0] and records[0]["labels"] == []
    assert records[1]["path"] == str(good) and records[1]["labels"]
    assert err.count("\n") == 1 and err.startswith(f"ast: error: {bad}: ") and "Traceback" not in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["-m", "./nowhere"], "no such file or directory"),
        (["--format", "xml"], "--format must be one of"),
        (["--aggregate", "median"], "--aggregate must be one of"),
        (["--include", "Dgo"], "did you mean 'Dog'"),
        (["--window", "9"], "longer than the model's input"),
        (["--precision", "fp16", "--device", "cpu"], "fp16 is for GPUs"),
        (["--device", "cuda"], "no CUDA device"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, tiny_model_dir, wav, args, message):
    path = wav(1.0)
    model = [] if "-m" in args else ["-m", tiny_model_dir]
    code, out, err = run(capsys, "tag", path, *model, *args)
    assert code == 2
    assert out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_offline_uncached_model_is_a_clear_error(capsys, wav):
    code, _, err = run(capsys, "tag", wav(1.0), "-m", "MIT/ast-finetuned-audioset-10-10-0.4593")
    assert code == 2
    assert "not in the local cache" in err and "ast models download" in err


def test_debug_shows_the_traceback(capsys, wav):
    code, _, err = run(capsys, "tag", wav(1.0), "-m", "./nowhere", "--debug")
    assert code == 2 and "Traceback" in err


def test_click_usage_error_exits_2(capsys):
    code, _, err = run(capsys, "tag", "a.wav", "--top", "-3")
    assert code == 2


def test_help_does_not_import_torch():
    code = (
        "import sys, ast_cli.cli; print(sorted(m for m in ('torch', 'torchaudio', 'transformers', "
        "'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_version(capsys):
    from ast_cli import __version__

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"ast {__version__}"


def test_folders_are_searched_as_batch_searches_them(capsys, tiny_model_dir, tmp_path):
    """ast tag DIR and ast embed DIR: the audio files below it, sorted, hidden and other files passed over."""
    import numpy as np

    folder = tmp_path / "sounds"
    (folder / "b").mkdir(parents=True)
    for name in ("b/x.wav", "a.flac", ".hidden.wav"):
        sf.write(folder / name, tone(0.5), 16000)
    (folder / "notes.txt").write_text("not audio")
    code, out, err = run(capsys, "tag", folder, "-m", tiny_model_dir, "-f", "jsonl")
    assert code == 0, err
    assert [json.loads(line)["path"] for line in out.splitlines()] == [
        str(folder / "a.flac"),
        str(folder / "b" / "x.wav"),
    ]
    code, _, err = run(capsys, "embed", folder, "-m", tiny_model_dir, "-o", tmp_path / "e.npy", "-q")
    assert code == 0, err
    assert np.load(tmp_path / "e.npy").shape == (2, 64)
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run(capsys, "tag", empty, "-m", tiny_model_dir)
    assert code == 2 and out == "" and err.startswith("ast: error: no audio files in ") and err.count("\n") == 1


def test_embed_fails_every_input_into_nan_rows_of_the_model_width(capsys, tiny_model_dir, tmp_path):
    import numpy as np

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    code, _, err = run(capsys, "embed", bad, bad, "-m", tiny_model_dir, "-o", tmp_path / "e.npy")
    assert code == 1
    matrix = np.load(tmp_path / "e.npy")
    assert matrix.shape == (2, 64) and np.isnan(matrix).all()
    assert "0 of 2 file(s) embedded (64 dimensions)" in err
