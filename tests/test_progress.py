"""Progress of ast tag: bars of files and of a long file's seconds on stderr at a terminal (a
pseudo-terminal here), nothing in a pipe or with -q; the results on stdout stay whole."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from ast_cli.progress import TagBars

ROOT = Path(__file__).resolve().parents[1]


def _tag(args: list[str], terminal: bool) -> tuple[int, str, str]:
    """``ast tag ARGS`` in a child process, stderr on a pseudo-terminal of 100 columns or on a pipe."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not terminal:
        proc = subprocess.run([sys.executable, "-m", "ast_cli", "tag", *args], capture_output=True, text=True, env=env)
        return proc.returncode, proc.stdout, proc.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # tqdm draws nothing 0 wide
    proc = subprocess.Popen(
        [sys.executable, "-m", "ast_cli", "tag", *args], stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    stdout = proc.stdout.read() if proc.stdout else b""
    chunks = []
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(), stdout.decode(), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def slow_inputs(tmp_path_factory):
    """Two files tagged with a short hop: a few seconds of work, so the bars (shown after 1 s) appear."""
    import soundfile as sf
    from helpers import tone

    folder = tmp_path_factory.mktemp("progress")
    sf.write(folder / "long.wav", tone(60.0, 16000), 16000)
    sf.write(folder / "short.wav", tone(2.0, 16000), 16000)
    return [str(folder / "long.wav"), str(folder / "short.wav"), "--hop", "0.02", "-f", "jsonl"]


@pytest.mark.slow
def test_bars_at_a_terminal_and_none_in_a_pipe_or_quiet(slow_inputs, tiny_model_dir):
    args = [*slow_inputs, "-m", str(tiny_model_dir)]
    code, out, err = _tag(args, terminal=True)
    assert code == 0, err
    assert [json.loads(line)["path"] for line in out.splitlines()] == slow_inputs[:2]
    assert "long.wav:" in err and "/60" in err and "s/s" in err  # the file's seconds
    assert "/2 [" in err and "file" in err  # the files
    code, out, err = _tag(args, terminal=False)
    assert code == 0 and err == "" and len(out.splitlines()) == 2
    code, out, err = _tag([*args, "-q"], terminal=True)
    assert code == 0 and "long.wav:" not in err and "%|" not in err


def test_no_bars_off_a_terminal(tmp_path):
    with open(tmp_path / "err", "w") as stream:
        bars = TagBars(3, enabled=True, stream=stream)
        bars.start("a.wav", 100.0)
        bars.reached(50.0)
        bars.done()
        bars.close()
    assert not bars.shown and (tmp_path / "err").read_text() == ""
