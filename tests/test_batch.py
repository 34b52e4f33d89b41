"""`ast batch` end to end: a generated tree of a few hundred files (mixed formats, rates, channels,
nested folders, corrupt files, awkward names), every format, equality with `ast tag`, resume after
SIGINT and SIGKILL of a real process, shards, streaming into a pipe."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import run, tone

from ast_cli.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["plain", "with space", "comma, here", 'quote "q"', "ünïcödé 音", "semi;colon"]
FORMATS = [
    ("wav", "PCM_16"),
    ("flac", "PCM_16"),
    ("ogg", "VORBIS"),
    ("wav", "FLOAT"),
    ("mp3", "MPEG_LAYER_III"),
    ("opus", "OPUS"),
]
RATES = [8000, 16000, 22050, 44100]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """~300 short clips in nested folders; 4 corrupt files; a hidden file and a text file to skip."""
    root = tmp_path_factory.mktemp("collection")
    rng = np.random.default_rng(0)
    good = []
    for i in range(296):
        ext, subtype = FORMATS[i % len(FORMATS)]
        sr = 48000 if ext == "opus" else RATES[(i // len(FORMATS)) % len(RATES)]  # opus: 8/12/16/24/48 kHz only
        channels = 1 + (i % 3 == 0)
        folder = root / f"set{i % 5}" / (f"sub{i % 3}" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{NAMES[i % len(NAMES)]} {i:03d}.{ext}"
        fmt = "OGG" if ext == "opus" else None
        sf.write(
            path,
            tone(rng.uniform(0.15, 0.45), sr, channels, freq=float(rng.uniform(200, 3000)), seed=i),
            sr,
            subtype=subtype,
            format=fmt,
        )
        good.append(path)
    bad = []
    for i, payload in enumerate([b"", b"RIFF\x00\x00", b"this is not audio at all" * 20, os.urandom(3000)]):
        path = root / "set0" / f"broken {i}.wav"
        path.write_bytes(payload)
        bad.append(path)
    (root / "set1" / ".hidden.wav").write_bytes(b"x")
    (root / "set1" / "notes.txt").write_text("not audio")
    return root, sorted(good), sorted(bad)


def ast_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "ast_cli", *map(str, args)]


def jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_whole_tree_to_csv_goes_past_bad_files(capsys, tree, tiny_model_dir, tmp_path):
    root, good, bad = tree
    out = tmp_path / "tags.csv"
    code, stdout, err = run(capsys, "batch", root, "-o", out, "-m", tiny_model_dir, "--workers", "2", "-q")
    assert code == 1 and stdout == ""  # some file failed; nothing but results on stdout (here: a file)
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    paths = [r["path"] for r in rows]
    assert paths == sorted(paths, key=lambda p: Path(p).relative_to(root).parts)  # the sorted walk
    by_path = {r["path"]: r for r in rows}
    assert set(by_path) == {str(p) for p in good + bad}  # every file exactly once, hidden/text skipped
    assert all(by_path[str(p)]["error"] for p in bad)
    assert not any(by_path[str(p)]["error"] for p in good)
    assert all(by_path[str(p)]["label_1"] and 0 <= float(by_path[str(p)]["score_1"]) <= 1 for p in good)
    assert "300 tagged" not in err and "296 tagged, 4 failed, 2 skipped" in err
    assert err.count("ast: error:") == 4 and all(str(p) in err for p in bad)


def test_order_is_the_sorted_walk_and_unordered_has_the_same_records(capsys, tree, tiny_model_dir, tmp_path):
    root, good, _ = tree
    folder = root / "set2"
    _, ordered, _ = run(capsys, "batch", folder, "-o", "-", "-m", tiny_model_dir, "--workers", "2", "-q")
    _, loose, _ = run(capsys, "batch", folder, "-o", "-", "-m", tiny_model_dir, "--workers", "2", "--unordered", "-q")
    paths = [json.loads(line)["path"] for line in ordered.splitlines()]
    expected = []
    for dirpath, dirs, files in os.walk(folder):
        dirs.sort()
        expected += [os.path.join(dirpath, f) for f in files]
    assert sorted(paths) == sorted(expected)
    # sorted walk: a folder's files by name, sub-folders where their names sort
    assert paths == sorted(paths, key=lambda p: Path(p).relative_to(folder).parts)
    assert sorted(loose.splitlines()) == sorted(ordered.splitlines())


@pytest.mark.parametrize("workers", ["0", "2"])
def test_scores_equal_ast_tag(capsys, tree, tiny_model_dir, workers):
    root, good, _ = tree
    files = good[:24:3] + good[-3:]
    common = ["-m", tiny_model_dir, "--top", "0", "--timeline", "-f", "jsonl", "--precision", "fp32"]
    # batch size 1: the same matrix products as `ast tag`, so the same numbers to the last digit
    _, tagged, _ = run(capsys, "tag", *files, *common, "--batch-size", "1")
    _, batched, _ = run(capsys, "batch", *files, "-o", "-", *common, "--batch-size", "1", "--workers", workers)
    assert batched == tagged
    # windows of several files in one batch: equal to within the last reported digit
    _, shared, _ = run(capsys, "batch", *files, "-o", "-", *common, "--batch-size", "7", "--workers", workers)
    for a, b in zip(map(json.loads, tagged.splitlines()), map(json.loads, shared.splitlines()), strict=True):
        assert a["path"] == b["path"] and a["duration_s"] == b["duration_s"]
        sa = {x["index"]: x["score"] for x in a["labels"]}
        sb = {x["index"]: x["score"] for x in b["labels"]}
        assert sa.keys() == sb.keys() and max(abs(sa[k] - sb[k]) for k in sa) <= 2e-6


def test_long_recording_windows_equal_tag(capsys, tiny_model_dir, wav):
    path = wav(9.3, 44100, 2, name="long.wav")
    common = [
        "-m",
        tiny_model_dir,
        "--timeline",
        "--hop",
        "0.4",
        "-f",
        "json",
        "--precision",
        "fp32",
        "--batch-size",
        "1",
    ]
    _, tagged, _ = run(capsys, "tag", path, *common)
    _, batched, _ = run(capsys, "batch", path, "-o", "-", *common, "--workers", "1")
    assert json.loads(batched) == json.loads(tagged)
    assert len(json.loads(batched)[0]["windows"]) > 10


def test_every_format(capsys, tree, tiny_model_dir, tmp_path):
    root, good, bad = tree
    files = [good[0], good[1], bad[2]]
    common = ["-m", tiny_model_dir, "--top", "2", "--workers", "0", "-q"]
    for ext in ("csv", "tsv", "json", "jsonl"):
        out = tmp_path / f"t.{ext}"
        code, _, _ = run(capsys, "batch", *files, "-o", out, *common)
        assert code == 1
        text = out.read_text(encoding="utf-8")
        if ext == "json":
            records = json.loads(text)
        elif ext == "jsonl":
            records = [json.loads(x) for x in text.splitlines()]
        else:
            rows = list(csv.DictReader(io.StringIO(text), delimiter="," if ext == "csv" else "\t"))
            assert list(rows[0]) == ["path", "duration_s", "label_1", "score_1", "label_2", "score_2", "error"]
            records = [{"path": r["path"], "error": r["error"]} for r in rows]
        assert [r["path"] for r in records] == [str(f) for f in files]
        assert bool(records[2].get("error")) and not records[0].get("error")
        settings = json.loads(Path(f"{out}.ast.json").read_text())["settings"]
        assert settings["format"] == ext and settings["top"] == 2
    code, _, err = run(capsys, "batch", good[0], "-o", tmp_path / "t.xyz", *common)
    assert code == 2 and "--format" in err


def test_all_scores_timeline_and_merge(capsys, tiny_model_dir, wav, tmp_path):
    path = wav(4.0, name="a.wav")
    common = ["-m", tiny_model_dir, "--workers", "0", "-q"]
    code, out, _ = run(capsys, "batch", path, "-o", "-", "-f", "csv", "--all-scores", *common)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["path", "duration_s", "Speech", "Music", "Dog", "Rain", "Siren", "error"]
    code, out, _ = run(capsys, "batch", path, "-o", "-", "-f", "jsonl", "--all-scores", "--timeline", *common)
    record = json.loads(out)
    assert set(record["scores"]) == {"Speech", "Music", "Dog", "Rain", "Siren"}
    assert max(record["scores"].values()) == record["labels"][0]["score"]
    for w in record["windows"]:
        assert w["labels"][0]["score"] == max(w["scores"].values())
    code, out, _ = run(capsys, "batch", path, "-o", "-", "-f", "csv", "--timeline", *common)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(record["windows"]) and list(rows[0])[:3] == ["path", "start_s", "end_s"]
    code, out, _ = run(capsys, "batch", path, "-o", "-", "-f", "jsonl", "--merge", "--top", "1", *common)
    record = json.loads(out)
    # one label tops every window here or several do: events cover the windows without gaps per label
    assert record["events"] and all(e["start_s"] < e["end_s"] for e in record["events"])
    tops = [w["labels"][0]["label"] for w in record["windows"]]
    runs = 1 + sum(a != b for a, b in pairwise(tops))
    assert len(record["events"]) == runs


def test_audacity_label_tracks(capsys, tree, tiny_model_dir, tmp_path):
    root, good, bad = tree
    out = tmp_path / "labels"
    code, _, _ = run(
        capsys,
        "batch",
        good[0],
        bad[1],
        "-o",
        out,
        "-f",
        "audacity",
        "-m",
        tiny_model_dir,
        "--top",
        "2",
        "--workers",
        "0",
        "-q",
    )
    assert code == 1
    tracks = list(out.rglob("*.txt"))
    assert len(tracks) == 1 and tracks[0].name == good[0].name + ".txt"
    for line in tracks[0].read_text(encoding="utf-8").splitlines():
        start, end, label = line.split("\t")
        assert 0 <= float(start) < float(end) and label
    assert json.loads((out / "errors.jsonl").read_text(encoding="utf-8"))["path"] == str(bad[1])


def test_relative_paths_files_from_stdin_and_dedup(capsys, tree, tiny_model_dir, tmp_path, monkeypatch):
    root, good, _ = tree
    folder = root / "set3"
    code, out, _ = run(
        capsys, "batch", folder, folder, "-o", "-", "--relative", "-m", tiny_model_dir, "--workers", "0", "-q"
    )
    paths = [json.loads(x)["path"] for x in out.splitlines()]
    assert len(paths) == len(set(paths)) and all(not p.startswith(str(root)) and (folder / p).exists() for p in paths)
    listing = "\n".join(map(str, good[:5])) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(listing))
    code, out, _ = run(capsys, "batch", "--files-from", "-", "-o", "-", "-m", tiny_model_dir, "--workers", "0", "-q")
    assert code == 0 and [json.loads(x)["path"] for x in out.splitlines()] == [str(p) for p in good[:5]]


def test_glob_and_ext_and_no_recursive(capsys, tree, tiny_model_dir):
    root, good, _ = tree
    code, out, _ = run(
        capsys, "batch", str(root / "**" / "*.flac"), "-o", "-", "-m", tiny_model_dir, "--workers", "0", "-q"
    )
    flacs = [json.loads(x)["path"] for x in out.splitlines()]
    assert code == 0 and flacs == sorted(str(p) for p in good if p.suffix == ".flac")
    code, out, _ = run(capsys, "batch", root, "--ext", "ogg", "-o", "-", "-m", tiny_model_dir, "--workers", "0", "-q")
    assert sorted(json.loads(x)["path"] for x in out.splitlines()) == sorted(str(p) for p in good if p.suffix == ".ogg")
    code, out, err = run(capsys, "batch", root / "set4", "--no-recursive", "-o", "-", "-m", tiny_model_dir, "-q")
    assert all(Path(json.loads(x)["path"]).parent == root / "set4" for x in out.splitlines())
    code, out, err = run(capsys, "batch", root, "--ext", "aiff", "-o", "-", "-m", tiny_model_dir, "-q")
    assert code == 2 and "no audio files" in err


def test_shards_partition_the_collection(capsys, tree, tiny_model_dir, tmp_path):
    root, good, bad = tree
    seen = []
    for k in range(3):
        out = tmp_path / f"part-{k}.jsonl"
        run(capsys, "batch", root, "-o", out, "--shard", f"{k}/3", "-m", tiny_model_dir, "--workers", "1", "-q")
        seen.append({r["path"] for r in jsonl(out)})
    assert sum(map(len, seen)) == len(good) + len(bad)  # no overlap
    assert set().union(*seen) == {str(p) for p in good + bad}  # nothing lost
    assert all(len(s) > 50 for s in seen)  # a hash, not the order: roughly even
    code, _, err = run(capsys, "batch", root, "-o", "-", "--shard", "3/3", "-m", tiny_model_dir)
    assert code == 2 and "0 to N-1" in err


def test_existing_output_needs_resume_or_force(capsys, tree, tiny_model_dir, tmp_path):
    root, good, _ = tree
    out = tmp_path / "t.jsonl"
    common = [good[0], good[1], "-o", out, "-m", tiny_model_dir, "--workers", "0", "-q"]
    assert run(capsys, "batch", *common)[0] == 0
    code, _, err = run(capsys, "batch", *common)
    assert code == 2 and "--resume" in err and "--force" in err
    code, _, err = run(capsys, "batch", *common, "--resume", "--top", "3")
    assert code == 2 and "top 5 -> 3" in err
    code, _, err = run(capsys, "batch", *common, "--resume")
    assert code == 0 and "2 already in the output" in err and len(jsonl(out)) == 2
    assert run(capsys, "batch", *common, "--force", "--top", "1")[0] == 0
    assert [len(r["labels"]) for r in jsonl(out)] == [1, 1]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_resume_after_a_torn_tail(capsys, tree, tiny_model_dir, tmp_path, fmt):
    """What a SIGKILL in the middle of a write would leave: the torn record is dropped and redone."""
    root, good, _ = tree
    files = good[:6]
    out = tmp_path / f"t.{fmt}"
    common = ["-o", out, "-m", tiny_model_dir, "--workers", "0", "-q", "--top", "2"]
    run(capsys, "batch", *files, *common)
    full = out.read_bytes()
    run(capsys, "batch", *files[:3], *common, "--force")
    partial = out.read_bytes()
    if fmt == "json":
        partial = partial[: partial.rindex(b"\n]")]  # killed: the array was never closed
    out.write_bytes(partial + full[len(partial) : len(partial) + 17])  # and half a record follows
    code, _, err = run(capsys, "batch", *files, *common, "--resume")
    assert code == 0 and "3 already in the output" in err
    assert out.read_bytes() == full


def wait_for_records(path: Path, n: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        assert proc.poll() is None, "finished before it could be stopped"
        time.sleep(0.05)
    raise AssertionError("no progress")


@pytest.mark.slow
@pytest.mark.parametrize("sig,fmt", [(signal.SIGINT, "json"), (signal.SIGKILL, "jsonl"), (signal.SIGTERM, "csv")])
def test_stopped_run_resumes_with_every_file_once(tree, tiny_model_dir, tmp_path, sig, fmt):
    root, good, bad = tree
    good, bad = [p for p in good if "set0" in p.parts], [p for p in bad if "set0" in p.parts]
    out = tmp_path / f"tags.{fmt}"
    cmd = ast_cmd("batch", root / "set0", "-o", out, "-m", tiny_model_dir, "--workers", "1", "--batch-size", "1", "-q")
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    wait_for_records(out, 12, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    stopped = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}.get(sig)
    if stopped:  # one line, as README's exit status table shows it: how far it got, then the counts
        assert proc.returncode == {"interrupted": 130, "terminated": 143}[stopped]
        said = err.splitlines()  # each broken file's error, then the stop
        assert all(line.startswith("ast: error: ") for line in said[:-1]), err
        assert re.fullmatch(rf"ast: {stopped} after \d+(?: of \d+)? file\(s\): .*", said[-1]), err
    else:
        assert proc.returncode == -signal.SIGKILL
    if sig == signal.SIGINT:
        assert json.loads(out.read_text(encoding="utf-8"))  # the array was closed: valid JSON
    done = subprocess.run([*cmd, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr  # 1 if a broken file was left
    if fmt == "json":
        paths = [r["path"] for r in json.loads(out.read_text(encoding="utf-8"))]
    elif fmt == "jsonl":
        paths = [r["path"] for r in jsonl(out)]
    else:
        paths = [r["path"] for r in csv.DictReader(out.open(encoding="utf-8", newline=""))]
    assert sorted(paths) == sorted(str(p) for p in good + bad)  # every file exactly once


@pytest.mark.slow
def test_streams_into_a_pipe_as_files_finish(tree, tiny_model_dir):
    """The first record reaches the reader long before the run ends; a closed pipe ends it quietly."""
    root, good, _ = tree
    proc = subprocess.Popen(
        ast_cmd("batch", root, "-o", "-", "-m", tiny_model_dir, "--workers", "1", "--batch-size", "1"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = json.loads(proc.stdout.readline())
    assert first["path"].startswith(str(root))
    assert proc.poll() is None  # still running: records are streamed, not held until the end
    proc.stdout.close()  # like `| head -1`
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and "Traceback" not in err and "BrokenPipe" not in err


def test_dead_worker_fails_only_its_files(tiny_model_dir, wav):
    """A decode worker killed by the system (out of memory) costs its files, not the run."""
    from ast_cli.checkpoints import load
    from ast_cli.inference import Tagger, TagOptions
    from ast_cli.workers import WorkerPool

    spec = Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="fp32")).window_spec(TagOptions())
    pool = WorkerPool(spec, 1)
    try:
        path = str(wav(60.0, name="long.wav"))
        pool.submit(0, path)
        while (message := pool.get(block=True)) is None:  # the worker is starting
            pass
        assert message[0] == "w"  # it is decoding
        os.kill(pool.workers[0].process.pid, signal.SIGKILL)
        message = pool.get(block=True)
        while message is None or message[0] == "w":  # chunks it sent before it died, then its end
            message = pool.get(block=True)
        assert message[:2] == ("e", 0) and "decoder process died" in message[2]
        pool.submit(1, str(wav(0.5, name="short.wav")))  # the replacement takes new work
        kinds = []
        while "d" not in kinds:
            m = pool.get(block=True)
            kinds += [m[0]] if m and m[1] == 1 else []
        assert kinds[-2:] == ["w", "d"]
    finally:
        pool.close()


def test_summary_of_a_run_that_read_nothing_gives_no_rate():
    """--resume on a finished output: no '0.00 files/s, 0x real time'."""
    from ast_cli.batch import Summary

    assert Summary(resumed=150, seconds=0.4).line() == "0 tagged, 0 failed, 150 already in the output; 0.4 s"
    busy = Summary(tagged=3, audio_s=30.0, seconds=2.0).line()
    assert busy == "3 tagged, 0 failed; 2.0 s, 1.50 files/s, 15x real time"


@pytest.mark.slow
def test_with_workers_records_stream_and_a_kill_loses_only_the_files_in_flight(tiny_model_dir, tmp_path):
    """--workers 2: records reach the output while the run goes on (they used to wait for the end,
    when one worker starved the other), and after SIGKILL --resume adds each missing file exactly once."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(300):
        sf.write(folder / f"f{i:03d}.wav", tone(0.3, seed=i), 16000)
    out = tmp_path / "out.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "ast_cli",
        "batch",
        str(folder),
        "-o",
        str(out),
        "-m",
        str(tiny_model_dir),
        "--workers",
        "2",
        "-q",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 10:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before records appeared: records were held back"
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = out.read_bytes().count(b"\n")
    assert 10 <= kept < 300
    assert subprocess.run([*cmd, "--resume"], capture_output=True).returncode == 0
    paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir()) and len(paths) == 300


