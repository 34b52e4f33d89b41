"""Atomic writes: every file this package writes whole goes through here.

A file is written under a temporary name in its own folder (so the rename stays on one file system),
flushed to disk with ``fsync``, then renamed over the target with ``os.replace``: a reader, or a run
killed at any moment, sees the old file or the new one, never half of one. The temporary file is
created with the umask applied, like any file the user's programs make. No torch here.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import EXIT_USAGE, OutputError


class AtomicPath:
    """A temporary path beside ``path``: write it (by name or through ``open``), then ``commit()``
    to put it in place, or ``abort()`` to leave ``path`` as it was. As a context manager it commits
    when the block ends normally and aborts on any exception (Ctrl-C included)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask
        os.close(fd)

    def open(self, mode: str = "w", **kwargs: Any) -> IO:
        return open(self.tmp, mode, **kwargs)

    def commit(self) -> Path:
        fd = os.open(self.tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicPath:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` whose file replaces ``path`` only once the block ends without an error."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with AtomicPath(path) as target, target.open(mode, **kwargs) as f:
        yield f


TEMPORARY = re.compile(r"^\..+\.(\d+)-[0-9a-f]{6}\.tmp$")  # AtomicPath's names: .NAME.PID-RANDOM.tmp


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files a killed process left in ``folder`` (SIGKILL gives no chance to
    clean up): AtomicPath's names whose process is gone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = TEMPORARY.match(entry.name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal
        return True
    return True


def ensure_space(folder: str | os.PathLike, nbytes: int, what: str) -> None:
    """Refuse to start a write of about ``nbytes`` that the folder's file system cannot hold: some
    writers (torch.jit.save) abort the whole process on a full disk instead of raising."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: let the write itself report
    if free < nbytes:
        raise OutputError(
            f"{folder}: {free / 1e6:.0f} MB free, {what} needs about {nbytes / 1e6:.0f} MB",
            hint="free some space or write elsewhere",
            exit_code=EXIT_USAGE,
        )


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; the parent folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(
        path, "wb" if isinstance(data, bytes) else "w", **({} if isinstance(data, bytes) else {"newline": ""})
    ) as f:
        f.write(data)
    return path
