"""Events out of windows (issue 26): the event tables (`events-csv`, `events-tsv`), Raven selection
tables (`raven`), per-label thresholds deciding which windows count, and several outputs from one
`ast batch` run, each equal to a run of its own, each resumable."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from helpers import TINY_LABELS, run, tone

from ast_cli.features import FRAMES_PER_SECOND
from ast_cli.options import TagOptions
from ast_cli.records import FileResult, RecordMaker, merge_events
from ast_cli.sinks import settings_path
from ast_cli.thresholds import Thresholds
from ast_cli.writers import RAVEN_HEADER, RavenWriter, get_writer

# a hand-built timeline: 4 windows of 2 s, a hop of 1 s; Dog in windows 0-1, Rain in 1 and 3
WINDOWS = [
    {"start_s": 0.0, "end_s": 2.0, "labels": [{"label": "Dog", "index": 2, "score": 0.9}]},
    {
        "start_s": 1.0,
        "end_s": 3.0,
        "labels": [{"label": "Dog", "index": 2, "score": 0.7}, {"label": "Rain", "index": 3, "score": 0.6}],
    },
    {"start_s": 2.0, "end_s": 4.0, "labels": []},
    {"start_s": 3.0, "end_s": 4.5, "labels": [{"label": "Rain", "index": 3, "score": 0.8}]},
]
EVENTS = [  # (label, index, start_s, end_s, score): Dog from window 0 to 1, Rain twice
    ("Dog", 2, 0.0, 3.0, 0.9),
    ("Rain", 3, 1.0, 3.0, 0.6),
    ("Rain", 3, 3.0, 4.5, 0.8),
]
CLIPS = [(1.28, 16000), (2.6, 44100), (4.0, 8000), (3.33, 16000)]  # (seconds, Hz)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("event-clips")
    for i, (seconds, sr) in enumerate(CLIPS):
        sf.write(folder / f"{i}.wav", tone(seconds, sr, seed=i, freq=300.0 + 500 * i), sr)
    return folder


def record_of(events=None) -> dict:
    return {"path": "a/x.wav", "duration_s": 4.5, "labels": [], "windows": WINDOWS, "events": events or []}


@pytest.mark.parametrize("fmt,delimiter", [("events-csv", ","), ("events-tsv", "\t")])
def test_the_event_table_has_one_row_an_event_of_a_hand_built_timeline(fmt, delimiter):
    events = merge_events(WINDOWS)
    assert [(e["label"], e["index"], e["start_s"], e["end_s"], e["score"]) for e in events] == EVENTS
    stream = io.StringIO()
    writer = get_writer(fmt, stream)
    writer.write(record_of(events))
    writer.write({"path": "b.wav", "duration_s": None, "labels": [], "error": "b.wav: not audio"})
    writer.write({**record_of(), "path": "quiet.wav"})  # a file without events
    rows = list(csv.reader(io.StringIO(stream.getvalue()), delimiter=delimiter))
    assert rows[0] == ["path", "start_s", "end_s", "label", "index", "score"]
    assert rows[1:] == [["a/x.wav", f"{s:.3f}", f"{e:.3f}", label, str(i), f"{p:g}"] for label, i, s, e, p in EVENTS]


def test_per_label_thresholds_decide_which_windows_count():
    """Dog's own threshold (0.8) keeps its first window only; Rain falls back to --threshold (0.5)."""
    scores = torch.tensor(  # (W, C): Speech, Music, Dog, Rain, Siren
        [[0.1, 0.1, 0.9, 0.4, 0.0], [0.1, 0.1, 0.7, 0.6, 0.0], [0.1, 0.1, 0.85, 0.7, 0.0]]
    )
    thresholds = Thresholds(per_label={"dog": 0.8}, source="t.csv")
    options = TagOptions(top=0, threshold=0.5, thresholds=thresholds, merge=True)
    window = int(2 * FRAMES_PER_SECOND)
    starts = [0, int(FRAMES_PER_SECOND), int(2 * FRAMES_PER_SECOND)]
    result = FileResult("x.wav", duration_s=4.0, starts=starts, scores=list(scores))
    events = RecordMaker(TINY_LABELS, options, window).record(result)["events"]
    assert [(e["label"], e["start_s"], e["end_s"]) for e in events] == [
        ("Dog", 0.0, 2.0),
        ("Rain", 1.0, 4.0),
        ("Dog", 2.0, 4.0),
    ]


