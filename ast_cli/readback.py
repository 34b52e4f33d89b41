"""Reading an ``ast batch`` output back for ``--resume``: which of its records may be kept.

An output is cut into units, one a record: a JSON line, or a file's consecutive CSV/TSV rows. Each
unit is checked: its fields (the keys and types of the JSON record, finite numbers, the row's width
and cells) and, with --timeline, its windows (from 0, one hop apart, the last one reaching the
duration). Then ``keep`` decides: a damaged unit is left out and its file tagged again; a second
record of a path is left out (the first whole one stays); and where the output is in input order,
every record after the first damaged one is left out as well, since a file tagged again is appended
at the end. What was left out is counted for one warning line. No torch here.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from .errors import UsageError

BLANK, DAMAGED, TIMELINE = "blank", "damaged", "timeline"  # why a unit is left out
END_SLACK_S = 0.03  # the fbank's frames stop short of the end by under 25 ms (a 400-sample frame every 160)


@dataclass(frozen=True, kw_only=True)
class Expect:
    """What a kept record must look like: the hop of the run that wrote it (its ``OUT.ast.json``), in
    seconds; whether this run writes in input order; and the writer's layout."""

    hop_s: float | None = None  # None: the spacing of windows is not checked
    ordered: bool = True
    timeline: bool = False
    merge: bool = False
    score_columns: Sequence[str] | None = None


@dataclass
class Unit:
    """One record's text in an output (with --timeline or --merge in CSV/TSV: a file's rows);
    ``name``: its path (None where none could be read); ``problem``: why it cannot be kept."""

    name: str | None
    text: str
    problem: str | None = None
    rows: list[list[str]] = field(default_factory=list)  # CSV/TSV: the rows read from ``text``


@dataclass
class Scan:
    """What an earlier run left in an output: the paths and number of the records kept, their text
    (``kept``, header included), and what was left out, counted."""

    names: set[str] = field(default_factory=set)
    count: int = 0
    kept: str = ""
    damaged: int = 0  # lines holding no whole record (blank lines too) or a record with bad fields
    timelines: int = 0  # records whose windows are not all there
    duplicates: int = 0  # second records of a path
    after: int = 0  # whole records after the first damaged one, left out to keep input order

    def warning(self, path: str) -> str | None:
        """One line saying what was left out, or None when everything was kept."""
        parts = []
        if self.damaged:
            parts.append(f"{self.damaged} damaged line(s) left out")
        if self.timelines:
            parts.append(f"{self.timelines} record(s) with missing or misplaced windows left out")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate record(s) left out (the first kept)")
        if self.after:
            parts.append(f"{self.after} record(s) after the first damaged one left out to keep input order")
        if not parts:
            return None
        redo = "; their files are tagged again" if self.damaged or self.timelines or self.after else ""
        return f"{path}: " + ", ".join(parts) + redo


def keep(units: list[Unit], ordered: bool, render: Callable[[list[str]], str]) -> Scan:
    """The units that may stay, in their order, as ``render`` joins their texts; ``ordered``: cut the
    output at the first damaged unit (a blank line loses no record: it is only dropped)."""
    scan, texts, cut, seen = Scan(), [], False, set()
    for unit in units:
        if unit.problem == BLANK:
            scan.damaged += 1
        elif unit.problem == TIMELINE:
            scan.timelines += 1
            cut = cut or ordered
        elif unit.problem is not None or unit.name is None:
            scan.damaged += max(1, unit.text.count("\n"))  # a file's rows, or the rest a quote swallowed
            cut = cut or ordered
        elif unit.name in seen:
            scan.duplicates += 1
        elif cut:
            scan.after += 1
        else:
            texts.append(unit.text)
            scan.names.add(unit.name)
        if unit.name is not None and unit.problem is None:
            seen.add(unit.name)
    scan.count = len(texts)
    scan.kept = render(texts) if texts else ""
    return scan


