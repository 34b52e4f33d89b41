"""Where ``ast batch`` records go: a file (flushed record by record, resumable), standard output, or a
folder of one file an input (Audacity label tracks, Raven selection tables). Also the settings
recorded beside an output, which ``--resume`` compares before it appends.

A record is written with one ``write`` call, so a killed run leaves at most the tail of one record;
``--resume`` finds the last whole record, cuts the file there and goes on. No torch here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import IO, Any, BinaryIO

from .errors import EXIT_USAGE, OutputError, OutputExistsError, UsageError
from .files import write_atomic
from .options import BatchOptions
from .readback import Expect, Scan
from .targets import open_stream
from .version import __version__
from .writers import FolderWriter, folder_writer, get_writer, writes_folder

_log = logging.getLogger(__name__)

SETTINGS_SUFFIX = ".ast.json"  # tags.csv -> tags.csv.ast.json
FOLDER_SETTINGS = ".ast-batch.json"  # inside the folder of a format written as one file a record (audacity)


# -- settings -------------------------------------------------------------------------------------
def settings_path(out: str, fmt: str) -> Path:
    return Path(out) / FOLDER_SETTINGS if writes_folder(fmt) else Path(out + SETTINGS_SUFFIX)


def check_settings(path: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume an output written with settings that change results."""
    try:
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f).get("settings", {})
    except (OSError, ValueError, AttributeError):
        raise UsageError(
            f"--resume: {path} is missing or unreadable, so the settings of the earlier run are unknown",
            hint="use --force to start over",
        ) from None
    keys = [*settings, *(key for key in recorded if key not in settings)]  # a key kept only when not the default
    differ = [
        f"{key} {recorded.get(key)!r} -> {settings.get(key)!r}"
        for key in keys
        if recorded.get(key) != settings.get(key)
    ]
    if differ:
        raise UsageError(
            "--resume: settings differ from the run that wrote the output: " + "; ".join(differ),
            hint="resume with the same settings, or use --force to start over",
        )


def write_settings(path: Path, settings: dict[str, Any], version: str) -> None:
    text = json.dumps({"ast_version": version, "settings": settings}, indent=2, ensure_ascii=False)
    write_atomic(path, text + "\n")


# -- sinks ------------------------------------------------------------------------------------------
class Sink:
    """Takes finished records. ``done(name)`` tells whether an earlier run already has that input."""

    def done(self, name: str) -> bool:
        return False

    def holds(self, path: str) -> bool:
        """Whether ``path`` is the file this sink writes."""
        return False

    def write(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class StreamSink(Sink):
    """Records on standard output as each file is done (a pipe reader sees them at once)."""

    def __init__(
        self, fmt: str, writer_options: dict[str, Any], stream: IO[str] | None = None, path: str | None = None
    ):
        self._file = None if path is None else open_stream(path)  # a special file named by -o: its own descriptor
        self.writer = get_writer(fmt, stream or (_RawText(self._file) if self._file else sys.stdout), **writer_options)

    def write(self, record: dict[str, Any]) -> None:
        self.writer.write(record)

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            if self._file is not None:
                self._file.close()


class FileSink(Sink):
    """A document (CSV, TSV, JSON, JSON Lines) in a file, appended to record by record; resumable
    after any stop: the format's writer reads back what an earlier run left (``Writer.scan``) and keeps
    the records that pass ``expect`` (``readback.py``)."""

    def __init__(
        self,
        path: str,
        fmt: str,
        writer_options: dict[str, Any],
        resume: bool,
        truncate: bool = False,
        expect: Expect | None = None,
    ):
        self.path = path
        self.names: set[str] = set()
        self._file = open(path, "ab", buffering=0)
        try:
            lock(self._file.fileno(), path)  # before anything is cut: a second writer stops here
            self.writer = get_writer(fmt, _RawText(self._file), header=False, **writer_options)
            kept = ""
            if truncate:
                self._file.truncate(0)
            elif resume:
                found = self.writer.scan(read_text(path), path, expect or Expect())
                self.names, self.writer.count, kept = found.names, found.count, found.kept
                self._keep(found)
            if not kept:
                self.writer.start()
        except BaseException:
            self._file.close()
            raise

    def _keep(self, found: Scan) -> None:
        """Leave only the records of an earlier run that ``scan`` kept: cut a torn tail, or rewrite the
        file without what it left out (damaged lines, incomplete timelines, duplicates), saying so."""
        with open(self.path, "rb") as f:
            data = f.read()
        kept = found.kept.encode("utf-8", errors="surrogateescape")
        if data.startswith(kept):
            self._file.truncate(len(kept))
        else:
            self._file.truncate(0)
            _RawText(self._file).write(found.kept)
            os.fsync(self._file.fileno())
        warning = found.warning(self.path)
        if warning:
            _log.warning(warning)

    def done(self, name: str) -> bool:
        return name in self.names

    def holds(self, path: str) -> bool:
        try:
            st, own = os.stat(path), os.fstat(self._file.fileno())
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)

    def write(self, record: dict[str, Any]) -> None:
        before = os.fstat(self._file.fileno()).st_size
        try:
            self.writer.write(record)
        except OSError:  # a full disk: cut what part of this record got out, so the output stays whole
            try:
                self._file.truncate(before)
            except OSError:
                pass
            raise

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            self._file.close()


