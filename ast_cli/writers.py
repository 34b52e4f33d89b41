"""One writer a format, found by its format value (as whisper's ``get_writer``): table, json, jsonl,
csv, tsv, the event tables (events-csv, events-tsv), and the folders of audacity label tracks and
Raven selection tables.

A writer knows the text of a document's head (``head``), of one record (``render``) and of its end
(``end``), and how to read back what an earlier run left in an output (``scan``, for ``ast batch
--resume``: ``readback.py``). Every format is made from the same JSON record (see README, "JSON record"):
``{"path", "duration_s", "labels": [{"label", "index", "score"}], "windows"?: [...], "error"?}``.
No torch here.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import PurePath
from typing import IO, Any, ClassVar, Protocol, TypeVar

from .options import BatchFormat, RecordFormat
from .output import console, render_record, to_json
from .readback import Expect, Scan, scan_events, scan_json, scan_jsonl, scan_table

F = TypeVar("F", bound="type[Writer | FolderWriter]")

DOCUMENTS: dict[str, type[Writer]] = {}  # format value -> the writer of a format written as one document
FOLDERS: dict[str, type[FolderWriter]] = {}  # format value -> the writer of a format written as a folder of files


def register(fmt: RecordFormat | BatchFormat) -> Callable[[F], F]:
    """Class decorator: the writer of ``fmt``."""

    def add(cls: F) -> F:
        cls.fmt = fmt.value
        if issubclass(cls, Writer):
            DOCUMENTS[fmt.value] = cls
        else:
            FOLDERS[fmt.value] = cls
        return cls

    return add


def get_writer(fmt: str, stream: TextStream, *, header: bool = True, **layout: Any) -> Writer:
    """A writer of ``fmt`` (a ``RecordFormat`` or ``BatchFormat`` member, or its value) on ``stream``,
    its head already written unless ``header=False`` (a document that is already partly written:
    ``ast batch --resume``). ``layout``: ``Writer``'s keywords. ValueError for a format written as a
    folder of files (audacity: ``folder_writer``)."""
    try:
        cls = DOCUMENTS[str(fmt)]
    except KeyError:
        raise ValueError(f"no writer of one document for format {fmt!r}; known: {', '.join(DOCUMENTS)}") from None
    writer = cls(stream, **layout)
    if header:
        writer.start()
    return writer


def folder_writer(fmt: str) -> FolderWriter:
    """The writer of a format written as a folder of files, one a record (ValueError for one written
    as a document)."""
    try:
        return FOLDERS[str(fmt)]()
    except KeyError:
        raise ValueError(f"no writer of a folder for format {fmt!r}; known: {', '.join(FOLDERS)}") from None


def writes_folder(fmt: str) -> bool:
    """Whether ``fmt`` is written as a folder of files, one a record (``FolderWriter``)."""
    return str(fmt) in FOLDERS


def writes_events(fmt: str) -> bool:
    """Whether ``fmt`` is made of a record's events only (its run merges windows: ``--merge``)."""
    cls = DOCUMENTS.get(str(fmt)) or FOLDERS.get(str(fmt))
    return cls is not None and cls.events


