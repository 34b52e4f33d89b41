"""Output formats: CSV/TSV quoting and JSON validity for any file name; labels filtering; sizes."""

from __future__ import annotations

import csv
import io
import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from ast_cli.labels import label_lines
from ast_cli.output import to_json
from ast_cli.writers import get_writer

# any text, lone surrogates included: what os.fsdecode makes of a name that is not UTF-8
PATHS = st.text(min_size=1, max_size=40) | st.binary(min_size=1, max_size=40).map(os.fsdecode)


def record(path: str, error: str | None = None) -> dict:
    if error:
        return {"path": path, "duration_s": None, "labels": [], "error": error}
    return {"path": path, "duration_s": 1.5, "labels": [{"label": 'Dog, "bark"\n', "index": 2, "score": 0.5}]}


@settings(max_examples=200, deadline=None)
@given(paths=st.lists(PATHS, min_size=1, max_size=4), fmt=st.sampled_from(["csv", "tsv"]), timeline=st.booleans())
def test_csv_and_tsv_round_trip_any_path(paths, fmt, timeline):
    buf = io.StringIO(newline="")
    writer = get_writer(fmt, buf, columns=1, timeline=timeline)
    for i, path in enumerate(paths):
        writer.write(record(path, error=f"{path}: broken, really" if i % 2 else None))
    rows = list(csv.reader(io.StringIO(buf.getvalue(), newline=""), delimiter="," if fmt == "csv" else "\t"))
    assert rows[0] == writer.header()
    assert [row[0] for row in rows[1:]] == paths
    assert all(len(row) == len(rows[0]) for row in rows)
    assert [row[-1] for row in rows[1:]] == [f"{p}: broken, really" if i % 2 else "" for i, p in enumerate(paths)]


@settings(max_examples=200, deadline=None)
@given(paths=st.lists(PATHS, min_size=0, max_size=4), fmt=st.sampled_from(["json", "jsonl"]))
def test_json_is_valid_utf8_and_round_trips_any_path(paths, fmt):
    buf = io.StringIO()
    writer = get_writer(fmt, buf)
    for path in paths:
        writer.write(record(path))
    writer.close()
    text = buf.getvalue()
    text.encode("utf-8")  # strict: valid UTF-8 whatever the names
    records = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
    assert [r["path"] for r in records] == paths
    assert text.count("\n") == (
        len(paths) if fmt == "jsonl" else (len(paths) + 2 if paths else 1)
    )  # "[", one a line, "]"


def test_to_json_keeps_text_and_escapes_only_surrogates():
    assert to_json({"p": 'é 音 "q"'}) == '{"p": "é 音 \\"q\\""}'
    assert to_json({"p": os.fsdecode(b"a\xffb")}) == '{"p": "a\\udcffb"}'


def test_label_lines_filter_by_regex_or_text():
    labels = ["Speech", "Music", "Dog", "Rain (heavy)", "Siren"]
    assert label_lines(labels) == ["0\tSpeech", "1\tMusic", "2\tDog", "3\tRain (heavy)", "4\tSiren"]
    assert label_lines(labels, "si") == ["1\tMusic", "4\tSiren"]
    assert label_lines(labels, "^s") == ["0\tSpeech", "4\tSiren"]
    assert label_lines(labels, "(heavy") == ["3\tRain (heavy)"]  # not a valid regex: plain text


def test_messages_stay_one_line_and_cannot_drive_the_terminal():
    from ast_cli.process import one_line

    name = "a\nb\r\x1b[31mred\x85\u2028 é 音\t" + os.fsdecode(b"\xff")
    line = one_line(f"{name}: cannot decode audio")
    assert line == "a\\nb\\r\\x1b[31mred\\x85\\u2028 é 音\t\\udcff: cannot decode audio"
    assert len(line.splitlines()) == 1
    line.encode("utf-8")


