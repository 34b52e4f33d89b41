"""What the output formats share: the format a stream or a file name implies, rich consoles, one
record or the model list as terminal tables, and the JSON text of a record. The writer of each format
is in ``writers.py``. No torch here.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import IO, TYPE_CHECKING, Any

from .options import BatchFormat, RecordFormat, ReportFormat

if TYPE_CHECKING:
    from rich.console import Console

SUFFIX_FORMATS = {  # an ast batch output's file name extension -> its format
    "json": BatchFormat.json,
    "jsonl": BatchFormat.jsonl,
    "ndjson": BatchFormat.jsonl,
    "csv": BatchFormat.csv,
    "tsv": BatchFormat.tsv,
}


def default_format(stream: IO[str]) -> RecordFormat:
    """A table for people at a terminal, JSON Lines for pipes (so ``ast tag a.wav | jq`` works)."""
    return RecordFormat.table if isatty(stream) else RecordFormat.jsonl


def format_from_path(path: str) -> BatchFormat | None:
    """The output format an ``ast batch`` file name implies (None: its extension says none)."""
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return SUFFIX_FORMATS.get(suffix)


def console(stream: IO[str], **kwargs: Any) -> Console:
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


def render_record(out: Console, record: dict[str, Any]) -> None:
    """One record as tables on ``out`` (``console``): the path and duration, the labels with their scores
    and bars, and the timeline's windows when the record has them."""
    from rich.table import Table
    from rich.text import Text

    # the path on its own line, never wrapped to the table's width
    title = Text(record["path"], style="bold") + Text(f"  {_duration(record['duration_s'])}", style="dim")
    out.print(title, soft_wrap=True)
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("label")
    table.add_column("score", justify="right")
    table.add_column("", no_wrap=True)
    for rank, item in enumerate(record["labels"], 1):
        table.add_row(str(rank), item["label"], f"{item['score']:.3f}", Text(score_bar(item["score"]), style="cyan"))
    if not record["labels"]:
        table.add_row("", Text("no label above the threshold", style="dim"), "", "")
    out.print(table)
    if record.get("windows"):
        windows = Table(show_edge=False, pad_edge=False, title="timeline", title_justify="left")
        windows.add_column("start", justify="right")
        windows.add_column("end", justify="right")
        windows.add_column("labels")
        for w in record["windows"]:
            names = ", ".join(f"{x['label']} {x['score']:.2f}" for x in w["labels"])
            windows.add_row(f"{w['start_s']:.2f}", f"{w['end_s']:.2f}", names)
        out.print(windows)
    out.print()


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


def to_json(record: Any, indent: int | None = None) -> str:
    """One line of JSON, UTF-8 text as it is, except two escapes: a file name that is not valid UTF-8
    (Python keeps its bytes as lone surrogates) as \\udcXX, so the output stays valid UTF-8; and the
    characters besides \\n that line readers such as str.splitlines break at (U+0085, U+2028, U+2029).
    A NaN or infinite number is null: JSON has no NaN. ``indent``: a document for people (``ast eval``)."""
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False, indent=indent)
    except ValueError:
        text = json.dumps(_finite(record), ensure_ascii=False, allow_nan=False, indent=indent)
    return _ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return [_finite(v) for v in value] if isinstance(value, (list, tuple)) else value


_ESCAPE = re.compile("[\ud800-\udfff\x85\u2028\u2029]")


def score_bar(score: float, width: int = 20) -> str:
    score = min(max(score, 0.0), 1.0) if math.isfinite(score) else 0.0
    full, part = divmod(round(score * width * 8), 8)
    return "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")


def _duration(seconds: float) -> str:
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(int(minutes), 60)
    return f"{hours}:{m:02d}:{s:05.2f}" if hours else f"{m}:{s:05.2f}"
