"""``ast batch``: tag a whole collection, streaming, with decoding in worker processes.

The run: inputs are walked lazily (``inputs.py``) and what ``--resume`` finds in the output is
skipped; each input goes to a source of decoded windows (``workers``: the main process or decode
workers, or with ``--engine ray`` ``distributed.RaySource``, where Ray's tasks decode and its actors
run the model); ``pipeline.Pipeline`` batches windows of any files for the model and turns each file's
window scores into the record ``ast tag`` makes. This module checks the output, opens it with its
settings, writes each record in one write (in input order, or as they finish with ``unordered``), so
a stopped run loses only the files in flight, closes it however the run ends and says the summary.

Memory is bounded: at most ``2 x workers`` files are in flight, the result queue holds a few
chunks, and no list of the whole collection is kept (the resume set holds output paths only).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch

from . import threads
from .errors import Interrupted, Terminated, UsageError
from .features import FRAMES_PER_SECOND
from .inference import Tagger
from .inputs import Counts, Input, InputSpec
from .options import BatchFormat, BatchOptions, Engine, FeatureFrontend, TagOptions
from .outputs import Output, check_outputs, open_outputs, outputs_of, plan_outputs, run_options
from .pipeline import Pipeline
from .progress import Progress
from .readback import Expect
from .records import RecordMaker
from .sinks import Sink, write_error
from .targets import model_files
from .windows import WindowSpec
from .workers import InlineSource, Source, WorkerPool

if TYPE_CHECKING:
    from .distributed import RaySource

Log = Callable[[str], None]  # where the run's lines go (errors, warnings, the summary)
SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None  # what signal.signal returns


def default_workers(device: torch.device) -> int:
    """Decode workers beside the model. On a CPU the model is the bottleneck and decoding a clip is a
    few percent of a window's time: on 2 cores a worker only takes cycles from the model's threads
    (benchmarks/batch_throughput.py), so none; on more cores one per 8. A GPU needs the CPU to keep
    up: most cores decode."""
    cores = threads.available_cpus()
    if device.type == "cpu":
        return 0 if cores <= 2 else max(1, cores // 8)
    return max(1, min(8, cores - 1))


@dataclass
class Summary:
    tagged: int = 0
    failed: int = 0
    resumed: int = 0  # already in the output (--resume)
    counts: Counts = field(default_factory=Counts)
    audio_s: float = 0.0
    seconds: float = 0.0
    stopped: str | None = None  # why the run stopped early

    def line(self) -> str:
        head = f"{self.stopped}: " if self.stopped else ""
        return head + self.counts_line()

    def stop_line(self, total: int | None, resumable: bool) -> str:
        """The one line of a stopped run, as README's exit status table shows it: 'interrupted after 3
        of 10 file(s)' (the files of this run; 'of' once they are counted), then the counts."""
        of = f" of {total}" if total is not None else ""
        again = " (continue with --resume)" if resumable else ""
        return f"{self.stopped} after {self.tagged + self.failed}{of} file(s): {self.counts_line()}{again}"

    def counts_line(self) -> str:
        parts = [f"{self.tagged} tagged", f"{self.failed} failed"]
        if self.counts.skipped:
            parts.append(f"{self.counts.skipped} skipped (hidden or not audio)")
        if self.resumed:
            parts.append(f"{self.resumed} already in the output")
        if self.counts.other_shard:
            parts.append(f"{self.counts.other_shard} in other shards")
        done = self.tagged + self.failed
        speed = f"{self.seconds:.1f} s"
        if done and self.seconds > 0:  # no rate for a run that read nothing (a finished output resumed)
            speed += f", {done / self.seconds:.2f} files/s"
            if self.audio_s:
                speed += f", {self.audio_s / self.seconds:.0f}x real time"
        return f"{', '.join(parts)}; {speed}"


