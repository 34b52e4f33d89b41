"""Where ``ast batch`` records go: a file (flushed record by record, resumable), standard output, or a
folder of Audacity label tracks. Also the settings recorded beside an output, which ``--resume``
compares before it appends.

A record is written with one ``write`` call, so a killed run leaves at most the tail of one record;
``--resume`` finds the last whole record, cuts the file there and goes on. No torch here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from .errors import OutputExistsError, UsageError
from .files import write_atomic
from .options import BatchFormat
from .output import RecordWriter

SETTINGS_SUFFIX = ".ast.json"  # tags.csv -> tags.csv.ast.json
AUDACITY_SETTINGS = ".ast-batch.json"  # inside the label folder


# -- settings -------------------------------------------------------------------------------------
def settings_path(out: str, fmt: BatchFormat) -> Path:
    return Path(out) / AUDACITY_SETTINGS if fmt == BatchFormat.audacity else Path(out + SETTINGS_SUFFIX)


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
    differ = [f"{key} {recorded.get(key)!r} -> {settings.get(key)!r}" for key in settings if recorded.get(key) != settings.get(key)]
    if differ:
        raise UsageError(
            "--resume: settings differ from the run that wrote the output: " + "; ".join(differ),
            hint="resume with the same settings, or use --force to start over",
        )


def write_settings(path: Path, settings: dict[str, Any], version: str) -> None:
    write_atomic(path, json.dumps({"ast_version": version, "settings": settings}, indent=2, ensure_ascii=False) + "\n")


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

    def __init__(self, fmt: str, writer_options: dict[str, Any], stream=None):
        self.writer = RecordWriter(fmt, stream or sys.stdout, **writer_options)

    def write(self, record: dict[str, Any]) -> None:
        self.writer.write(record)

    def close(self) -> None:
        self.writer.close()


class FileSink(Sink):
    """A CSV/TSV/JSON/JSONL file, appended to record by record; resumable after any stop."""

    def __init__(self, path: str, fmt: str, writer_options: dict[str, Any], resume: bool, truncate: bool = False):
        self.path = path
        self.names: set[str] = set()
        header, count = True, 0
        self._file = open(path, "ab", buffering=0)
        try:
            lock(self._file.fileno(), path)  # before anything is cut: a second writer stops here
            if truncate:
                self._file.truncate(0)
            elif resume:
                probe = RecordWriter(fmt, io.StringIO(), header=False, **writer_options)
                found = scan_output(path, fmt, probe.header())
                self.names, count = found.names, found.count
                self._keep(found)
                header = not found.kept
        except BaseException:
            self._file.close()
            raise
        self.writer = RecordWriter(fmt, _RawText(self._file), header=header, count=count, **writer_options)

    def _keep(self, found: Scan) -> None:
        """Leave only the whole records of an earlier run: cut a torn tail, or rewrite the file
        without the damaged lines inside it (their files are tagged again)."""
        with open(self.path, "rb") as f:
            data = f.read()
        if data.startswith(found.kept):
            self._file.truncate(len(found.kept))
        else:
            self._file.truncate(0)
            _RawText(self._file).write(found.kept.decode("utf-8", errors="surrogateescape"))
            os.fsync(self._file.fileno())
        if found.damaged:
            warnings.warn(f"{self.path}: {found.damaged} damaged line(s) left out; their files are tagged again", stacklevel=3)

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


class AudacitySink(Sink):
    """One Audacity label track a file: ``OUT/<name>.txt`` with ``start<TAB>end<TAB>label`` lines (the
    merged events); failures go to ``OUT/errors.jsonl``. Done = its label file exists."""

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.folder, os.O_RDONLY)
        try:
            lock(self._lock, folder)
        except BaseException:
            os.close(self._lock)
            raise

    def label_path(self, name: str) -> Path:
        parts = [p for p in PurePath(name).parts if p not in ("..", ".") and p != PurePath(name).anchor]
        return self.folder.joinpath(*parts[:-1], (parts[-1] if parts else "stdin") + ".txt")

    def done(self, name: str) -> bool:
        return self.label_path(name).exists()

    def write(self, record: dict[str, Any]) -> None:
        if "error" in record:
            with open(self.folder / "errors.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"path": record["path"], "error": record["error"]}, ensure_ascii=False) + "\n")
            return
        lines = [f"{e['start_s']:.6f}\t{e['end_s']:.6f}\t{e['label']}\n" for e in record.get("events", [])]
        write_atomic(self.label_path(record["path"]), "".join(lines))

    def close(self) -> None:
        os.close(self._lock)


def open_sink(out: str, fmt: str, writer_options: dict[str, Any], *, resume: bool, force: bool) -> Sink:
    if out == "-":
        if fmt == BatchFormat.audacity:
            raise UsageError("--format audacity writes a folder of label files", hint="give -o FOLDER")
        return StreamSink(fmt, writer_options)
    if fmt == BatchFormat.audacity:
        if os.path.exists(out) and not os.path.isdir(out):
            raise UsageError(f"{out}: --format audacity writes a folder of label files, and this is a file")
        if os.path.isdir(out) and any(os.scandir(out)) and not (resume or force):
            raise OutputExistsError(f"{out}: folder is not empty", hint="use --resume to continue, or --force to add to it")
        return AudacitySink(out)
    if os.path.isdir(out):
        raise UsageError(f"{out}: is a folder", hint="give a file name for the output, e.g. -o tags.csv")
    if os.path.exists(out) and not (resume or force):
        raise OutputExistsError(f"{out}: exists", hint="use --resume to continue it, or --force to overwrite it")
    parent = os.path.dirname(out)
    if parent:
        os.makedirs(parent, exist_ok=True)
    return FileSink(out, fmt, writer_options, resume, truncate=force and not resume)


def lock(fd: int, path: str) -> None:
    """An advisory lock for this run's life (released when ``fd`` closes): a second ``ast batch`` on
    the same output exits 2 at once instead of writing every record twice."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UsageError(f"{path}: another ast batch is writing this output", hint="wait for it to finish, or choose another -o") from None
    except OSError:  # a file system without locks (some network mounts): go on unlocked
        pass