# -- NaN: never in an output (JSON has no NaN; a CSV reader would take "nan" for a number) ------------------
def _strict_json(text: str):
    def refuse(name: str):
        raise AssertionError(f"bare {name} in the JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_nan_or_infinite_number_is_null_in_json_and_an_empty_cell_in_csv():
    nan = float("nan")
    window = {"start_s": 0.0, "end_s": 1.0, "labels": [], "scores": {"Dog": -float("inf")}}
    record = {
        "path": "a.wav",
        "duration_s": 1.0,
        "labels": [{"label": "Speech", "index": 0, "score": nan}],
        "scores": {"Speech": nan, "Music": float("inf"), "Dog": 0.5},
        "windows": [window],
    }
    assert _strict_json(to_json(record)) == {
        **record,
        "labels": [{"label": "Speech", "index": 0, "score": None}],
        "scores": {"Speech": None, "Music": None, "Dog": 0.5},
        "windows": [{**window, "scores": {"Dog": None}}],
    }
    for fmt in ("json", "jsonl"):
        out = io.StringIO()
        writer = get_writer(fmt, out)
        writer.write(record)
        writer.close()
        text = out.getvalue()
        parsed = _strict_json(text) if fmt == "json" else [_strict_json(line) for line in text.splitlines()]
        assert parsed[0]["labels"][0]["score"] is None
    for fmt, delimiter in (("csv", ","), ("tsv", "\t")):
        out = io.StringIO()
        get_writer(fmt, out, columns=1).write(record)
        rows = list(csv.reader(io.StringIO(out.getvalue()), delimiter=delimiter))
        assert rows[1] == ["a.wav", "1", "Speech", "", ""]
        out = io.StringIO()
        get_writer(fmt, out, score_columns=["Speech", "Music", "Dog"]).write(record)
        row = list(csv.reader(io.StringIO(out.getvalue()), delimiter=delimiter))[1]
        assert row == ["a.wav", "1", "", "", "0.5", ""]
    get_writer("table", io.StringIO()).write(record)  # the bar of a NaN score is empty, not a crash


def test_a_model_that_gives_nan_scores_fails_each_file_saying_why(tiny_model_dir, tmp_path, wav, capsys):
    """NaN in the weights: each file is a one-line error (exit 1), and the JSON stays JSON."""
    import shutil

    from safetensors.torch import load_file, save_file

    from ast_cli.cli import main

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = load_file(model / "model.safetensors")
    name = next(k for k in weights if k.endswith("bias") and "classifier" in k)
    weights[name][0] = float("nan")
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    for fmt in ("json", "jsonl", "csv"):
        code = main(["tag", str(wav(1.0)), "-m", str(model), "-f", fmt, "--top", "0"])
        out, err = capsys.readouterr()
        assert code == 1 and err.count("\n") == 1 and "the model gave NaN or infinite scores" in err, err
        if fmt == "csv":
            rows = list(csv.reader(io.StringIO(out)))
            assert rows[1][1:-1] == [""] * (len(rows[0]) - 2) and "NaN or infinite scores" in rows[1][-1]
        else:
            record = _strict_json(out)[0] if fmt == "json" else _strict_json(out)
            assert record["labels"] == [] and "NaN or infinite scores" in record["error"]


# -- reading an output back (--resume) ----------------------------------------------------------------
def test_a_timeline_is_whole_from_0_a_hop_apart_to_the_end():
    from ast_cli.readback import TIMELINE, timeline_problem

    def problem(starts, duration=None, hop=0.64, window=1.28):
        # a window's end: its start plus the window, at most where the fbank stops (short of the end)
        last_frame = 1e9 if duration is None else duration - (0.02 if duration > window else 0)
        return timeline_problem(starts, [round(min(s + window, last_frame), 3) for s in starts], duration, hop)

    assert problem([0.0, 0.64, 1.28, 1.3], 2.6) is None  # the last window aligned with the end
    assert problem([0.0], 0.3) is None and problem([], 0.01) is None  # shorter than a window, than a frame
    assert problem([0.0, 0.64, 1.3], 2.6) == TIMELINE  # a middle window gone
    assert problem([0.0, 0.64, 0.64, 1.28, 1.3], 2.6) == TIMELINE  # one twice
    assert problem([0.64, 1.28, 1.3], 2.6) == TIMELINE  # the first gone
    assert problem([0.0, 0.64, 1.28], 2.6) == TIMELINE  # the last gone: it does not reach the duration
    assert problem([], 2.6) == TIMELINE
    # CSV writes 6 significant digits: a 5-hour recording's starts are a tenth of a second off
    starts = [float(f"{18000 + 0.64 * k:.6g}") for k in range(20)]
    assert timeline_problem([0.0, *starts[1:]], starts, None, 0.64) == TIMELINE  # not from 0...
    assert all(abs(b - a - 0.64) < 0.1 for a, b in zip(starts, starts[1:], strict=False))
    from ast_cli.readback import spaced

    assert spaced(starts, 0.64) and not spaced([*starts[:5], *starts[6:]], 0.64)


def test_resume_reads_back_what_a_quote_never_closed_swallowed_as_damage():
    from ast_cli.readback import Expect, scan_table

    header = ["path", "duration_s", "label_1", "score_1", "error"]
    text = 'path,duration_s,label_1,score_1,error\na.wav,1,Dog,0.5,\n"b.wav,1,Dog,0.5,\nc.wav,1,Dog,0.5,\n'
    scan = scan_table(text, "t.csv", header, ",", Expect())
    assert scan.names == {"a.wav"} and scan.damaged == 2 and scan.kept == text[: text.index('"')]
    assert "2 damaged line(s) left out" in (scan.warning("t.csv") or "")


def test_resume_of_a_json_array_without_its_first_line_keeps_the_records_under_a_new_one():
    from ast_cli.readback import Expect, scan_json

    line = '{"path": "a.wav", "duration_s": 1.0, "labels": []}'
    scan = scan_json('[{"pa\n' + line + ",\n" + line.replace("a.wav", "b.wav")[:-5], Expect(ordered=False))
    assert scan.names == {"a.wav"} and scan.kept == "[\n" + line and scan.damaged == 1  # b.wav: torn
    assert json.loads(scan.kept + "\n]") == [json.loads(line)]
