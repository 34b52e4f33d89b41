"""ast clips: detections read back from every output of ast tag/batch with times, cut at the right
samples (compared with the source's), padded and clamped at the file's edges, named by label, score
and times, listed in clips.csv; nothing replaced without --force; a bad source is one line, the
others are still cut."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf
from helpers import run, tone

from ast_cli.detections import Detection, read_detections, select
from ast_cli.errors import UsageError

SR = 44100  # not the model's rate: clips keep the source's


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "garden.wav"
    sf.write(path, tone(10.0, SR, channels=1), SR, subtype="FLOAT")
    return path


def _record(path, events=None, windows=None) -> dict:
    record = {"path": str(path), "duration_s": 10.0, "labels": []}
    if events is not None:
        record["events"] = events
    if windows is not None:
        record["windows"] = windows
    return record


def _event(label, score, start, end) -> dict:
    return {"label": label, "index": 0, "start_s": start, "end_s": end, "score": score}


def _results(tmp_path, *records, name="tags.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _manifest(out) -> list[dict]:
    with open(out / "clips.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_clips_hold_the_source_samples_padded_and_clamped(capsys, tmp_path, source):
    events = [_event("Dog", 0.91234, 2.5, 4.0), _event("Rain", 0.5, 0.2, 1.0), _event("Dog", 0.7, 9.0, 10.0)]
    results = _results(tmp_path, _record(source, events=events))
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "clips", results, "-o", out, "--pad", 0.5)
    assert code == 0, err
    assert stdout == ""
    wave, _ = sf.read(source, dtype="float32")
    expect = {
        "Dog/0.912_garden_2.50-4.00.wav": (2.0, 4.5),
        "Rain/0.500_garden_0.20-1.00.wav": (0.0, 1.5),  # the padding stops at the start
        "Dog/0.700_garden_9.00-10.00.wav": (8.5, 10.0),  # and at the end
    }
    for name, (start, end) in expect.items():
        clip, rate = sf.read(out / name, dtype="float32")
        assert rate == SR and sf.info(out / name).subtype == "PCM_16"
        want = wave[round(start * SR) : round(end * SR)]
        assert len(clip) == len(want)
        np.testing.assert_allclose(clip, want, atol=1.5 / 32768)  # 16-bit quantisation
    rows = _manifest(out)
    assert [r["clip"] for r in rows] == [str(out / name) for name in sorted(expect, key=lambda n: expect[n][0])]
    dog = next(r for r in rows if r["score"] == "0.91234")
    assert (dog["label"], dog["source"], dog["start_s"], dog["end_s"]) == ("Dog", str(source), "2.5", "4.0")
    assert (float(dog["clip_start_s"]), float(dog["clip_end_s"])) == (2.0, 4.5)


def test_selection_min_score_labels_and_best_per_label(capsys, tmp_path, source):
    events = [_event("Dog", s, i, i + 0.5) for i, s in enumerate([0.3, 0.9, 0.6, 0.8])]
    events += [_event("Rain", 0.95, 5.0, 6.0), _event("Bird", 0.99, 7.0, 8.0)]
    results = _results(tmp_path, _record(source, events=events))
    out = tmp_path / "out"
    args = ["--min-score", 0.5, "--max-per-label", 2, "--include", "dog", "--include", "RAIN", "--exclude", "rain"]
    code, _, err = run(capsys, "clips", results, "-o", out, *args)
    assert code == 0, err
    assert sorted(p.name for p in out.rglob("*.wav")) == ["0.800_garden_3.00-3.50.wav", "0.900_garden_1.00-1.50.wav"]


def test_nothing_is_replaced_without_force(capsys, tmp_path, source):
    results = _results(tmp_path, _record(source, events=[_event("Dog", 0.9, 1.0, 2.0)]))
    out = tmp_path / "out"
    assert run(capsys, "clips", results, "-o", out)[0] == 0
    clip = out / "Dog" / "0.900_garden_1.00-2.00.wav"
    before = clip.stat().st_mtime_ns
    code, _, err = run(capsys, "clips", results, "-o", out, "--pad", 1)
    assert code == 2 and "exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert clip.stat().st_mtime_ns == before
    code, _, err = run(capsys, "clips", results, "-o", out, "--pad", 1, "--force")
    assert code == 0, err
    assert sf.info(clip).frames == 3 * SR


def test_a_bad_source_is_one_line_and_the_others_are_cut(capsys, tmp_path, source):
    results = _results(
        tmp_path,
        _record(tmp_path / "gone.wav", events=[_event("Dog", 0.9, 1.0, 2.0)]),
        _record("-", events=[_event("Dog", 0.8, 1.0, 2.0)]),
        {"path": "broken.wav", "duration_s": None, "labels": [], "error": "broken.wav: cannot decode audio"},
        _record(source, events=[_event("Dog", 0.7, 1.0, 2.0), _event("Dog", 0.6, 30.0, 31.0)]),
    )
    out = tmp_path / "out"
    code, _, err = run(capsys, "clips", results, "-o", out)
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("ast: error:")]
    assert len(lines) == 3
    assert "gone.wav" in lines[0] and "standard input" in lines[1] and "garden.wav: ends at 10.00 s" in lines[2]
    assert [r["score"] for r in _manifest(out)] == ["0.7"]  # what the short file has is still cut


def test_windows_and_csv_rows_are_read_as_detections(tmp_path):
    window = {"start_s": 1.0, "end_s": 2.0, "labels": [{"label": "Dog", "index": 2, "score": 0.5}]}
    expected = [Detection("a.wav", "Dog", 0.5, 1.0, 2.0)]
    assert read_detections(json.dumps([_record("a.wav", windows=[window])]), "r.json") == expected
    timeline = "path,start_s,end_s,label_1,score_1,label_2,score_2,error\na.wav,1.0,2.0,Dog,0.5,,,\nb.wav,,,,,,,bad\n"
    assert read_detections(timeline, "r.csv") == expected
    merged = "path\tstart_s\tend_s\tlabel\tscore\terror\na.wav\t1.0\t2.0\tDog\t0.5\t\n"
    assert read_detections(merged, "r.tsv") == expected
    all_scores = "path,start_s,end_s,Dog,Rain,error\na.wav,1.0,2.0,0.5,0.25,\n"
    assert read_detections(all_scores, "r.csv") == [*expected, Detection("a.wav", "Rain", 0.25, 1.0, 2.0)]
    assert select(read_detections(all_scores, "r.csv"), min_score=0.3) == expected


@pytest.mark.parametrize(
    "text, says",
    [
        (json.dumps({"path": "a.wav", "duration_s": 1.0, "labels": []}) + "\n", "no times"),
        ("path,duration_s,label_1,score_1,error\na.wav,1.0,Dog,0.5,\n", "no times"),
        ("{not json\n", "r:1: not a JSON record"),
        ("", "is empty"),
    ],
)
def test_results_without_times_or_not_ours_are_refused(text, says):
    with pytest.raises(UsageError, match=says):
        read_detections(text, "r")


def test_tag_then_clips(capsys, tmp_path, tiny_model_dir, wav):
    audio = wav(3.0, sr=22050)
    code, out, err = run(capsys, "tag", audio, "-m", tiny_model_dir, "--timeline", "-f", "jsonl")
    assert code == 0, err
    results = tmp_path / "tags.jsonl"
    results.write_text(out)
    code, _, err = run(capsys, "clips", results, "-o", tmp_path / "clips", "--max-per-label", 1)
    assert code == 0, err
    rows = _manifest(tmp_path / "clips")
    assert len(rows) == 5 and all(sf.info(r["clip"]).samplerate == 22050 for r in rows)  # the tiny model's labels
