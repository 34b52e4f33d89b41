"""Records out: a terminal table, JSON, JSON Lines, CSV and TSV, written as each record is ready.

Every format is made from the same JSON record (see README, "JSON record"):
``{"path", "duration_s", "labels": [{"label", "index", "score"}], "windows"?: [...], "error"?}``.
No torch here.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from typing import IO, Any

from .options import BatchFormat, RecordFormat, ReportFormat



def default_format(stream: IO[str]) -> RecordFormat:
    """A table for people at a terminal, JSON Lines for pipes (so ``ast tag a.wav | jq`` works)."""
    return RecordFormat.table if isatty(stream) else RecordFormat.jsonl


def format_from_path(path: str) -> BatchFormat | None:
    """The output format an ``ast batch`` file name implies (None: its extension says none)."""
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return {"json": BatchFormat.json, "jsonl": BatchFormat.jsonl, "ndjson": BatchFormat.jsonl, "csv": BatchFormat.csv,
            "tsv": BatchFormat.tsv}.get(suffix)  # fmt: skip


def console(stream: IO[str], **kwargs: Any):
    """A rich Console on ``stream``: styles only at a terminal (rich's own test), and none at all with
    NO_COLOR set (rich alone would drop colours but keep bold and dim)."""
    from rich.console import Console

    plain = bool(os.environ.get("NO_COLOR"))  # no-color.org: set and not empty
    return Console(file=stream, highlight=False, color_system=None if plain else "auto", **kwargs)


def isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class RecordWriter:
    """Writes records one by one in ``fmt``; ``close()`` finishes the document (the JSON array's ``]``).

    ``columns`` is the number of label/score column pairs in CSV/TSV (the ``--top`` value, or the
    label count for ``--top 0``); ``timeline`` writes one CSV/TSV row per window instead of per file,
    ``merge`` one row per event; ``score_columns`` (label names, for ``--all-scores``) writes one
    column per label instead of the label/score pairs. ``header=False`` and ``count`` continue a
    document that is already partly written (``ast batch --resume``).
    """

    def __init__(
        self,
        fmt: RecordFormat | str,
        stream: IO[str],
        *,
        columns: int = 5,
        timeline: bool = False,
        merge: bool = False,
        score_columns: list[str] | None = None,
        header: bool = True,
        count: int = 0,
    ):
        self.fmt = RecordFormat(fmt)  # ValueError for audacity: that is a folder of files (sinks.AudacitySink)
        self.stream = stream
        self.columns = columns
        self.timeline = timeline
        self.merge = merge
        self.score_columns = score_columns
        self.count = count
        if fmt in (RecordFormat.csv, RecordFormat.tsv) and header:
            self.stream.write(self._csv_text([self.header()]))
        elif fmt == RecordFormat.table:
            self._console = console(stream, soft_wrap=False)

    # -- CSV / TSV ------------------------------------------------------------------------------
    def header(self) -> list[str]:
        if self.merge:
            return ["path", "start_s", "end_s", "label", "score", "error"]
        head = ["path", "start_s", "end_s"] if self.timeline else ["path", "duration_s"]
        if self.score_columns is not None:
            return head + list(self.score_columns) + ["error"]
        for i in range(1, self.columns + 1):
            head += [f"label_{i}", f"score_{i}"]
        return head + ["error"]

    def rows(self, record: dict[str, Any]) -> list[list[Any]]:
        def cells(item: dict[str, Any]) -> list[Any]:
            if self.score_columns is not None:
                scores = item.get("scores", {})
                return [_num(scores.get(label)) for label in self.score_columns]
            pairs: list[Any] = []
            for label in item.get("labels", [])[: self.columns]:
                pairs += [label["label"], _num(label["score"])]
            return pairs + [""] * (2 * self.columns - len(pairs))

        error = record.get("error", "")
        if self.merge:
            if error or not record.get("events"):
                return [[record["path"], "", "", "", "", error]]
            return [[record["path"], _num(e["start_s"]), _num(e["end_s"]), e["label"], _num(e["score"]), ""] for e in record["events"]]
        if self.timeline:
            if error or not record.get("windows"):
                return [[record["path"], "", ""] + cells({}) + [error]]
            return [[record["path"], _num(w["start_s"]), _num(w["end_s"])] + cells(w) + [""] for w in record["windows"]]
        return [[record["path"], _num(record["duration_s"])] + cells(record) + [error]]

    def _csv_text(self, rows: list[list[Any]]) -> str:
        buffer = io.StringIO()
        delimiter = "," if self.fmt == RecordFormat.csv else "\t"
        plain = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
        # csv quotes the line terminator's characters only: a carriage return (in a file name) would end
        # the row for a reader, so rows holding one are written fully quoted
        quoted = csv.writer(buffer, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL)
        for row in rows:
            (quoted if any("\r" in str(cell) for cell in row) else plain).writerow(row)
        return buffer.getvalue()

    # -- writing --------------------------------------------------------------------------------
    def render(self, record: dict[str, Any]) -> str:
        """The text one record adds to the document (not for ``table``)."""
        if self.fmt == RecordFormat.jsonl:
            return to_json(record) + "\n"
        if self.fmt == RecordFormat.json:
            return ("[\n" if self.count == 0 else ",\n") + to_json(record)
        return self._csv_text(self.rows(record))

    def write(self, record: dict[str, Any]) -> None:
        if self.fmt == RecordFormat.table:
            self._table(record)
        else:
            # one write a record: a reader (or a killed run) never sees half of one
            self.stream.write(self.render(record))
        self.count += 1
        self.stream.flush()

    def closing(self) -> str:
        if self.fmt == RecordFormat.json:
            return "[]\n" if self.count == 0 else "\n]\n"
        return ""

    def close(self) -> None:
        if self.closing():
            self.stream.write(self.closing())
            self.stream.flush()

    def _table(self, record: dict[str, Any]) -> None:
        from rich.table import Table
        from rich.text import Text

        if "error" in record:
            return  # failures are reported on stderr; stdout carries results only
        # the path on its own line, never wrapped to the table's width
        self._console.print(Text(record["path"], style="bold") + Text(f"  {_duration(record['duration_s'])}", style="dim"), soft_wrap=True)
        table = Table(show_edge=False, pad_edge=False)
        table.add_column("#", justify="right", style="dim")
        table.add_column("label")
        table.add_column("score", justify="right")
        table.add_column("", no_wrap=True)
        for rank, item in enumerate(record["labels"], 1):
            table.add_row(str(rank), item["label"], f"{item['score']:.3f}", Text(score_bar(item["score"]), style="cyan"))
        if not record["labels"]:
            table.add_row("", Text("no label above the threshold", style="dim"), "", "")
        self._console.print(table)
        if record.get("windows"):
            windows = Table(show_edge=False, pad_edge=False, title="timeline", title_justify="left")
            windows.add_column("start", justify="right")
            windows.add_column("end", justify="right")
            windows.add_column("labels")
            for w in record["windows"]:
                names = ", ".join(f"{x['label']} {x['score']:.2f}" for x in w["labels"])
                windows.add_row(f"{w['start_s']:.2f}", f"{w['end_s']:.2f}", names)
            self._console.print(windows)
        self._console.print()


def render_models(models: list, fmt: ReportFormat, stream: IO[str]) -> None:
    """``ast models``: a table (id, size, path) or a JSON array of ``CachedModel.to_json()``."""
    if fmt == ReportFormat.json:
        stream.write(to_json([m.to_json() for m in models]) + "\n")
        return
    from rich.filesize import decimal
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("id", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("path", overflow="fold")
    for m in models:
        table.add_row(m.repo_id, decimal(m.size_bytes), str(m.path))
    if models:
        console(stream, soft_wrap=True).print(table)


def to_json(record: Any) -> str:
    """One line of JSON, UTF-8 text as it is, except two escapes: a file name that is not valid UTF-8
    (Python keeps its bytes as lone surrogates) as \\udcXX, so the output stays valid UTF-8; and the
    characters besides \\n that line readers such as str.splitlines break at (U+0085, U+2028, U+2029).
    A NaN or infinite number is null: JSON has no NaN."""
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(record), ensure_ascii=False, allow_nan=False)
    return _ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return [_finite(v) for v in value] if isinstance(value, (list, tuple)) else value


_ESCAPE = re.compile("[\ud800-\udfff\x85\u2028\u2029]")


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):  # an empty cell, never "nan"
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def score_bar(score: float, width: int = 20) -> str:
    score = min(max(score, 0.0), 1.0) if math.isfinite(score) else 0.0
    full, part = divmod(round(score * width * 8), 8)
    return "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")


def _duration(seconds: float) -> str:
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(int(minutes), 60)
    return f"{hours}:{m:02d}:{s:05.2f}" if hours else f"{m}:{s:05.2f}"
