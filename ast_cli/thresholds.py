"""Decisions per label: a thresholds file (``ast eval --write-thresholds``), read back by ``ast tag``,
``ast batch`` and ``ast listen --thresholds FILE``, and label lists (``--include-from``/``--exclude-from``).

A thresholds file is JSON, as ``ast eval`` writes it::

    {"activation": "sigmoid", "criterion": "f1", "thresholds": {"Dog": 0.41, "Speech": 0.62},
     "per_label": {"Dog": {"threshold": 0.41, "f1": 0.8, "precision": 0.75, "recall": 0.86, "support": 7}}}

or a CSV/TSV a person writes: one ``label,threshold`` line a label (a header line is skipped). A label
missing from the file uses ``--threshold`` (or no threshold at all). No torch here.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError
from .files import write_atomic

MAX_FILE_BYTES = 16 << 20  # a label list or thresholds file of AudioSet's 527 labels is a few kB


@dataclass(frozen=True)
class Thresholds:
    """Per-label thresholds: ``per_label`` {label: score at or above which it is reported};
    ``activation`` the scores they were chosen on (None: unknown, a hand-written file); ``source``
    the file, for messages."""

    per_label: dict[str, float] = field(default_factory=dict)
    activation: str | None = None
    source: str = ""


def _text(path: str | os.PathLike, what: str) -> str:
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            raise UsageError(f"{path}: too large for a {what} ({os.path.getsize(path)} bytes)")
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a {what} (not UTF-8 text)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what} ({exc.strerror})") from None


def read_thresholds(path: str | os.PathLike) -> Thresholds:
    """A thresholds file: ``ast eval``'s JSON or ``label,threshold`` lines (CSV or TSV)."""
    text = _text(path, "thresholds file")
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise UsageError(f"{path}: not valid JSON", hint="write it with ast eval --write-thresholds") from None
        pairs = data.get("thresholds") if isinstance(data, dict) else None
        if not isinstance(pairs, dict):
            raise UsageError(f'{path}: no "thresholds" object', hint="write it with ast eval --write-thresholds")
        activation = data.get("activation")
        items = list(pairs.items())
    else:
        activation = None
        items = _rows(text, path)
    per_label: dict[str, float] = {}
    seen: set[str] = set()
    for label, value in items:
        number = _number(value)
        if number is None:
            raise UsageError(f"{path}: the threshold of {label!r} is not a finite number: {value!r}")
        if str(label).lower() in seen:
            raise UsageError(f"{path}: {label!r} is given twice")
        seen.add(str(label).lower())
        per_label[str(label)] = number
    if not per_label:
        raise UsageError(f"{path}: no thresholds in it", hint="one label,threshold line a label")
    return Thresholds(per_label, activation if isinstance(activation, str) else None, str(path))


def _rows(text: str, path: str | os.PathLike) -> list[tuple[str, str]]:
    delimiter = "\t" if "\t" in text.split("\n", 1)[0] else ","
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row and row[0].strip()]
    rows = [row for row in rows if not row[0].lstrip().startswith("#")]
    if rows and len(rows[0]) == 2 and rows[0][1].strip().lower() == "threshold":  # a header line
        rows = rows[1:]
    for number, row in enumerate(rows, 1):
        if len(row) != 2:
            raise UsageError(f"{path}: line {number} is not label,threshold: {delimiter.join(row)!r}")
    return [(row[0].strip(), row[1].strip()) for row in rows]


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and not isinstance(value, bool) else None


def write_thresholds(path: str | os.PathLike, document: dict[str, Any]) -> None:
    """``ast eval``'s thresholds file, written atomically."""
    write_atomic(path, json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def read_label_list(path: str | os.PathLike) -> list[str]:
    """``--include-from``/``--exclude-from``: one label a line; blank lines and ``#`` comments skipped."""
    lines = [line.strip() for line in _text(path, "label list").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]
