"""What ``ast tag`` and ``ast batch`` detected, read back from their output for ``ast clips``.

A detection is a label with a score over a stretch of one source file. The output may be JSON Lines
or a JSON array of records (their ``events`` with --merge, else their ``windows`` with --timeline),
or CSV/TSV rows with times (--merge: one event a row; --timeline: one window a row, label/score
pairs or, with --all-scores, a column a label). The format is told by the text, not the file name,
so standard input works too. No torch here.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

TIMES_HINT = "tag with --timeline or --merge, so each detection has a start and an end"
PLAIN_COLUMNS = frozenset({"path", "start_s", "end_s", "error", "duration_s"})


@dataclass(frozen=True)
class Detection:
    path: str  # the source as the record names it
    label: str
    score: float
    start_s: float
    end_s: float


def read_detections(text: str, name: str) -> list[Detection]:
    """Every detection of an output's ``text`` (``name`` for messages); records that failed are left out.
    UsageError for text that is no output of ours, or one without times."""
    head = text.lstrip()
    if not head:
        raise UsageError(f"{name}: is empty", hint="give the output of 'ast tag' or 'ast batch'")
    if head[0] in "[{":
        found, timed = _from_records(_records(text, name), name)
    else:
        found, timed = _from_rows(text, name)
    if not timed:
        raise UsageError(f"{name}: its results have no times", hint=TIMES_HINT)
    return found


def select(
    detections: Iterable[Detection],
    *,
    min_score: float | None = None,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    max_per_label: int | None = None,
) -> list[Detection]:
    """The detections to cut, best first: at least ``min_score``, labels in ``include`` (any case; all
    when empty) and not in ``exclude``, at most ``max_per_label`` of each label (its best ones)."""
    wanted = {label.casefold() for label in include}
    unwanted = {label.casefold() for label in exclude}
    kept = [
        d
        for d in detections
        if (min_score is None or d.score >= min_score)
        and (not wanted or d.label.casefold() in wanted)
        and d.label.casefold() not in unwanted
    ]
    kept.sort(key=lambda d: (-d.score, d.label, d.path, d.start_s))
    if max_per_label is None:
        return kept
    counts: dict[str, int] = {}
    chosen = []
    for d in kept:
        counts[d.label] = counts.get(d.label, 0) + 1
        if counts[d.label] <= max_per_label:
            chosen.append(d)
    return chosen


# -- JSON records ---------------------------------------------------------------------------------
def _records(text: str, name: str) -> Iterator[dict]:
    """The records of a JSON array, one JSON object, or JSON Lines."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, list):
        yield from (_record(item, name, i + 1, "item") for i, item in enumerate(whole))
        return
    if isinstance(whole, dict):
        yield _record(whole, name, 1, "line")
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{name}:{number}: not a JSON record ({exc.msg})", hint="give the output of 'ast tag' or 'ast batch'"
            ) from None
        yield _record(item, name, number, "line")


def _record(item: Any, name: str, number: int, where: str) -> dict:
    if not isinstance(item, dict) or not isinstance(item.get("path"), str):
        raise UsageError(f"{name}: {where} {number} is not a record with a 'path'", hint="give the output of 'ast tag'")
    return item


def _from_records(records: Iterable[dict], name: str) -> tuple[list[Detection], bool]:
    """Detections of records: their events when they have them, else their windows' labels."""
    found: list[Detection] = []
    timed = False
    for number, record in enumerate(records, 1):
        if record.get("error"):
            timed = True  # a failed file has no times, whatever the run's options
            continue
        try:
            found += _timed(record)
        except (KeyError, TypeError, ValueError):
            raise UsageError(
                f"{name}: record {number} ({record['path']}): an event or window without its times or scores",
                hint="give the output of 'ast tag' or 'ast batch'",
            ) from None
        timed = timed or "events" in record or "windows" in record
    return found, timed


def _timed(record: dict) -> list[Detection]:
    path = record["path"]
    if isinstance(record.get("events"), list):
        return [_detection(path, e["label"], e["score"], e["start_s"], e["end_s"]) for e in record["events"]]
    found = []
    for w in record.get("windows") or []:
        found += [_detection(path, x["label"], x["score"], w["start_s"], w["end_s"]) for x in w["labels"]]
    return found


def _detection(path: str, label: Any, score: Any, start: Any, end: Any) -> Detection:
    return Detection(path, str(label), float(score), float(start), float(end))


# -- CSV and TSV rows -----------------------------------------------------------------------------
def _from_rows(text: str, name: str) -> tuple[list[Detection], bool]:
    first = text.lstrip().split("\n", 1)[0]
    reader = csv.DictReader(io.StringIO(text.lstrip()), delimiter="\t" if "\t" in first else ",")
    columns = reader.fieldnames or []
    if "path" not in columns:
        raise UsageError(f"{name}: not a results table (no 'path' column)", hint="give the output of 'ast tag'")
    if "start_s" not in columns:
        return [], False
    pairs = [(f"label_{i}", f"score_{i}") for i in range(1, len(columns)) if f"label_{i}" in columns]
    if "label" in columns:
        pairs = [("label", "score")]
    per_label = [c for c in columns if c not in PLAIN_COLUMNS and not pairs]  # --all-scores: a column a label
    found = []
    for number, row in enumerate(reader, 2):
        if row.get("error") or not row.get("start_s"):
            continue
        try:
            start, end = float(row["start_s"]), float(row["end_s"])
            for label_col, score_col in pairs:
                if row.get(label_col):
                    found.append(Detection(row["path"], row[label_col], float(row[score_col]), start, end))
            for label in per_label:
                if row.get(label) and not math.isnan(score := float(row[label])):
                    found.append(Detection(row["path"], label, score, start, end))
        except (TypeError, ValueError):
            raise UsageError(f"{name}:{number}: a row without numbers for its times or scores") from None
    return found, True
