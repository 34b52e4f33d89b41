"""One line an event on stderr, whoever speaks: ffmpeg and ffprobe (child programs), libmpg123 inside
libsndfile (C code writing on file descriptor 2), Python warnings in decode workers, DataLoader workers
whose parent was killed. Real processes: what reaches the terminal is what the test reads."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import tone

from ast_cli.chatter import child_line

ROOT = Path(__file__).resolve().parents[1]
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def ast(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ast_cli", *map(str, args)], input=stdin, capture_output=True, cwd=ROOT, timeout=300
    )


@pytest.fixture(scope="module")
def mp3s(tmp_path_factory) -> dict[str, Path]:
    """A whole MP3 (its Xing header says 3 s), the same cut after 3000 bytes, and random bytes."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg to write an MP3")
    folder = tmp_path_factory.mktemp("mp3")
    sf.write(folder / "tone.wav", tone(3.0), 16000)
    whole = folder / "whole.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-i", folder / "tone.wav", "-b:a", "64k", whole], check=True)
    (folder / "cut.mp3").write_bytes(whole.read_bytes()[:3000])
    (folder / "garbage.mp3").write_bytes(np.random.default_rng(0).bytes(20000))
    return {p.stem: p for p in folder.glob("*.mp3")}


def lines(err: bytes) -> list[str]:
    return err.decode(errors="replace").splitlines()


@needs_ffmpeg
@pytest.mark.parametrize("on_stdin", [True, False], ids=["stdin", "file"])
def test_a_cut_mp3_is_one_warning_without_libmpg123s_notes(mp3s, tiny_model_dir, on_stdin):
    """libmpg123 printed 'Warning: Xing stream size off by more than 1%...' on fd 2 before our line."""
    path = mp3s["cut"]
    done = ast("tag", "-" if on_stdin else path, "-m", tiny_model_dir, stdin=path.read_bytes() if on_stdin else None)
    name = "-" if on_stdin else str(path)
    assert done.returncode == 0 and lines(done.stderr) == [
        f"ast: warning: {name}: cut short or damaged (its header says 3.00 s): 0.25 s decoded, the audio that is there"
    ], done.stderr


@needs_ffmpeg
def test_libmpg123s_notes_are_there_with_debug(mp3s, tiny_model_dir):
    done = ast("tag", mp3s["cut"], "-m", tiny_model_dir, "--debug")
    assert any(line.startswith("ast: debug: ") and "libsndfile: " in line for line in lines(done.stderr))


@needs_ffmpeg
@pytest.mark.parametrize("on_stdin", [True, False], ids=["stdin", "file"])
def test_garbage_is_one_line_naming_the_input_not_a_temporary_file(mp3s, tiny_model_dir, on_stdin):
    """ffmpeg's 'pipe:0: Invalid data...' or '/tmp/ast-stdin-...: Invalid data...' is folded into our line."""
    path = mp3s["garbage"]
    done = ast("tag", "-" if on_stdin else path, "-m", tiny_model_dir, stdin=path.read_bytes() if on_stdin else None)
    said = lines(done.stderr)
    name = "-" if on_stdin else str(path)
    assert done.returncode == 1 and len(said) == 1, said
    assert said[0].startswith(f"ast: error: {name}: cannot decode audio (libsndfile: Format not recognised; ffmpeg: ")
    assert "ast-stdin" not in said[0] and tempfile.gettempdir() + "/" not in said[0].replace(str(path), "")


@needs_ffmpeg
def test_garbage_in_listen_is_ffmpegs_reason_in_one_line(mp3s, tiny_model_dir):
    done = ast("listen", "-", "-m", tiny_model_dir, stdin=mp3s["garbage"].read_bytes())
    said = lines(done.stderr)
    assert done.returncode == 1 and len(said) == 1, said
    assert said[0].startswith("ast: error: -: ffmpeg could not decode standard input (Invalid data found"), said


@needs_ffmpeg
def test_a_decode_workers_warning_is_one_line(mp3s, tiny_model_dir, tmp_path):
    """Python's own format in a worker process is two lines: 'cuts.py:77: UserWarning: ...' and the code."""
    sf.write(tmp_path / "a.wav", tone(2.0), 16000)
    done = ast("batch", mp3s["cut"], tmp_path / "a.wav", "-o", "-", "-m", tiny_model_dir, "--workers", "1", "-q")
    said = lines(done.stderr)
    assert done.returncode == 0 and all(line.startswith("ast: ") for line in said), said
    assert sum("cut short or damaged" in line for line in said) == 1, said


def test_child_line_is_the_last_line_without_tags_or_temporary_names():
    err = b"[mp3 @ 0x55d0c0] Header missing\n[mp3float @ 0x55d0c1] /tmp/ast-stdin-x1: Invalid data\n\n"
    assert child_line(err, {"/tmp/ast-stdin-x1": "-"}) == "Invalid data"
    assert child_line("pipe:0: Invalid data found when processing input\n", {"pipe:0": "-"}) == (
        "Invalid data found when processing input"
    )
    assert child_line("opened /tmp/ast-stdin-x1 and gave up", {"/tmp/ast-stdin-x1": "-"}) == "opened - and gave up"
    assert len(child_line("x" * 1000)) == 200 and child_line("") == ""


ORPHAN = """
import functools, os, sys, time
import torch
from ast_cli.chatter import die_with_parent

class Slow(torch.utils.data.Dataset):
    def __len__(self):
        return 10**6
    def __getitem__(self, i):
        time.sleep(0.01)
        return torch.zeros(4096)

loader = torch.utils.data.DataLoader(
    Slow(), batch_size=4, num_workers=2, worker_init_fn=functools.partial(die_with_parent, os.getpid())
)
batches = iter(loader)
for i, _ in enumerate(batches):
    if i == 2:
        print(" ".join(str(w.pid) for w in batches._workers), flush=True)
        time.sleep(60)  # the workers fill their prefetch, then wait for indices: killed there
"""


def test_dataloader_workers_end_quietly_when_their_parent_is_killed():
    """After a SIGKILL of `ast finetune` an orphaned worker printed a ConnectionResetError traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-c", ORPHAN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        workers = [int(pid) for pid in proc.stdout.readline().split()]
        assert len(workers) == 2
        time.sleep(0.5)  # the workers are waiting for work; torch's watchdog looks at the parent every 5 s
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 3
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers)
        assert proc.stderr.read() == b""  # the workers shared it: nothing from them either
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"  # a zombie has ended
    except OSError:
        return False
