"""``ast batch``'s outputs: each ``-o`` with its format, checked against the inputs before anything is
opened, then opened with its settings beside it. Several outputs of one run go through ``FanOut``,
which hands each one the record a run of its own would have written, so ``-o tags.csv -o raven/``
gives what two runs give. No torch here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

from .errors import UsageError
from .inputs import InputSpec
from .options import BatchFormat, BatchOptions, TagOptions, as_choice
from .readback import Expect
from .sinks import Sink, check_settings, open_batch_output, remove_new_output, settings_path
from .targets import Target, refuse_overlap, target
from .writers import writes_events, writes_folder


@dataclass(frozen=True)
class Output:
    """One ``-o``: its path (``-``: standard output), its format, what the file system says it is
    (``target``; None for standard output) and ``own``, the tag options of the records it holds."""

    out: str
    fmt: BatchFormat
    target: Target | None
    own: TagOptions

    @property
    def stream(self) -> bool:
        """Standard output, a pipe or a device: written from the start, no settings file beside it."""
        return self.target is None or self.target.stream


def outputs_of(options: BatchOptions) -> list[tuple[str, BatchFormat]]:
    """Every output with its format: ``out`` first, then ``more_outputs``; a path given twice is refused."""
    more = [(out, as_choice(BatchFormat, fmt, "fmt")) for out, fmt in options.more_outputs]
    outputs = [(options.out, options.fmt), *more]
    seen: set[str] = set()
    for out, _ in outputs:
        if out in seen:
            raise UsageError(f"{out}: given twice as -o", hint="each output needs its own path")
        seen.add(out)
    return outputs


def plan_outputs(options: BatchOptions, tag_options: TagOptions) -> list[Output]:
    """Every output of the run, in the order given."""
    return [
        Output(out, fmt, None if out == "-" else target(out), own_options(tag_options, fmt))
        for out, fmt in outputs_of(options)
    ]


def own_options(tag_options: TagOptions, fmt: str) -> TagOptions:
    """What an output of ``fmt`` holds: a format made of events (audacity, raven, the event tables)
    merges the windows, as ``--merge`` does."""
    if writes_events(fmt) and not tag_options.merge:
        return dataclasses.replace(tag_options, merge=True)
    return tag_options


def run_options(outputs: list[Output]) -> TagOptions:
    """What the run computes for all its outputs: windows and events where any output holds them
    (``merge`` implies ``timeline``, and the outputs differ in nothing else)."""
    return next((output.own for output in outputs if output.own.merge), outputs[0].own)


def check_outputs(outputs: list[Output], inputs: InputSpec, resume: bool, model: list[str]) -> IO[str] | None:
    """Refuse an output that is one of the inputs (or the model's files), or would be found among them
    once written, or (a folder of files) is, holds or lies in an input folder; and ``--resume`` on a
    stream. Returns standard input's path list when it had to be read here (see below), else None.

    The inputs are a generator, and an output is opened (truncated with ``--force``, cut back with
    ``--resume``) before most of them are known. An output that does not exist yet holds no bytes to
    lose: it is refused when an argument would find it, and a ``--files-from`` line naming it becomes
    an error record (``Pipeline``). An output that exists is compared by identity with every input
    first, one name at a time (a stat each, no list kept): the one way to see it through ``**``,
    linked folders, hard links and path lists before its bytes are gone. Standard input cannot be
    read twice, so its list is kept in a temporary file for the run."""
    existing: list[Target] = []
    for output in outputs:
        if output.stream:
            if resume:
                raise UsageError(
                    f"{output.out}: --resume needs an output file, and this is a stream",
                    hint="a stream is written from the start: leave out --resume",
                )
        elif writes_folder(output.fmt):
            if inputs.overlaps(output.out):
                raise UsageError(
                    f"{output.out}: the label folder is, holds or lies in an input folder",
                    hint="write the labels outside the folders being tagged",
                )
        else:
            found_in = inputs.would_find(output.out)
            if found_in is not None:
                raise UsageError(
                    f"{output.out}: the output would be read as an input (found by {found_in})",
                    hint="write it outside the files and folders being tagged",
                )
            if output.target is not None and output.target.exists:
                existing.append(output.target)
    if not existing:
        return None
    stdin = spool(sys.stdin) if inputs.files_from == "-" else None
    listed = (item.path for item in inputs.iter(stdin=stdin))
    refuse_overlap(existing, itertools.chain(model, listed))
    if stdin is not None:
        stdin.seek(0)
    return stdin


def spool(lines: Iterable[str]) -> IO[str]:
    """Standard input's lines in an unnamed temporary file (on disk: a list of millions of paths)."""
    spooled = tempfile.TemporaryFile("w+", encoding="utf-8", errors="surrogateescape", newline="\n")
    spooled.writelines(lines)
    spooled.seek(0)
    return spooled


def open_outputs(
    outputs: list[Output],
    options: BatchOptions,
    *,
    layout: Callable[[Output], dict[str, Any]],
    settings: Callable[[Output], dict[str, Any]],
    expect: Expect,
) -> Sink:
    """Every output's sink with its settings beside it (``layout``: its writer's keywords). With
    ``--resume`` every output's recorded settings are compared before any is opened; an output that
    cannot be opened closes the ones opened before it and removes those this run made."""
    if options.resume:
        for output in outputs:
            side = settings_path(output.out, output.fmt)
            if not output.stream and (side.exists() or os.path.exists(output.out)):
                check_settings(side, settings(output))
    opened: list[tuple[Output, Sink, bool]] = []
    try:
        for output in outputs:
            created = not output.stream and not os.path.exists(output.out)
            side = settings_path(output.out, output.fmt)
            sink = open_batch_output(
                output.out,
                output.fmt,
                options,
                layout(output),
                side,
                settings(output),
                expect,
                stream=output.stream,
            )
            opened.append((output, sink, created))
    except BaseException:
        for output, sink, created in opened:
            with contextlib.suppress(OSError):
                sink.close()
            if created:
                remove_new_output(output.out, settings_path(output.out, output.fmt))
        raise
    if len(opened) == 1:
        return opened[0][1]
    return FanOut([(output, sink) for output, sink, _ in opened])


class FanOut(Sink):
    """Several outputs of one run. An input is done when every output holds it (``--resume``: each
    output keeps what it has, and a file one of them lacks is tagged again for that one alone); a
    record goes to each output that lacks it, without the windows or events that output's own run
    would not have made."""

    def __init__(self, parts: list[tuple[Output, Sink]]):
        self.parts = parts

    def done(self, name: str) -> bool:
        return all(sink.done(name) for _, sink in self.parts)

    def holds(self, path: str) -> bool:
        return any(sink.holds(path) for _, sink in self.parts)

    def write(self, record: dict[str, Any]) -> None:
        for output, sink in self.parts:
            if sink.done(record["path"]):
                continue
            try:
                sink.write(trim(record, output.own))
            except OSError as exc:  # the summary line names the output the machine stopped
                if exc.filename is None:
                    exc.filename = output.out
                raise

    def close(self) -> None:
        failure: BaseException | None = None
        for _, sink in self.parts:
            try:
                sink.close()
            except BaseException as exc:  # every output is closed; the first failure is raised
                failure = failure or exc
        if failure is not None:
            raise failure


def trim(record: dict[str, Any], own: TagOptions) -> dict[str, Any]:
    """``record`` as a run with ``own`` makes it: no ``events`` without merge, no ``windows`` without
    a timeline."""
    drop = {key for key, kept in (("events", own.merge), ("windows", own.timeline)) if not kept}
    return {key: value for key, value in record.items() if key not in drop}