# -- JSON ------------------------------------------------------------------------------------------
def json_unit(line: str, expect: Expect) -> Unit:
    """A line of JSON Lines, or of a JSON array without its comma."""
    if not line.strip():
        return Unit(None, line, BLANK)
    record = json_record(line)
    if record is None:
        return Unit(None, line, DAMAGED)
    return Unit(record["path"], line, record_problem(record, expect))


def json_record(line: str) -> dict[str, Any] | None:
    """The record a line holds: a JSON object with a path; None for anything else."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    path = record.get("path") if isinstance(record, dict) else None
    return record if isinstance(path, str) and path else None


def record_problem(record: dict[str, Any], expect: Expect) -> str | None:
    """Why a JSON record cannot be kept (DAMAGED: a key missing or of the wrong type, a number not
    finite; TIMELINE: windows missing or out of place), or None."""
    if "error" in record:  # a failed file: its error, no duration, no labels
        whole = isinstance(record["error"], str) and record["error"] and record.get("labels") == []
        return None if whole and record.get("duration_s", 0) is None else DAMAGED
    duration = record.get("duration_s")
    if not finite(duration) or duration < 0 or not labels_ok(record.get("labels")):
        return DAMAGED
    if expect.score_columns is not None and not scores_ok(record.get("scores"), expect.score_columns):
        return DAMAGED
    if not (expect.timeline or expect.merge):
        return None
    windows = record.get("windows")
    if not isinstance(windows, list) or not all(window_ok(w, expect) for w in windows):
        return DAMAGED
    events = record.get("events", [])
    if expect.merge and not (isinstance(events, list) and all(map(event_ok, events))):
        return DAMAGED
    return timeline_problem([w["start_s"] for w in windows], [w["end_s"] for w in windows], duration, expect.hop_s)


def finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def labels_ok(items: Any) -> bool:
    """A record's or window's ``labels``: [{"label", "index", "score"}]."""
    return isinstance(items, list) and all(
        isinstance(item, dict)
        and isinstance(item.get("label"), str)
        and isinstance(item.get("index"), int)
        and finite(item.get("score"))
        for item in items
    )


def scores_ok(scores: Any, columns: Sequence[str]) -> bool:
    """``--all-scores``: a finite score for each label of the run, no other."""
    return isinstance(scores, dict) and set(scores) == set(columns) and all(map(finite, scores.values()))


def window_ok(window: Any, expect: Expect) -> bool:
    return (
        isinstance(window, dict)
        and finite(window.get("start_s"))
        and finite(window.get("end_s"))
        and labels_ok(window.get("labels"))
        and (expect.score_columns is None or scores_ok(window.get("scores"), expect.score_columns))
    )


def event_ok(event: Any) -> bool:
    times = finite(event.get("start_s")) and finite(event.get("end_s")) if isinstance(event, dict) else False
    return times and labels_ok([event])


# -- timelines -------------------------------------------------------------------------------------
def slack(value: float) -> float:
    """How far a written time may be from the true one: 3 decimals in JSON, 6 significant digits in CSV."""
    return 0.0005 + 5e-6 * abs(value) + 1e-9


def timeline_problem(starts: list[float], ends: list[float], duration: float | None, hop_s: float | None) -> str | None:
    """TIMELINE unless the windows are all there: the first at 0, each next one a hop later, the last
    one a hop or less after the one before (it is aligned with the end) and, where the record has its
    duration (JSON), ending there. A recording shorter than a frame has no window."""
    if not starts:
        return None if duration is None or duration <= END_SLACK_S else TIMELINE
    if abs(starts[0]) > slack(0.0) or any(end < start - slack(start) for start, end in zip(starts, ends, strict=True)):
        return TIMELINE
    if hop_s is not None and not spaced(starts, hop_s):
        return TIMELINE
    if duration is not None and not (duration - END_SLACK_S <= ends[-1] <= duration + slack(duration)):
        return TIMELINE
    return None


def spaced(starts: list[float], hop_s: float) -> bool:
    """Each start a hop after the one before; the last one a hop or less (it is aligned with the end)."""
    for i in range(1, len(starts)):
        step, allowed = starts[i] - starts[i - 1], slack(starts[i]) + slack(starts[i - 1])
        if abs(step - hop_s) > allowed and not (i == len(starts) - 1 and allowed < step < hop_s):
            return False
    return True


# -- CSV, TSV --------------------------------------------------------------------------------------
def scan_table(text: str, path: str, header: list[str], delimiter: str, expect: Expect) -> Scan:
    """The header's row, then the units of the rows after it; a header other than ``header`` is a
    UsageError (the output was written with other columns)."""
    rows = csv_rows(text, delimiter)
    head = next(rows, None)
    if head is None or not head[1].endswith("\n"):
        return Scan()  # not even the header is whole
    if head[0] != header:
        raise UsageError(
            f"--resume: {path} has other columns than this run would write",
            hint="resume with the same --top/--timeline/--merge/--all-scores, or use --force",
        )
    body = list(rows)
    if body and not body[-1][1].endswith("\n"):
        body.pop()  # torn
    units = table_units(body, header, expect)
    if header[1] == "start_s" and units:
        units.pop()  # several rows a record: the last file's may be partial (a full disk), so it goes
    return keep(units, expect.ordered, lambda texts: head[1] + "".join(texts))


def table_units(rows: list[tuple[list[str] | None, str]], header: list[str], expect: Expect) -> list[Unit]:
    """A unit a row or, with several rows a record (--timeline, --merge), a file's consecutive rows;
    a damaged row without a path among them spoils them, a blank line is left out."""
    several = header[1] == "start_s"
    units: list[Unit] = []
    current: Unit | None = None  # the unit the next rows of the same file join
    for row, piece in rows:
        if row == []:
            units.append(Unit(None, piece, BLANK))
            continue
        damaged = row is None or row_damaged(row, header, expect)
        name = row[0] if row else ""
        if several and current is not None and (name == current.name or (damaged and not name)):
            current.text += piece
            current.problem = current.problem or (DAMAGED if damaged else None)
            current.rows += [] if row is None else [row]
            continue
        current = Unit(name or None, piece, DAMAGED if damaged else None, [] if row is None else [row])
        units.append(current)
    for unit in units:
        if several and unit.problem is None:
            unit.problem = rows_problem(unit.rows, expect)
    return units


def row_damaged(row: list[str], header: list[str], expect: Expect) -> bool:
    """Whether a row is not one this run's writer writes: its width, its path, its cells."""
    if len(row) != len(header) or not row[0]:
        return True
    times = 2 if header[1] == "start_s" else 1  # start_s, end_s or duration_s
    body, error = row[1:-1], row[-1]
    if error or not any(body):  # a failed file (nothing but its error), or one with no window or event
        return any(body) or (times == 1 and not error)
    if not all(number(cell) is not None for cell in body[:times]):
        return True
    cells = body[times:]
    if expect.score_columns is not None and not expect.merge:
        return not all(number(cell) is not None for cell in cells)
    pairs = list(zip(cells[::2], cells[1::2], strict=True))
    filled = [bool(label) for label, _ in pairs]
    return (
        any(bool(label) != (number(score) is not None) for label, score in pairs)
        or filled != sorted(filled, reverse=True)  # the labels come first, the empty pairs after them
        or (expect.merge and not filled[0])
    )


