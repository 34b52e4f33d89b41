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

    def __init__(self, path: str, fmt: str, writer_options: dict[str, Any], resume: bool):
        self.path = path
        self.names: set[str] = set()
        header, count = True, 0
        if resume and os.path.exists(path):
            probe = RecordWriter(fmt, io.StringIO(), header=False, **writer_options)
            self.names, count, valid = scan_output(path, fmt, probe.header())
            with open(path, "r+b") as f:
                f.truncate(valid)
            header = valid == 0
        self._file = open(path, "ab", buffering=0)
        self.writer = RecordWriter(fmt, _RawText(self._file), header=header, count=count, **writer_options)

    def done(self, name: str) -> bool:
        return name in self.names

    def write(self, record: dict[str, Any]) -> None:
        self.writer.write(record)

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
    if os.path.exists(out):
        if not (resume or force):
            raise OutputExistsError(f"{out}: exists", hint="use --resume to continue it, or --force to overwrite it")
        if force and not resume:
            os.unlink(out)
    parent = os.path.dirname(out)
    if parent:
        os.makedirs(parent, exist_ok=True)
    return FileSink(out, fmt, writer_options, resume)


# -- reading back an output --------------------------------------------------------------------------
def scan_output(path: str, fmt: str, header: list[str]) -> tuple[set[str], int, int]:
    """Paths of the whole records in an output, how many records, and the byte length they fill
    (what follows is the torn tail of a killed run, or a JSON array's closing bracket)."""
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8", errors="surrogateescape")
    if fmt == BatchFormat.jsonl:
        names, count, end = _scan_jsonl(text)
    elif fmt == BatchFormat.json:
        names, count, end = _scan_json(text)
    else:
        names, count, end = _scan_csv(text, "," if fmt == BatchFormat.csv else "\t", header, path)
    return names, count, len(text[:end].encode("utf-8", errors="surrogateescape"))


def _scan_jsonl(text: str) -> tuple[set[str], int, int]:
    names: set[str] = set()
    count = end = 0
    for line in text.split("\n")[:-1]:  # the piece after the last newline is torn (or empty)
        record = _record(line)
        if record is None:
            break
        names.add(record["path"])
        count += 1
        end += len(line) + 1
    return names, count, end


def _scan_json(text: str) -> tuple[set[str], int, int]:
    """Our JSON arrays hold one record a line: ``[``, ``{...},``, ..., ``{...}``, ``]``."""
    names: set[str] = set()
    count = end = 0
    lines = text.split("\n")
    if not lines or lines[0] != "[":
        return names, 0, 0
    offset = 2  # after "[\n"
    for line in lines[1:]:
        record = _record(line[:-1] if line.endswith(",") else line)
        if record is None:
            break
        names.add(record["path"])
        count += 1
        end = offset + len(line) - line.endswith(",")
        offset += len(line) + 1
    return names, count, end if count else 0


def _scan_csv(text: str, delimiter: str, header: list[str], path: str) -> tuple[set[str], int, int]:
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]  # the last piece had no newline
    consumed = 0

    def feed():
        nonlocal consumed
        for line in lines:
            consumed += len(line)
            yield line

    names: set[str] = set()
    count = end = 0
    try:
        for i, row in enumerate(csv.reader(feed(), delimiter=delimiter)):
            if consumed == 0 or text[consumed - 1] != "\n" or len(row) != len(header):
                break  # torn
            if i == 0:
                if row != header:
                    raise UsageError(
                        f"--resume: {path} has other columns than this run would write",
                        hint="resume with the same --top/--timeline/--merge/--all-scores, or use --force",
                    )
            else:
                names.add(row[0])
                count += 1
            end = consumed
    except csv.Error:
        pass  # a torn quoted field at the end
    return names, count, end


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

