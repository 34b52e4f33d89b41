"""An output is never written over an input (ast_cli/targets.py): every command that writes a file
compares it by identity (st_dev, st_ino, links followed) with what it reads, and writes special files
(/dev/stdout, /proc/self/fd/N, pipes, devices) as streams. Each case the issue reported, with the
input's bytes unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import soundfile as sf
from helpers import run, tone

from ast_cli.errors import UsageError
from ast_cli.inputs import InputSpec
from ast_cli.targets import model_files, refuse_overlap, target

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data(tmp_path):
    """data/f00001.wav and data/sub/f00002.wav; returns data/ and the bytes of f00001.wav."""
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "f00001.wav", tone(0.5), 16000)
    sf.write(folder / "sub" / "f00002.wav", tone(0.5, seed=1), 16000)
    return folder, (folder / "f00001.wav").read_bytes()


def refused(code: int, err: str, *paths) -> bool:
    """Exit 2, one line saying the output is an input, naming every one of ``paths``."""
    one_line = code == 2 and err.count("\n") == 1 and "input" in err
    return one_line and all(str(p) in err for p in paths)


# -- the one check --------------------------------------------------------------------------------
def test_identity_sees_through_links_and_hard_links(tmp_path):
    a = tmp_path / "a.wav"
    a.write_bytes(b"RIFF")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.json").symlink_to(a)
    os.link(a, tmp_path / "hard.csv")
    for out in ("link.json", "hard.csv", "a.wav"):
        with pytest.raises(UsageError, match="the output is the input"):
            refuse_overlap([tmp_path / out], [str(tmp_path / "sub" / ".." / "a.wav")])
    refuse_overlap([tmp_path / "new.csv"], [str(a)])  # nothing there yet: nothing to lose
    refuse_overlap([tmp_path / "a.wav"], ["-"])  # standard input is no file


def test_the_inputs_are_consumed_one_at_a_time():
    """A generator is checked as it goes: it stops at the match, no list is made first."""
    seen = []

    def inputs():
        for name in ("/etc/hostname", __file__, "never-read"):
            seen.append(name)
            yield name

    with pytest.raises(UsageError):
        refuse_overlap([__file__], inputs())
    assert seen == ["/etc/hostname", __file__]


def test_special_files_are_streams(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for name in ("/dev/null", "/dev/stdout", "/proc/self/fd/1", "/dev/fd/2", str(tmp_path / "fifo")):
        assert target(name).stream, name
    assert not target(tmp_path / "x.csv").stream and not target(tmp_path).stream
    refuse_overlap(["/dev/null"], ["/dev/null"])  # a stream is never replaced: nothing to protect
    with pytest.raises(UsageError, match="stream"):
        refuse_overlap(["/dev/null"], [], no_stream="a file is needed")


def test_model_files(tiny_model_dir, tmp_path):
    names = {Path(p).name for p in model_files(str(tiny_model_dir))}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= names
    pth = tmp_path / "m.pth"
    pth.write_bytes(b"")
    assert model_files(str(pth)) == [str(pth), f"{pth}.json"]
    assert model_files("MIT/ast-finetuned-audioset-10-10-0.4593") == []  # the Hub's cache is not written to


def test_a_glob_finds_an_output_it_would_list(data):
    folder, _ = data
    spec = InputSpec(items=[f"{folder}/**/*.wav"])
    assert spec.would_find(str(folder / "new.wav")) == f"{folder}/**/*.wav"  # ** matching no folder
    assert spec.would_find(str(folder / "sub" / "new.wav")) is not None
    assert spec.would_find(str(folder / "new.csv")) is None
    assert spec.would_find(str(folder / ".new.wav")) is None  # glob passes hidden names over


# -- ast batch: each reported case ----------------------------------------------------------------
def test_batch_glob_with_double_star(capsys, tiny_model_dir, data):
    folder, before = data
    out = folder / "f00001.wav"
    code, _, err = run(capsys, "batch", f"{folder}/**/*.wav", "-o", out, "-f", "jsonl", "--force", "-m", tiny_model_dir)
    assert refused(code, err, out) and out.read_bytes() == before, err


def test_batch_glob_through_a_linked_folder(capsys, tiny_model_dir, data, monkeypatch):
    folder, before = data
    monkeypatch.chdir(folder.parent)
    os.symlink("data", "dl1")
    code, _, err = run(
        capsys, "batch", "dl*/*.wav", "-o", "data/f00001.wav", "-f", "csv", "--force", "-m", tiny_model_dir
    )
    assert refused(code, err, "data/f00001.wav", "dl*/*.wav") and (folder / "f00001.wav").read_bytes() == before


def test_batch_files_from(capsys, tiny_model_dir, data, tmp_path):
    folder, before = data
    listing = tmp_path / "list.txt"
    listing.write_text(f"{folder / 'sub' / 'f00002.wav'}\n{folder}/sub/../f00001.wav\n")
    for flag in ("--force", "--resume"):
        code, _, err = run(
            capsys,
            "batch",
            "--files-from",
            listing,
            "-o",
            folder / "f00001.wav",
            "-f",
            "jsonl",
            flag,
            "-m",
            tiny_model_dir,
        )
        assert refused(code, err, folder / "f00001.wav", f"{folder}/sub/../f00001.wav"), err
    assert (folder / "f00001.wav").read_bytes() == before
    assert not Path(f"{folder / 'f00001.wav'}.ast.json").exists()


def test_batch_files_from_stdin(capsys, tiny_model_dir, data, monkeypatch):
    """Standard input is read ahead (to a temporary file) only when the output exists."""
    import io

    folder, before = data
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{folder / 'f00001.wav'}\n"))
    code, _, err = run(
        capsys, "batch", "--files-from", "-", "-o", folder / "f00001.wav", "-f", "json", "--force", "-m", tiny_model_dir
    )
    assert refused(code, err, folder / "f00001.wav") and (folder / "f00001.wav").read_bytes() == before


def test_batch_files_from_stdin_with_an_existing_output_still_tags(capsys, tiny_model_dir, data, monkeypatch, tmp_path):
    import io

    folder, _ = data
    out = tmp_path / "tags.jsonl"
    out.write_text("old\n")
    paths = [folder / "f00001.wav", folder / "sub" / "f00002.wav"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{p}\n" for p in paths)))
    code, _, err = run(capsys, "batch", "--files-from", "-", "-o", out, "--force", "-m", tiny_model_dir, "-q")
    assert code == 0, err
    assert [json.loads(line)["path"] for line in out.read_text().splitlines()] == [str(p) for p in paths]


def test_batch_output_a_link_to_an_input(capsys, tiny_model_dir, data, tmp_path):
    folder, before = data
    link = tmp_path / "tags.jsonl"
    link.symlink_to(folder / "f00001.wav")
    code, _, err = run(capsys, "batch", folder, "-o", link, "--force", "-m", tiny_model_dir)
    assert refused(code, err, link) and (folder / "f00001.wav").read_bytes() == before


def test_batch_output_over_the_model(capsys, tiny_model_dir, data, tmp_path):
    folder, _ = data
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    before = (model / "config.json").read_bytes()
    code, _, err = run(capsys, "batch", folder, "-o", model / "config.json", "--force", "-m", model)
    assert refused(code, err, model / "config.json") and (model / "config.json").read_bytes() == before


def test_batch_a_files_from_line_naming_a_new_output_is_an_error_record(capsys, tiny_model_dir, data, tmp_path):
    """An output that did not exist held nothing to lose: the line that names it is skipped, the rest tagged."""
    folder, _ = data
    out = tmp_path / "out.jsonl"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{folder / 'f00001.wav'}\n{out}\n")
    code, _, _ = run(capsys, "batch", "--files-from", listing, "-o", out, "-m", tiny_model_dir, "-q")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 1 and records[1]["error"].endswith("is this run's output, not read")


@pytest.mark.parametrize("name", ["/dev/stdout", "/proc/self/fd/1"])
def test_batch_into_a_pipe_by_name(tiny_model_dir, data, name):
    folder, before = data
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for extra in ([], ["--force"]):
        args = ["batch", folder / "f00001.wav", "-o", name, "-f", "jsonl", "-m", tiny_model_dir, "-q", *extra]
        cmd = [sys.executable, "-m", "ast_cli", *map(str, args)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["path"] == str(folder / "f00001.wav")
    assert not os.path.lexists(name + ".ast.json") and (folder / "f00001.wav").read_bytes() == before
    cmd = [
        sys.executable,
        "-m",
        "ast_cli",
        "batch",
        str(folder),
        "-o",
        name,
        "-f",
        "jsonl",
        "--resume",
        "-m",
        str(tiny_model_dir),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 2 and "stream" in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_batch_into_a_fifo_gets_no_side_file(capsys, tiny_model_dir, data, tmp_path):
    folder, _ = data
    fifo = tmp_path / "tags.jsonl"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, _, err = run(capsys, "batch", folder, "-o", fifo, "-m", tiny_model_dir, "-q")
    reader.join(60)
    assert code == 0, err
    assert len(got[0].decode().splitlines()) == 2 and fifo.is_fifo()
    assert not Path(f"{fifo}.ast.json").exists()


# -- the other commands that write ----------------------------------------------------------------
def test_embed_over_an_input_with_another_suffix(capsys, tiny_model_dir, tmp_path):
    clip = tmp_path / "clip.npy"  # a WAV under a name embed would write
    sf.write(clip, tone(0.5), 16000, format="WAV")
    before = clip.read_bytes()
    code, _, err = run(capsys, "embed", clip, "-o", clip, "--force", "-m", tiny_model_dir)
    assert refused(code, err, clip) and clip.read_bytes() == before


def test_embed_into_a_fifo(capsys, tiny_model_dir, tmp_path, wav):
    fifo = tmp_path / "emb"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, _, err = run(capsys, "embed", wav(0.5), "-o", fifo, "-m", tiny_model_dir, "-q")
    reader.join(60)
    assert code == 0 and json.loads(got[0])["embedding"] and fifo.is_fifo(), err


def test_export_over_its_model(capsys, tiny_model_dir, tmp_path):
    model = tmp_path / "mm"
    shutil.copytree(tiny_model_dir, model)
    before = (model / "model.safetensors").read_bytes()
    out = model / "model.safetensors"
    code, _, err = run(capsys, "export", model, "-o", out, "--format", "torchscript", "--force")
    assert refused(code, err, out) and out.read_bytes() == before
    code, _, err = run(capsys, "export", model, "-o", model, "--format", "hub", "--force")
    assert refused(code, err, model) and out.read_bytes() == before
    code, _, err = run(capsys, "export", model, "-o", "/dev/null", "--format", "torchscript", "--force")
    assert code == 2 and "stream" in err


def test_finetune_into_its_base(capsys, tiny_model_dir, tmp_path):
    model = tmp_path / "mm"
    shutil.copytree(tiny_model_dir, model)
    before = (model / "model.safetensors").read_bytes()
    (tmp_path / "data" / "a").mkdir(parents=True)
    code, _, err = run(capsys, "finetune", tmp_path / "data", "--base", model, "-o", model, "--force")
    assert refused(code, err, model) and (model / "model.safetensors").read_bytes() == before


def test_eval_plot_over_the_model(capsys, tiny_model_dir, tmp_path):
    model = tmp_path / "mm"
    shutil.copytree(tiny_model_dir, model)
    before = (model / "config.json").read_bytes()
    code, _, err = run(capsys, "eval", tmp_path, "-m", model, "--plot", model / "config.json")
    assert refused(code, err, model / "config.json") and (model / "config.json").read_bytes() == before


def test_stats_write_over_a_clip(capsys, tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    clip = folder / "preprocessor_config.json"  # a clip named like the file --write writes
    sf.write(clip, tone(0.5), 16000, format="WAV")
    before = clip.read_bytes()
    code, _, err = run(capsys, "stats", clip, "--write", folder)
    assert refused(code, err, clip) and clip.read_bytes() == before