def rows_problem(rows: list[list[str]], expect: Expect) -> str | None:
    """A file's rows, each whole: its windows must all be there (--timeline; CSV records no duration,
    so a missing last window cannot be seen), its events in order of start (--merge)."""
    if len(rows) == 1 and not any(rows[0][1:-1]):  # a failed file, or one with no window or event
        return None
    if any(not any(row[1:-1]) for row in rows):
        return DAMAGED
    starts = [float(row[1]) for row in rows]  # row_damaged checked they are numbers
    if expect.merge:
        return None if starts == sorted(starts) else DAMAGED
    return timeline_problem(starts, [float(row[2]) for row in rows], None, expect.hop_s)


def number(cell: str) -> float | None:
    """A cell's finite number, or None."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def csv_rows(text: str, delimiter: str) -> Iterator[tuple[list[str] | None, str]]:
    """Each row of ``text`` with the text it was read from (a torn last row has no newline); where the
    csv module gives up (a quote never closed), the rest, as row None."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]  # the last piece had no newline
    consumed = 0

    def feed() -> Iterator[str]:  # csv.reader takes one line at a time and never reads past the row it returns
        nonlocal consumed
        for line in lines:
            consumed += len(line)
            yield line

    start = 0
    try:
        for row in csv.reader(feed(), delimiter=delimiter):
            yield row, text[start:consumed]
            start = consumed
    except csv.Error:
        yield None, text[start:]