# -- reading back an output --------------------------------------------------------------------------
@dataclass
class Scan:
    """What an earlier run left in an output: the paths and number of its whole records, those
    records' text (``kept``, header included) and how many damaged lines were left out."""

    names: set[str]
    count: int
    kept: bytes
    damaged: int = 0


def scan_output(path: str, fmt: str, header: list[str]) -> Scan:
    """The whole records of an output, read back for ``--resume``. A torn tail (a killed run) is left
    out; so is every damaged line inside (counted); a file with several rows a record (--timeline,
    --merge CSV) loses the rows of its last file, which may be partial (a full disk), to be tagged again."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="surrogateescape")
    if fmt == BatchFormat.jsonl:
        entries, damaged = _scan_lines(text.split("\n")[:-1])  # what follows the last newline is torn
        kept = "".join(piece + "\n" for _, piece in entries)
    elif fmt == BatchFormat.json:
        entries, damaged = _scan_json(text)
        kept = "[\n" + ",\n".join(piece for _, piece in entries) if entries else ""
    else:
        head, entries, damaged = _scan_csv(text, "," if fmt == BatchFormat.csv else "\t", header, path)
        kept = head + "".join(piece for _, piece in entries)
    names = {name for name, _ in entries}
    return Scan(names, len(entries), kept.encode("utf-8", errors="surrogateescape"), damaged)


def _scan_lines(lines: list[str]) -> tuple[list[tuple[str, str]], int]:
    """(path, line) of each line holding a record; the count of the others (blank lines too)."""
    entries, damaged = [], 0
    for line in lines:
        record = _record(line)
        if record is None:
            damaged += 1
        else:
            entries.append((record["path"], line))
    return entries, damaged


def _scan_json(text: str) -> tuple[list[tuple[str, str]], int]:
    """Our JSON arrays hold one record a line: ``[``, ``{...},``, ..., ``{...}``, ``]``."""
    lines = text.split("\n")
    if lines[0] != "[":
        return [], 0
    body = [line for line in lines[1:]]
    while body and body[-1] in ("", "]"):  # the closing bracket and the newline after it
        body.pop()
    torn = bool(body) and _record(body[-1].removesuffix(",")) is None and not text.endswith("\n")
    entries, damaged = _scan_lines([line.removesuffix(",") for line in (body[:-1] if torn else body)])
    return entries, damaged


def _scan_csv(text: str, delimiter: str, header: list[str], path: str) -> tuple[str, list[tuple[str, str]], int]:
    """The header's text, then (path, text) of each whole row; rows of the wrong width are damage.
    With several rows a record, the last file's rows go: they may be partial."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]  # the last piece had no newline
    consumed = 0

    def feed():  # csv.reader takes one line at a time and never reads past the row it returns
        nonlocal consumed
        for line in lines:
            consumed += len(line)
            yield line

    head, entries, damaged, start = "", [], 0, 0
    try:
        for row in csv.reader(feed(), delimiter=delimiter):
            piece, start = text[start:consumed], consumed
            if not piece.endswith("\n"):
                break  # torn
            if not head:
                if row != header:
                    raise UsageError(
                        f"--resume: {path} has other columns than this run would write",
                        hint="resume with the same --top/--timeline/--merge/--all-scores, or use --force",
                    )
                head = piece
            elif len(row) != len(header) or not row[0]:
                damaged += 1
            else:
                entries.append((row[0], piece))
    except csv.Error:
        pass  # a torn quoted field at the end
    if header[1] == "start_s" and entries:  # several rows a record: the last file's may be partial
        last = entries[-1][0]
        while entries and entries[-1][0] == last:
            entries.pop()
    return head, entries, damaged


def _record(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("path"), str) else None


class _RawText:
    """A text face on an unbuffered binary file: each ``write`` is one system call (whole records)."""

    def __init__(self, raw):
        self.raw = raw

    def write(self, text: str) -> int:
        data = text.encode("utf-8", errors="surrogateescape")
        view = memoryview(data)
        while view:
            view = view[self.raw.write(view) :]
        return len(text)

    def flush(self) -> None:
        pass