# -- the run ------------------------------------------------------------------------------------
def run_settings(
    tagger: Tagger, options: TagOptions, inputs: InputSpec, fmt: BatchFormat, precision: str | None = None
) -> dict:
    """What changes the results; recorded beside the output and compared by ``--resume`` (``precision``:
    what the model computes in where it is not this process's ``tagger``: Ray's actors)."""
    window, hop = tagger.window_hop_frames(options)
    source = tagger.checkpoint.source
    settings = {
        "model": os.path.abspath(source) if os.path.exists(source) else source,
        "format": fmt,
        "window_frames": window,
        "hop_frames": hop,
        "aggregate": options.aggregate,
        "top": options.top,
        "threshold": options.threshold,
        "activation": options.activation or tagger.default_activation(),
        "precision": precision or tagger.precision,
        "include": sorted(x.lower() for x in options.include),
        "exclude": sorted(x.lower() for x in options.exclude),
        "timeline": options.timeline,
        "merge": options.merge,
        "all_scores": options.all_scores,
        "channel": options.channel,
        "relative": inputs.relative,
    }
    # recorded only when not the default: a settings file without the key means the default
    if tagger.spec.frontend != FeatureFrontend.transformers:
        settings["frontend"] = tagger.spec.frontend
    if options.crop_short:
        settings["crop_short"] = True
    if tagger.model.keep_rate < 1:
        settings["keep_tokens"] = tagger.model.keep_rate
    if options.thresholds is not None:  # the values, not the file's name: an edited file changes results
        settings["thresholds"] = {k.lower(): v for k, v in sorted(options.thresholds.per_label.items())}
    return settings


def run_batch(
    tagger: Tagger, inputs: InputSpec, tag_options: TagOptions, options: BatchOptions, log: Log | None = None
) -> Summary:
    """Tag every input into ``options.out`` (and ``options.more_outputs``); returns the summary (also
    printed through ``log``)."""
    outputs = plan_outputs(options, tag_options)
    tag_options = run_options(outputs)  # windows and events where any output holds them
    maker = tagger.record_maker(tag_options)  # unknown labels fail before any work
    spec = tagger.window_spec(tag_options)
    model = model_files(tagger.spec.source, tagger.spec.labels)
    stdin = check_outputs(outputs, inputs, options.resume, model)  # never write over an input
    ray = _ray_source(tagger, spec, tag_options, options)  # a cluster that cannot be reached leaves no output
    try:
        sink, summary, items = _open_output(tagger, inputs, options, maker, ray, outputs, stdin)
    except BaseException:
        if ray is not None:
            ray.close()
        raise
    workers = default_workers(tagger.device) if options.workers is None else options.workers
    threads.for_model(workers=workers)  # one thread a decode worker, the rest for the model
    source: Source = ray or (WorkerPool(spec, workers) if workers > 0 else InlineSource(spec))
    progress = Progress(enabled=options.progress)
    say: Log = log or (lambda line: progress.write(f"ast: {line}"))
    if inputs.countable():
        _count_in_background(inputs, progress, sink)
    start = time.monotonic()
    previous = _sigterm_raises()
    pipeline = Pipeline(tagger, tag_options, maker, source, sink, options.unordered, progress.tick)
    records = pipeline.records(_not_done(items, sink, summary))
    try:
        _write_records(records, sink, summary, progress, say, options, workers)
    except KeyboardInterrupt:
        summary.stopped = "interrupted"
    except Terminated:
        summary.stopped = "terminated"
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if stdin is not None:
            stdin.close()
        source.close()
        progress.close()
        _close_output(sink, summary, options, start, say)
    if summary.stopped in ("interrupted", "terminated"):  # the one line of the stop is the error's
        stop = Interrupted if summary.stopped == "interrupted" else Terminated
        raise stop(summary.stop_line(progress.total, resumable=resumable(options)))
    return summary


def resumable(options: BatchOptions) -> bool:
    """Whether ``--resume`` can continue the run: every output is a file or a folder."""
    return all(out != "-" for out, _ in outputs_of(options))


def _ray_source(tagger: Tagger, spec: WindowSpec, tag_options: TagOptions, options: BatchOptions) -> RaySource | None:
    """With ``--engine ray``, the cluster's source, joined before the output is opened."""
    if options.engine != Engine.ray:
        return None
    if tag_options.crop_short:  # Ray Data batches windows of many files: rows of one length each
        raise UsageError("--crop-short is not available with --engine ray", hint="use --engine local")
    from .distributed import RaySource

    return RaySource(tagger, spec, tag_options, options)