@pytest.mark.slow
def test_the_worker_holding_the_oldest_file_is_read_first(tiny_model_dir, wav):
    """Both workers have a message waiting at every read: files still finish in input order (0, 1, 2,
    3). Reading whichever worker came first in the list gave 0, 2, 1, 3 and worse: a worker that was
    always ready starved the other, and in-order output waited on it until the end of the run."""
    from ast_cli.checkpoints import load
    from ast_cli.inference import Tagger, TagOptions
    from ast_cli.workers import WorkerPool

    spec = Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="fp32")).window_spec(TagOptions())
    pool = WorkerPool(spec, 2)
    try:
        for seq in range(4):  # 0 and 2 go to one worker, 1 and 3 to the other
            pool.submit(seq, str(wav(0.5, name=f"c{seq}.wav", seed=seq)))
        done = []
        while len(done) < 4:
            time.sleep(0.3)  # let both workers have their next message ready
            message = pool.get(block=True)
            if message is not None and message[0] in ("d", "e"):
                done.append(message[1])
        assert done == [0, 1, 2, 3]
    finally:
        pool.close()


def test_the_output_is_never_one_of_the_inputs(capsys, tiny_model_dir, tmp_path):
    """Refused before anything is opened for writing, --force or not; an input audio file stays whole."""
    folder = tmp_path / "sounds"
    folder.mkdir()
    sf.write(folder / "a.wav", tone(0.5), 16000)
    size = (folder / "a.wav").stat().st_size
    for out, fmt in (
        (folder / "a.wav", "jsonl"),
        (folder / "new.wav", "jsonl"),
        (folder, "audacity"),
        (folder / "labels", "audacity"),
    ):
        code, outp, err = run(capsys, "batch", folder, "-o", out, "--format", fmt, "--force", "-m", tiny_model_dir)
        assert code == 2 and "input" in err and err.count("\n") == 1, err
    assert (folder / "a.wav").stat().st_size == size and not (folder / "new.wav").exists()
    listing = tmp_path / "list.txt"
    out = tmp_path / "out.jsonl"
    listing.write_text(f"{folder / 'a.wav'}\n{out}\n")
    code, _, err = run(capsys, "batch", "--files-from", listing, "-o", out, "--force", "-m", tiny_model_dir, "-q")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 1 and [r.get("error", "") for r in records][1].endswith("is this run's output, not read")
    # an output that exists is compared with every listed path before it is opened (tests/test_targets.py)
    code, _, err = run(capsys, "batch", "--files-from", listing, "-o", out, "--force", "-m", tiny_model_dir, "-q")
    assert code == 2 and "the output is the input" in err and out.read_text().count("\n") == 2


