"""files.py: atomic writes leave the old file or the new one, never half of one, and no temporary."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from ast_cli.files import AtomicPath, os_error_of, remove_stale_temporaries, write_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    write_atomic(path, "old\n")
    with pytest.raises(RuntimeError):
        with AtomicPath(path) as target:
            target.tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.json"]
    write_atomic(path, "new\n")
    assert path.read_text() == "new\n" and oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_temporaries_of_a_killed_process_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / f".state.pt.{dead}-abcdef.tmp"
    live = tmp_path / f".state.pt.{os.getpid()}-abcdef.tmp"
    other = tmp_path / ".hidden.tmp"
    for p in (stale, live, other):
        p.write_text("x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


def test_the_first_write_into_a_folder_removes_a_killed_process_temporaries(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / f".e.npy.{dead}-abcdef.tmp"
    stale.write_text("half")
    write_atomic(tmp_path / "other.json", "{}\n")
    assert not stale.exists()


def test_a_failure_names_the_target_and_the_errno_a_library_wraps(tmp_path):
    path = tmp_path / "model.safetensors"
    with pytest.raises(OSError) as caught:
        with AtomicPath(path):
            raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(path))
    assert os_error_of(ValueError("plain")) is None and list(tmp_path.iterdir()) == []