class TextStream(Protocol):
    """Where a document goes: a text file, standard output, or ``sinks``' face on a raw file."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class Writer:
    """Writes records one by one on a text stream; ``close()`` finishes the document.

    ``columns`` is the number of label/score column pairs in CSV/TSV (the ``--top`` value, or the
    label count for ``--top 0``); ``timeline`` writes one CSV/TSV row per window instead of per file,
    ``merge`` one row per event; ``score_columns`` (label names, for ``--all-scores``) writes one
    column per label instead of the label/score pairs. ``count`` is the number of records the
    document already holds (``ast batch --resume``).
    """

    fmt: ClassVar[str] = ""
    events: ClassVar[bool] = False  # made of the record's events alone

    def __init__(
        self,
        stream: TextStream,
        *,
        columns: int = 5,
        timeline: bool = False,
        merge: bool = False,
        score_columns: list[str] | None = None,
        count: int = 0,
    ):
        self.stream = stream
        self.columns = columns
        self.timeline = timeline
        self.merge = merge
        self.score_columns = score_columns
        self.count = count

    def head(self) -> str:
        """The text that opens the document (CSV's header row)."""
        return ""

    def render(self, record: dict[str, Any]) -> str:
        """The text one record adds to the document."""
        raise NotImplementedError

    def end(self) -> str:
        """The text that closes the document (the JSON array's ``]``)."""
        return ""

    def scan(self, text: str, path: str, expect: Expect) -> Scan:
        """The whole records of an output this writer wrote, read back for ``--resume`` (``readback``)."""
        raise NotImplementedError(f"{self.fmt} output cannot be resumed")

    def expect(self, expect: Expect) -> Expect:
        """``expect`` with this writer's layout: what its records hold."""
        return replace(expect, timeline=self.timeline, merge=self.merge, score_columns=self.score_columns)

    def start(self) -> None:
        if self.head():
            self.stream.write(self.head())

    def write(self, record: dict[str, Any]) -> None:
        # one write a record: a reader (or a killed run) never sees half of one
        self.stream.write(self.render(record))
        self.count += 1
        self.stream.flush()

    def close(self) -> None:
        if self.end():
            self.stream.write(self.end())
            self.stream.flush()


@register(RecordFormat.table)
class TableWriter(Writer):
    """Tables for people at a terminal: the path, its labels and scores, the timeline. Failures are
    reported on stderr; stdout carries results only."""

    def __init__(self, stream: IO[str], **layout: Any):
        super().__init__(stream, **layout)
        self._console = console(stream, soft_wrap=False)

    def write(self, record: dict[str, Any]) -> None:
        if "error" not in record:
            render_record(self._console, record)
        self.count += 1
        self.stream.flush()


@register(RecordFormat.jsonl)
class JsonlWriter(Writer):
    """JSON Lines: one record a line."""

    def render(self, record: dict[str, Any]) -> str:
        return to_json(record) + "\n"

    def scan(self, text: str, path: str, expect: Expect) -> Scan:
        return scan_jsonl(text, self.expect(expect))


@register(RecordFormat.json)
class JsonWriter(Writer):
    """A JSON array holding one record a line: ``[``, ``{...},``, ..., ``{...}``, ``]``."""

    def render(self, record: dict[str, Any]) -> str:
        return ("[\n" if self.count == 0 else ",\n") + to_json(record)

    def end(self) -> str:
        return "[]\n" if self.count == 0 else "\n]\n"

    def scan(self, text: str, path: str, expect: Expect) -> Scan:
        return scan_json(text, self.expect(expect))


@register(RecordFormat.csv)
class CsvWriter(Writer):
    """Comma-separated values: a header row, then one row a file (a window with ``timeline``, an
    event with ``merge``)."""

    delimiter: ClassVar[str] = ","

    def header(self) -> list[str]:
        """The column names."""
        if self.merge:
            return ["path", "start_s", "end_s", "label", "score", "error"]
        head = ["path", "start_s", "end_s"] if self.timeline else ["path", "duration_s"]
        if self.score_columns is not None:
            return head + list(self.score_columns) + ["error"]
        for i in range(1, self.columns + 1):
            head += [f"label_{i}", f"score_{i}"]
        return head + ["error"]

    def head(self) -> str:
        return self.text([self.header()])

    def render(self, record: dict[str, Any]) -> str:
        return self.text(self.rows(record))

    def rows(self, record: dict[str, Any]) -> list[list[Any]]:
        path, error = record["path"], record.get("error", "")
        if self.merge:
            if error or not record.get("events"):
                return [[path, "", "", "", "", error]]
            events = record["events"]
            return [[path, num(e["start_s"]), num(e["end_s"]), e["label"], num(e["score"]), ""] for e in events]
        if self.timeline:
            if error or not record.get("windows"):
                return [[path, "", ""] + self.cells({}) + [error]]
            return [[path, num(w["start_s"]), num(w["end_s"])] + self.cells(w) + [""] for w in record["windows"]]
        return [[path, num(record["duration_s"])] + self.cells(record) + [error]]

    def cells(self, item: dict[str, Any]) -> list[Any]:
        """The label columns of a record or a window: a score a label, or label/score pairs."""
        if self.score_columns is not None:
            scores = item.get("scores", {})
            return [num(scores.get(label)) for label in self.score_columns]
        pairs: list[Any] = []
        for label in item.get("labels", [])[: self.columns]:
            pairs += [label["label"], num(label["score"])]
        return pairs + [""] * (2 * self.columns - len(pairs))

    def text(self, rows: list[list[Any]]) -> str:
        buffer = io.StringIO()
        plain = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n")
        # csv quotes the line terminator's characters only: a carriage return (in a file name) would end
        # the row for a reader, so rows holding one are written fully quoted
        quoted = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL)
        for row in rows:
            (quoted if any("\r" in str(cell) for cell in row) else plain).writerow(row)
        return buffer.getvalue()

    def scan(self, text: str, path: str, expect: Expect) -> Scan:
        return scan_table(text, path, self.header(), self.delimiter, self.expect(expect))