# -- event tables ----------------------------------------------------------------------------------
def scan_events(text: str, path: str, header: list[str], delimiter: str, expect: Expect) -> Scan:
    """An event table: the header's row, then a unit a file's consecutive rows, each row whole (width,
    times, label, index, score) and a file's events in order of start. A file without events has no
    row, so it is tagged again; the last file's rows go, as a full disk may have cut them."""
    rows = csv_rows(text, delimiter)
    head = next(rows, None)
    if head is None or not head[1].endswith("\n"):
        return Scan()  # not even the header is whole
    if head[0] != header:
        raise UsageError(f"--resume: {path} has other columns than this run would write", hint="use --force")
    units: list[Unit] = []
    for row, piece in rows:
        if not piece.endswith("\n"):
            break  # torn
        if row == []:
            units.append(Unit(None, piece, BLANK))
            continue
        damaged = row is None or not event_row_ok(row, len(header))
        name, last = (row[0] if row else ""), (units[-1] if units else None)
        if last is not None and last.problem != BLANK and (name == last.name or (damaged and not name)):
            last.text, last.problem = last.text + piece, last.problem or (DAMAGED if damaged else None)
            last.rows += [] if row is None else [row]
        else:
            units.append(Unit(name or None, piece, DAMAGED if damaged else None, [] if row is None else [row]))
    for unit in units:
        starts = [float(row[1]) for row in unit.rows] if unit.problem is None else []
        unit.problem = unit.problem or (None if starts == sorted(starts) else DAMAGED)
    whole = [i for i, unit in enumerate(units) if unit.problem != BLANK]
    if whole:
        del units[whole[-1]]
    return keep(units, expect.ordered, lambda texts: head[1] + "".join(texts))


def event_row_ok(row: list[str], width: int) -> bool:
    """A row of an event table: path, start_s, end_s, label, index, score."""
    if len(row) != width or not row[0] or not row[3] or not row[4].isdigit():
        return False
    start, end = number(row[1]), number(row[2])
    return start is not None and end is not None and start <= end and number(row[5]) is not None


# -- JSON Lines, JSON ------------------------------------------------------------------------------
def scan_jsonl(text: str, expect: Expect) -> Scan:
    """One record a line; what follows the last newline is torn."""
    units = [json_unit(line, expect) for line in text.split("\n")[:-1]]
    return keep(units, expect.ordered, lambda texts: "".join(text + "\n" for text in texts))


def scan_json(text: str, expect: Expect) -> Scan:
    """``[``, then one record a line, each but the last followed by a comma; the closing bracket may be
    missing (a killed run), a last line without its newline is torn. A damaged first line is a damaged
    record line: the kept records get a new ``[``."""
    lines = text.split("\n")
    body = lines[1:] if lines[0] == "[" else lines
    while body and body[-1] in ("", "]"):  # the closing bracket and the newline after it
        body.pop()
    torn = bool(body) and json_record(body[-1].removesuffix(",")) is None and not text.endswith("\n")
    units = [json_unit(line.removesuffix(","), expect) for line in (body[:-1] if torn else body)]
    return keep(units, expect.ordered, lambda texts: "[\n" + ",\n".join(texts))