def _open_output(
    tagger: Tagger,
    inputs: InputSpec,
    options: BatchOptions,
    maker: RecordMaker,
    ray: RaySource | None,
    outputs: list[Output],
    stdin: Iterable[str] | None,
) -> tuple[Sink, Summary, Iterator[Input]]:
    """The sink (each output's settings checked with ``--resume``, then written beside it), the summary
    to fill and the inputs, once the first is known to exist."""
    precision = ray.precision if ray else None
    summary = Summary()
    items = inputs.iter(summary.counts, stdin)
    first = next(items, None)
    if first is None and not summary.counts.other_shard:
        raise UsageError(
            "no audio files to tag", hint=f"looked for {', '.join(sorted(inputs.extensions)[:8])}, ... (--ext)"
        )
    window, hop = tagger.window_hop_frames(maker.options)
    # what --resume keeps: records of the recorded hop (check_settings made it this run's), in input order
    expect = Expect(hop_s=hop / FRAMES_PER_SECOND, ordered=not options.unordered)
    sink = open_outputs(
        outputs,
        options,
        layout=lambda output: dict(
            columns=output.own.top or len(tagger.labels),
            timeline=output.own.timeline,
            merge=output.own.merge,
            score_columns=maker.score_columns,
        ),
        settings=lambda output: run_settings(tagger, output.own, inputs, output.fmt, precision=precision),
        expect=expect,
    )
    return sink, summary, _chain(first, items)


def _write_records(
    records: Iterator[dict],
    sink: Sink,
    summary: Summary,
    progress: Progress,
    log: Log,
    options: BatchOptions,
    workers: int,
) -> None:
    """Each record to the sink, counted once written: the summary says what the output holds."""
    follow_load = options.engine != Engine.ray  # Ray's processes here are this run's own: the load says nothing
    for record in records:
        if follow_load:
            threads.refresh(workers=workers)  # a run of hours follows the machine's load (every 30 s)
        failed = "error" in record
        if failed:
            log(f"error: {record['error']}")
        try:
            sink.write(record)
        except BrokenPipeError:  # the reader of stdout went away: exit 141, as shells expect
            raise
        except OSError as exc:
            summary.stopped = "stopped"
            raise write_error(exc, options.out, summary.tagged + summary.failed, resumable=resumable(options)) from None
        summary.failed += failed
        summary.tagged += not failed
        summary.audio_s += record["duration_s"] or 0.0
        progress.update(record["duration_s"] or 0.0, failed)


def _close_output(sink: Sink, summary: Summary, options: BatchOptions, start: float, log: Log) -> None:
    """Close the sink, then log the warnings and the summary line, however the run ended."""
    try:
        sink.close()
    except BrokenPipeError:
        raise
    except OSError as exc:  # the closing bracket of a JSON array on a full disk: --resume mends it
        if summary.stopped is None:
            summary.stopped = "stopped"
            raise write_error(exc, options.out, summary.tagged + summary.failed, resumable=True) from None
    finally:
        summary.seconds = time.monotonic() - start
        for pattern in summary.counts.unmatched:
            log(f"warning: {pattern}: no file matches")
        if summary.stopped not in ("interrupted", "terminated"):  # those say it in their own line
            log(summary.line() + (" (continue with --resume)" if summary.stopped and resumable(options) else ""))


def _chain(first: Input | None, rest: Iterator[Input]) -> Iterator[Input]:
    if first is not None:
        yield first
    yield from rest


def _not_done(items: Iterator[Input], sink: Sink, summary: Summary) -> Iterator[Input]:
    """The inputs the output does not hold yet (``--resume``), counting the others as resumed."""
    for item in items:
        if sink.done(item.name):
            summary.resumed += 1
        else:
            yield item


def _sigterm_raises() -> SignalHandler:
    """SIGTERM -> Terminated, so the output is closed; returns the handler to put back (None: none was
    set). The ast process has its own (import-safe) handler already, and only the main thread may set one."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL,
        None,
    ):
        return signal.signal(signal.SIGTERM, _raise_terminated)
    return None


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated("terminated")


def _count_in_background(inputs: InputSpec, progress: Progress, sink: Sink) -> None:
    """The total for the progress line, from a second walk of the inputs (files not yet done)."""

    def count() -> None:
        try:
            total = sum(1 for item in inputs.iter() if not sink.done(item.name))
        except Exception:
            return
        progress.set_total(total)

    threading.Thread(target=count, name="ast-count", daemon=True).start()
