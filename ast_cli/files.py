"""Atomic writes: every file this package writes whole goes through here.

A file is written under a temporary name in its own folder (so the rename stays on one file system),
flushed to disk with ``fsync``, then renamed over the target with ``os.replace``: a reader, or a run
killed at any moment, sees the old file or the new one, never half of one. The temporary file is
created with the umask applied, like any file the user's programs make. A failure names the target,
not the temporary, and leaves no temporary; the first write into a folder removes the temporaries a
killed process left there (``remove_stale_temporaries``). No torch here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import EXIT_USAGE, OutputError


class AtomicPath:
    """A temporary path beside ``path``: write it (by name, through ``open`` or ``write_with``), then
    ``commit()`` to put it in place, or ``abort()`` to leave ``path`` as it was. As a context manager it
    commits when the block ends normally and aborts on any exception (Ctrl-C included); an error of the
    machine (a full disk) comes out as an OSError naming ``path``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        _sweep(self.path.parent)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask
        except OSError as exc:
            raise self.named(exc) from None
        os.close(fd)

    def open(self, mode: str = "w", **kwargs: Any) -> IO:
        return open(self.tmp, mode, **kwargs)

    def write_with(self, save: Callable[[IO[bytes]], object]) -> None:
        """``save(f)`` writes the file through ``f``'s ``write`` alone, so a failure keeps its errno:
        ``np.save`` then writes in chunks (on a real file it calls ``tofile``, whose failure has none),
        and ``torch.save``'s RuntimeError keeps the OSError as its context."""
        with open(self.tmp, "wb") as f:
            save(_WriteOnly(f))  # type: ignore[arg-type]

    def commit(self) -> Path:
        try:
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self.tmp, self.path)
        except BaseException as exc:
            self.abort()
            named = self.named(exc)
            if named is exc:
                raise
            raise named from exc
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)

    def named(self, exc: BaseException) -> BaseException:
        """``exc`` as an OSError naming ``path`` when the machine stopped the write (a full disk, a
        read-only folder: the errno is in ``exc`` or what it wraps); ``exc`` itself otherwise."""
        found = os_error_of(exc)
        if found is None or (isinstance(exc, OSError) and exc.filename not in (None, os.fspath(self.tmp))):
            return exc
        return OSError(found.errno, found.strerror or os.strerror(found.errno or 0), os.fspath(self.path))

    def __enter__(self) -> AtomicPath:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.commit()
            return
        self.abort()
        named = self.named(exc)
        if named is not exc:
            raise named from exc


class _WriteOnly:
    """A file object's ``write`` and ``flush``, and nothing that lets numpy or torch write around them."""

    def __init__(self, f: IO[bytes]):
        self._f = f

    def write(self, data: bytes) -> int:
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how Rust libraries (safetensors) quote an errno


def os_error_of(exc: BaseException) -> OSError | None:
    """The OSError with an errno behind ``exc``: itself, one it was raised from or while handling (torch
    wraps a failed write in a RuntimeError), or one its message quotes (safetensors: "(os error 28)")."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is short; a cycle must not loop
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    match = OS_ERROR.search(str(exc))
    if match:
        code = int(match.group(1))
        return OSError(code, os.strerror(code))
    return None


FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # the disk or the quota: more room lets it go on


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


_swept: set[str] = set()  # folders whose stale temporaries this process removed already


def _sweep(folder: Path) -> None:
    """``remove_stale_temporaries`` once a folder and process, before its first write there."""
    key = os.path.abspath(folder)
    if key not in _swept:
        _swept.add(key)
        remove_stale_temporaries(folder)


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