def test_a_second_writer_of_the_same_output_stops_at_once(capsys, tiny_model_dir, tmp_path):
    import fcntl

    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "a.wav", tone(0.5), 16000)
    out = tmp_path / "out.jsonl"
    assert run(capsys, "batch", folder, "-o", out, "-m", tiny_model_dir, "-q")[0] == 0
    before = out.read_bytes()
    with open(out, "ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as a running ast batch holds it
        for flag in ("--resume", "--force"):
            code, _, err = run(capsys, "batch", folder, "-o", out, flag, "-m", tiny_model_dir)
            assert code == 2 and "another ast batch is writing this output" in err, err
    assert out.read_bytes() == before  # --force did not cut it


def test_resume_keeps_whole_records_only(capsys, tiny_model_dir, tmp_path):
    """A blank or broken line inside a jsonl output is reported and its file tagged again (with the
    records after it, which keeps input order); a --timeline CSV keeps only whole files."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        sf.write(folder / f"{i}.wav", tone(3.0, seed=i), 16000)
    out = tmp_path / "out.jsonl"
    assert run(capsys, "batch", folder, "-o", out, "-m", tiny_model_dir, "-q")[0] == 0
    lines = out.read_text().splitlines()
    out.write_text("\n".join([lines[0], "", lines[1][:20], *lines[2:]]) + "\n")  # a blank line and a broken one
    code, _, err = run(capsys, "batch", folder, "-o", out, "-m", tiny_model_dir, "--resume", "-q")
    assert code == 0 and "2 damaged line(s) left out" in err
    paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir())
    csv_out = tmp_path / "t.csv"
    assert run(capsys, "batch", folder, "-o", csv_out, "-m", tiny_model_dir, "--timeline", "-q")[0] == 0
    rows = csv_out.read_text().splitlines()
    csv_out.write_text("\n".join(rows[:-2]) + "\n")  # the last file's rows cut short (a full disk)
    assert run(capsys, "batch", folder, "-o", csv_out, "-m", tiny_model_dir, "--timeline", "--resume", "-q")[0] == 0
    again = list(csv.DictReader(io.StringIO(csv_out.read_text())))
    per_file = {p: sum(r["path"] == p for r in again) for p in {r["path"] for r in again}}
    assert len(per_file) == 4 and len(set(per_file.values())) == 1  # every file with all its window rows


# -- --resume keeps only what it verified ---------------------------------------------------------------
CLIPS = [(0.3, 8000), (1.28, 16000), (1.9, 22050), (2.6, 44100), (3.33, 16000), (4.0, 8000)]  # (s, Hz)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Six clips of other lengths and rates: one shorter than the tiny model's 1.28-s window, one of
    exactly a window, the others with an end-aligned last window."""
    folder = tmp_path_factory.mktemp("clips")
    for i, (seconds, sr) in enumerate(CLIPS):
        sf.write(folder / f"{i}.wav", tone(seconds, sr, seed=i), sr)
    return folder


def rows_of(lines: list[str], name: str) -> list[int]:
    """The indices of the CSV/TSV lines of clip ``name`` (e.g. "4.wav")."""
    return [i for i, line in enumerate(lines) if f"{name}," in line or f"{name}\t" in line]


def line_of(lines: list[str], name: str) -> int:
    """The index of the first line of clip ``name``."""
    return next(i for i, line in enumerate(lines) if any(f"{name}{end}" in line for end in '",\t'))


def edit_record(line: str, change) -> str:
    """A JSON line (of JSON Lines, or of an array, its comma kept) with ``change(record)`` applied."""
    comma = "," if line.endswith(",") else ""
    record = json.loads(line.removesuffix(","))
    change(record)
    return json.dumps(record, ensure_ascii=False) + comma


def duplicate_line(lines, name):  # the first case: 7 records for 6 files
    return [*lines[:-1], lines[line_of(lines, name)], lines[-1]]


def drop_middle_row(lines, name):  # the second case: a timeline with a middle row deleted
    rows = rows_of(lines, name)
    return [line for i, line in enumerate(lines) if i != rows[len(rows) // 2]]


def widen_row(lines, name):
    i = rows_of(lines, name)[-1]
    return [*lines[:i], lines[i] + lines[i][-1:] + "x", *lines[i + 1 :]]


def split_line(lines, name):
    i = line_of(lines, name)
    return [*lines[:i], lines[i][:30], lines[i][30:], *lines[i + 1 :]]


def text_score(lines, name):
    i = line_of(lines, name)
    return [*lines[:i], edit_record(lines[i], lambda r: r["labels"][0].update(score="high")), *lines[i + 1 :]]


def nan_score(lines, name):
    i = line_of(lines, name)
    return [*lines[:i], lines[i].replace('"score": ', '"score": NaN, "was": ', 1), *lines[i + 1 :]]


def missing_key(lines, name):
    i = line_of(lines, name)
    return [*lines[:i], edit_record(lines[i], lambda r: r.pop("labels")), *lines[i + 1 :]]


def drop_window(lines, name, which=1):
    i = line_of(lines, name)
    return [*lines[:i], edit_record(lines[i], lambda r: r["windows"].pop(which)), *lines[i + 1 :]]


def drop_last_window(lines, name):
    return drop_window(lines, name, -1)


def no_closing_bracket(lines, name):  # and a blank line inside: dropped, no record lost
    i = line_of(lines, name)
    return [*lines[:i], "", *lines[i:-2]]


def blank_label(lines, name):
    i = rows_of(lines, name)[0]
    cells = lines[i].split(",")
    return [*lines[:i], ",".join([*cells[:3], "", *cells[4:]]), *lines[i + 1 :]]


DAMAGE = [  # (format, flags, damage, clip, what the warning says)
    ("jsonl", [], duplicate_line, "2.wav", "1 duplicate record(s) left out (the first kept)"),
    ("csv", ["--timeline"], drop_middle_row, "4.wav", "1 record(s) with missing or misplaced windows"),
    ("tsv", ["--timeline"], widen_row, "3.wav", "damaged line(s) left out"),
    ("csv", [], duplicate_line, "1.wav", "1 duplicate record(s) left out"),
    ("tsv", ["--all-scores"], widen_row, "3.wav", "1 damaged line(s) left out"),
    ("csv", ["--merge", "--threshold", "0"], blank_label, "2.wav", "damaged line(s) left out"),
    ("json", [], duplicate_line, "3.wav", "1 duplicate record(s) left out"),
    ("json", ["--top", "2"], text_score, "2.wav", "1 damaged line(s) left out"),
    ("json", [], no_closing_bracket, "2.wav", "1 damaged line(s) left out"),
    ("jsonl", [], split_line, "1.wav", "2 damaged line(s) left out"),
    ("jsonl", [], nan_score, "3.wav", "1 damaged line(s) left out"),
    ("jsonl", ["--all-scores"], missing_key, "2.wav", "1 damaged line(s) left out"),
    ("jsonl", ["--timeline"], drop_window, "4.wav", "1 record(s) with missing or misplaced windows"),
    ("json", ["--timeline"], drop_last_window, "5.wav", "1 record(s) with missing or misplaced windows"),
    ("json", ["--merge"], drop_window, "3.wav", "1 record(s) with missing or misplaced windows"),
]


@pytest.mark.parametrize("fmt,flags,damage,clip,said", DAMAGE, ids=lambda x: getattr(x, "__name__", None))
def test_resume_of_a_damaged_output_gives_each_input_once_whole_and_in_order(
    capsys, clips, tiny_model_dir, tmp_path, fmt, flags, damage, clip, said
):
    """Whatever was damaged inside an output (a duplicated record, a lost timeline row, a row of the
    wrong width, a field of the wrong type, NaN, a line split in two, no closing bracket), --resume
    says so in one warning (-q keeps it) and ends with what a clean run writes: every input once,
    whole, in input order."""
    out = tmp_path / f"tags.{fmt}"
    common = [clips, "-o", out, "-m", tiny_model_dir, "--workers", "0", "-q", *flags]
    assert run(capsys, "batch", *common)[0] == 0
    clean = out.read_text(encoding="utf-8")
    out.write_text("\n".join(damage(clean.split("\n"), clip)), encoding="utf-8")
    code, _, err = run(capsys, "batch", *common, "--resume")
    warnings = [line for line in err.splitlines() if line.startswith("ast: warning:")]
    assert code == 0 and len(warnings) == 1 and str(out) in warnings[0] and said in warnings[0], err
    assert out.read_text(encoding="utf-8") == clean


def test_resume_unordered_keeps_the_records_after_the_damage(capsys, clips, tiny_model_dir, tmp_path):
    """With --unordered, only the damaged record's file is tagged again (appended): each input once."""
    out = tmp_path / "tags.jsonl"
    common = [clips, "-o", out, "-m", tiny_model_dir, "--workers", "0", "-q"]
    assert run(capsys, "batch", *common)[0] == 0
    clean = out.read_text(encoding="utf-8").split("\n")
    out.write_text("\n".join(split_line(clean, "1.wav")), encoding="utf-8")
    code, _, err = run(capsys, "batch", *common, "--resume", "--unordered")
    assert code == 0 and "1 tagged" in err and "5 already in the output" in err and "input order" not in err
    assert sorted(out.read_text(encoding="utf-8").split("\n")) == sorted(clean)


def test_resume_of_a_damaged_output_in_order_says_what_it_tags_again(capsys, clips, tiny_model_dir, tmp_path):
    out = tmp_path / "tags.jsonl"
    common = [clips, "-o", out, "-m", tiny_model_dir, "--workers", "0", "-q"]
    assert run(capsys, "batch", *common)[0] == 0
    out.write_text("\n".join(split_line(out.read_text().split("\n"), "1.wav")))
    code, _, err = run(capsys, "batch", *common, "--resume")
    assert "4 record(s) after the first damaged one left out to keep input order" in err
    assert "5 tagged" in err and "1 already in the output" in err


@pytest.mark.parametrize("fmt,flags", [("jsonl", ["--timeline"]), ("json", ["--merge"]), ("csv", []), ("tsv", [])])
def test_resume_keeps_a_whole_output_whole(capsys, clips, tiny_model_dir, tmp_path, fmt, flags):
    """Every record of an undamaged output passes the checks (windows of clips of every length and
    rate included): nothing is said, nothing tagged again; a record of a file no longer among the
    inputs stays."""
    out = tmp_path / f"tags.{fmt}"
    common = ["-o", out, "-m", tiny_model_dir, "--workers", "0", "-q", *flags]
    assert run(capsys, "batch", clips, *common)[0] == 0
    clean = out.read_bytes()
    code, _, err = run(capsys, "batch", *sorted(clips.iterdir())[1:], *common, "--resume")
    assert code == 0 and "warning" not in err and "0 tagged" in err and "5 already in the output" in err
    assert out.read_bytes() == clean