class FolderSink(Sink):
    """A folder of files, one a record, as ``writer`` names and writes them (audacity: ``OUT/<name>.txt``
    label tracks); failures go to ``OUT/errors.jsonl``. Done = the input's file exists."""

    def __init__(self, folder: str, writer: FolderWriter):
        self.folder = Path(folder)
        self.writer = writer
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.folder, os.O_RDONLY)
        try:
            lock(self._lock, folder)
        except BaseException:
            os.close(self._lock)
            raise

    def path_of(self, name: str) -> Path:
        return self.folder / self.writer.path_of(name)

    def done(self, name: str) -> bool:
        return self.path_of(name).exists()

    def write(self, record: dict[str, Any]) -> None:
        if "error" in record:
            with open(self.folder / self.writer.FAILURES, "a", encoding="utf-8") as f:
                f.write(self.writer.failure(record))
            return
        write_atomic(self.path_of(record["path"]), self.writer.render(record))

    def close(self) -> None:
        os.close(self._lock)


def open_sink(
    out: str,
    fmt: str,
    writer_options: dict[str, Any],
    *,
    resume: bool,
    force: bool,
    expect: Expect | None = None,
    stream: bool = False,
) -> Sink:
    """Where ``ast batch`` writes: standard output for ``-``, a special file (``stream``: a pipe, a
    device, /dev/stdout) appended to as a stream, else a file, or a folder for a format written as one
    file a record. Refuses an output file that exists unless ``resume`` or ``force``; ``expect``: what
    ``resume`` keeps of it."""
    if out == "-" or stream:
        if writes_folder(fmt):
            raise UsageError(f"--format {fmt} writes a folder of label files", hint="give -o FOLDER")
        return StreamSink(fmt, writer_options, path=None if out == "-" else out)
    if writes_folder(fmt):
        if os.path.exists(out) and not os.path.isdir(out):
            raise UsageError(f"{out}: --format {fmt} writes a folder of label files, and this is a file")
        if os.path.isdir(out) and any(os.scandir(out)) and not (resume or force):
            raise OutputExistsError(
                f"{out}: folder is not empty", hint="use --resume to continue, or --force to add to it"
            )
        return FolderSink(out, folder_writer(fmt))
    if os.path.isdir(out):
        raise UsageError(f"{out}: is a folder", hint="give a file name for the output, e.g. -o tags.csv")
    if os.path.exists(out) and not (resume or force):
        raise OutputExistsError(f"{out}: exists", hint="use --resume to continue it, or --force to overwrite it")
    parent = os.path.dirname(out)
    if parent:
        os.makedirs(parent, exist_ok=True)
    return FileSink(out, fmt, writer_options, resume, truncate=force and not resume, expect=expect)


def lock(fd: int, path: str) -> None:
    """An advisory lock for this run's life (released when ``fd`` closes): a second ``ast batch`` on
    the same output exits 2 at once instead of writing every record twice."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UsageError(
            f"{path}: another ast batch is writing this output", hint="wait for it to finish, or choose another -o"
        ) from None
    except OSError:  # a file system without locks (some network mounts): go on unlocked
        pass


def read_text(path: str) -> str:
    """An output as text, bytes that are not UTF-8 kept (as lone surrogates) so they are written back as they were."""
    with open(path, "rb") as f:
        return f.read().decode("utf-8", errors="surrogateescape")


class _RawText:
    """A text face on an unbuffered binary file: each ``write`` is one system call (whole records)."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw

    def write(self, text: str) -> int:
        data = text.encode("utf-8", errors="surrogateescape")
        view = memoryview(data)
        while view:
            view = view[self.raw.write(view) :]
        return len(text)

    def flush(self) -> None:
        pass


def open_batch_output(
    out: str,
    fmt: str,
    options: BatchOptions,
    writer_options: dict[str, Any],
    side: Path,
    settings: dict,
    expect: Expect,
    *,
    stream: bool,
) -> Sink:
    """The sink of one ``ast batch`` output, then its settings beside it, both before the first record. A
    write the machine stops here (a full disk) leaves no output that was not there before: the next
    run starts as this one would have (exit 2, nothing was written)."""
    created = not stream and not os.path.exists(out)
    try:
        sink = open_sink(
            out, fmt, writer_options, resume=options.resume, force=options.force, expect=expect, stream=stream
        )
    except OSError as exc:
        if created:
            remove_new_output(out)
        raise write_error(exc, out, 0, resumable=False) from None
    if stream:
        return sink
    try:
        write_settings(side, settings, __version__)
    except OSError as exc:
        with contextlib.suppress(OSError):
            sink.close()
        if created:
            remove_new_output(out)
        raise write_error(exc, str(side), 0, resumable=False) from None
    return sink


def remove_new_output(out: str, side: Path | None = None) -> None:
    """The output this run made and could not start (at most a header in it, or an empty folder), and
    its settings file."""
    with contextlib.suppress(OSError):
        if side is not None:
            side.unlink(missing_ok=True)
        if os.path.isfile(out):
            os.unlink(out)
        elif os.path.isdir(out):
            os.rmdir(out)


def write_error(exc: OSError, out: str, written: int, resumable: bool) -> OutputError:
    """What the environment did to the output (a full disk, a read-only or vanished folder), as one line."""
    what = exc.strerror or type(exc).__name__
    where = exc.filename or out
    if written == 0:
        return OutputError(
            f"{where}: {what} (nothing was written)", hint="free space or choose another -o", exit_code=EXIT_USAGE
        )
    again = "; run the same command with --resume when there is room" if resumable else ""
    return OutputError(f"{where}: {what} after {written} record(s){again}", hint="what was written stays valid")