@register(RecordFormat.tsv)
class TsvWriter(CsvWriter):
    """Tab-separated values, the columns of CSV."""

    delimiter: ClassVar[str] = "\t"


@register(BatchFormat.events_csv)
class EventsCsvWriter(CsvWriter):
    """One row an event, nothing else: ``path, start_s, end_s, label, index, score``, times in seconds
    as the JSON record has them (to the millisecond). The columns of DCASE's event lists
    (filename, onset, offset, event_label) come first, in their order; a file without events, or
    that failed, has no row."""

    events = True
    HEADER: ClassVar[list[str]] = ["path", "start_s", "end_s", "label", "index", "score"]

    def header(self) -> list[str]:
        return list(self.HEADER)

    def rows(self, record: dict[str, Any]) -> list[list[Any]]:
        return [
            [record["path"], seconds(e["start_s"]), seconds(e["end_s"]), e["label"], e["index"], num(e["score"])]
            for e in record.get("events", [])
        ]

    def scan(self, text: str, path: str, expect: Expect) -> Scan:
        return scan_events(text, path, self.header(), self.delimiter, self.expect(expect))


@register(BatchFormat.events_tsv)
class EventsTsvWriter(EventsCsvWriter):
    """The event table tab-separated, as DCASE's tools read it."""

    delimiter: ClassVar[str] = "\t"


class FolderWriter:
    """A format written as a folder of files, one a record: ``path_of`` a record's file in the folder,
    ``render`` its text, ``failure`` the line a failed record adds to ``FAILURES``."""

    fmt: ClassVar[str] = ""
    events: ClassVar[bool] = False  # made of the record's events alone
    FAILURES: ClassVar[str] = "errors.jsonl"
    SUFFIX: ClassVar[str] = ".txt"  # added to the input's name: a.wav -> a.wav.txt

    def path_of(self, name: str) -> PurePath:
        """The record's file in the folder: its path made relative (no root, no ``..``), plus ``SUFFIX``."""
        parts = [p for p in PurePath(name).parts if p not in ("..", ".") and p != PurePath(name).anchor]
        return PurePath(*parts[:-1], (parts[-1] if parts else "stdin") + self.SUFFIX)

    def render(self, record: dict[str, Any]) -> str:
        raise NotImplementedError

    def failure(self, record: dict[str, Any]) -> str:
        return json.dumps({"path": record["path"], "error": record["error"]}, ensure_ascii=False) + "\n"


@register(BatchFormat.audacity)
class AudacityWriter(FolderWriter):
    """One Audacity label track a file: ``<name>.txt`` with ``start<TAB>end<TAB>label`` lines (the
    merged events); failures go to ``errors.jsonl``."""

    events = True

    def render(self, record: dict[str, Any]) -> str:
        return "".join(f"{e['start_s']:.6f}\t{e['end_s']:.6f}\t{e['label']}\n" for e in record.get("events", []))


RAVEN_HEADER = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Annotation",
    "Score",
)
RAVEN_HIGH_HZ = 8000  # the model hears audio resampled to 16 kHz: nothing above its Nyquist frequency


@register(BatchFormat.raven)
class RavenWriter(FolderWriter):
    """One Raven Pro selection table a file, ``<name>.selections.txt``: tab-separated, ``RAVEN_HEADER``,
    one selection an event over the band the model hears (Raven: File > Open Selection Table, with the
    recording open); a file without events gets the header alone. Failures go to ``errors.jsonl``."""

    events = True
    SUFFIX = ".selections.txt"

    def render(self, record: dict[str, Any]) -> str:
        lines = ["\t".join(RAVEN_HEADER)]
        for n, e in enumerate(record.get("events", []), 1):
            label = " ".join(str(e["label"]).split())  # a tab or a newline in a label would break the table
            times = f"{seconds(e['start_s'])}\t{seconds(e['end_s'])}"
            lines.append(f"{n}\tSpectrogram 1\t1\t{times}\t0\t{RAVEN_HIGH_HZ}\t{label}\t{num(e['score'])}")
        return "\n".join(lines) + "\n"


def seconds(value: float) -> str:
    """A time cell: seconds to the millisecond, as the JSON record rounds them."""
    return f"{value:.3f}"


def num(value: float | None) -> str:
    """A CSV cell: six significant digits for a float, empty for None, NaN or infinity (never "nan")."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)