def test_a_raven_table_reads_back_with_its_header_and_one_selection_an_event():
    events = merge_events(WINDOWS)
    writer = RavenWriter()
    assert writer.path_of("/data/a/x.wav").as_posix() == "data/a/x.wav.selections.txt"
    text = writer.render(record_of(events))
    assert text.split("\n", 1)[0] == (
        "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tAnnotation\tScore"
    )
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    assert list(rows[0]) == list(RAVEN_HEADER)
    assert [
        (r["Annotation"], float(r["Begin Time (s)"]), float(r["End Time (s)"]), float(r["Score"])) for r in rows
    ] == [(label, start, end, score) for label, _, start, end, score in EVENTS]
    assert [r["Selection"] for r in rows] == ["1", "2", "3"]
    assert {(r["View"], r["Channel"], r["Low Freq (Hz)"], r["High Freq (Hz)"]) for r in rows} == {
        ("Spectrogram 1", "1", "0", "8000")
    }
    assert writer.render(record_of()) == "\t".join(RAVEN_HEADER) + "\n"  # no events: the header alone


def batch(capsys, clips, tiny_model_dir, *args) -> tuple[int, str, str]:
    common = ["-m", tiny_model_dir, "--workers", "0", "-q", "--top", "2", "--threshold", "0.2"]
    return run(capsys, "batch", clips, *common, *args)


def tables(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*.txt"))}


def test_raven_folder_end_to_end_matches_the_merged_events(capsys, clips, tiny_model_dir, tmp_path):
    code, out, _ = batch(capsys, clips, tiny_model_dir, "-o", "-", "-f", "jsonl", "--merge")
    records = {r["path"]: r for r in map(json.loads, out.splitlines())}
    assert code == 0 and any(r["events"] for r in records.values())
    code, _, _ = batch(capsys, clips, tiny_model_dir, "-o", tmp_path / "raven", "-f", "raven")
    assert code == 0 and json.loads((tmp_path / "raven" / ".ast-batch.json").read_text())["settings"]["merge"]
    for path, record in records.items():
        table = (tmp_path / "raven" / RavenWriter().path_of(path)).read_text(encoding="utf-8")
        rows = list(csv.DictReader(io.StringIO(table), delimiter="\t"))
        got = [(r["Annotation"], float(r["Begin Time (s)"]), float(r["End Time (s)"])) for r in rows]
        assert got == [(e["label"], e["start_s"], e["end_s"]) for e in record["events"]]


FORMATS = [("tags.csv", "csv"), ("tags.jsonl", "jsonl"), ("events.tsv", "events-tsv"), ("raven", "raven")]


@pytest.mark.parametrize("flags", [[], ["--timeline"]])
def test_several_outputs_from_one_run_equal_a_run_each(capsys, clips, tiny_model_dir, tmp_path, flags):
    outs = [a for name, fmt in FORMATS for a in ("-o", tmp_path / "one" / name, "-f", fmt)]
    code, out, _ = batch(capsys, clips, tiny_model_dir, *outs, *flags)
    assert code == 0 and out == ""
    for name, fmt in FORMATS:
        assert batch(capsys, clips, tiny_model_dir, "-o", tmp_path / "own" / name, "-f", fmt, *flags)[0] == 0
        one, own = tmp_path / "one" / name, tmp_path / "own" / name
        if fmt == "raven":
            assert tables(one) == tables(own) and len(tables(one)) == len(CLIPS)
        else:
            assert one.read_bytes() == own.read_bytes()
        settings = [json.loads(settings_path(str(path), fmt).read_text()) for path in (one, own)]
        assert settings[0] == settings[1]
    assert "windows" not in json.loads((tmp_path / "one" / "tags.jsonl").read_text().splitlines()[0]) or flags


def test_several_outputs_resume_each_from_what_it_holds(capsys, clips, tiny_model_dir, tmp_path):
    """One output lost its last records, another one table: --resume tags those files again for the
    outputs that lack them alone; every output ends as a clean run writes it."""
    outs = ["-o", tmp_path / "tags.jsonl", "-o", tmp_path / "events.csv", "-o", tmp_path / "raven"]
    formats = ["-f", "jsonl", "-f", "events-csv", "-f", "raven"]
    assert batch(capsys, clips, tiny_model_dir, *outs, *formats)[0] == 0
    clean = [(tmp_path / n).read_bytes() for n in ("tags.jsonl", "events.csv")], tables(tmp_path / "raven")
    lines = (tmp_path / "tags.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "tags.jsonl").write_text("".join(lines[:2]), encoding="utf-8")
    first = sorted((tmp_path / "raven").rglob("0.wav.selections.txt"))[0]
    first.unlink()
    code, _, err = batch(capsys, clips, tiny_model_dir, *outs, *formats, "--resume")
    assert code == 0 and "warning" not in err, err
    assert ([(tmp_path / n).read_bytes() for n in ("tags.jsonl", "events.csv")], tables(tmp_path / "raven")) == clean
    code, _, err = batch(capsys, clips, tiny_model_dir, *outs, *formats, "--resume", "--top", "1")
    assert code == 2 and "settings differ" in err


def test_an_event_table_resumes_whole_and_mends_a_damaged_row(capsys, clips, tiny_model_dir, tmp_path):
    out = tmp_path / "events.tsv"
    args = ["-o", out, "-f", "events-tsv"]
    assert batch(capsys, clips, tiny_model_dir, *args)[0] == 0
    clean = out.read_text(encoding="utf-8")
    lines = clean.split("\n")
    assert len({line.split("\t")[0] for line in lines[1:-1]}) == len(CLIPS)  # every clip has events here
    code, _, err = batch(capsys, clips, tiny_model_dir, *args, "--resume")
    # the last file's rows are always tagged again (a full disk may have cut them): the same rows come back
    assert code == 0 and "1 tagged" in err and f"{len(CLIPS) - 1} already in the output" in err
    assert out.read_text(encoding="utf-8") == clean
    cells = lines[2].split("\t")
    lines[2] = "\t".join([*cells[:4], "not-an-index", *cells[5:]])
    out.write_text("\n".join(lines), encoding="utf-8")
    code, _, err = batch(capsys, clips, tiny_model_dir, *args, "--resume")
    assert code == 0 and "damaged line(s) left out" in err and out.read_text(encoding="utf-8") == clean
    out.write_text(clean.replace("start_s", "onset", 1), encoding="utf-8")
    code, _, err = batch(capsys, clips, tiny_model_dir, *args, "--resume")
    assert code == 2 and "other columns" in err


@pytest.mark.parametrize(
    "args,said",
    [
        (["-o", "a.csv", "-o", "b.csv", "-f", "csv"], "give one --format per -o"),
        (["-o", "a.csv", "-o", "a.csv"], "given twice as -o"),
        (["-o", "a.csv", "-o", "-", "--resume"], "--resume needs an output file"),
        (["-o", "a.csv", "-o", "raven"], "cannot tell the output format from 'raven'"),
    ],
)
def test_several_outputs_refused_with_one_line(capsys, clips, tiny_model_dir, tmp_path, monkeypatch, args, said):
    monkeypatch.chdir(tmp_path)
    code, out, err = batch(capsys, clips, tiny_model_dir, *args)
    assert code == 2 and out == "" and said in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "a.csv").exists()
