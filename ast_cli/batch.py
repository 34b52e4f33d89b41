"""``ast batch``: tag a whole collection, streaming, with decoding in worker processes.

The pipeline: inputs are walked lazily (``inputs.py``); each input goes to a decode worker, which
reads, resamples, computes the fbank once and cuts it into normalised windows (``iter_windows``,
the code ``ast tag`` runs), sending them back in small chunks; the main process stacks windows of
any files into batches for the model, collects each file's window scores and turns them into the
record ``ast tag`` makes (``Tagger.record``). Records go out in input order (or as they finish
with ``unordered``), each in one write, so a stopped run loses only the files in flight.
With ``--engine ray`` the source of scored windows is ``distributed.RaySource`` (Ray's tasks decode,
its actors run the model); the inputs, the order, the records and the output are this module's.

Memory is bounded: at most ``2 x workers`` files are in flight, the result queue holds a few
chunks, and no list of the whole collection is kept (the resume set holds output paths only).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from . import threads
from .errors import EXIT_USAGE, OutputError, Terminated, UsageError
from .inference import Tagger
from .inputs import Counts, Input, InputSpec
from .options import BatchFormat, BatchOptions, Engine, FeatureFrontend, TagOptions
from .progress import Progress
from .records import FileResult, RecordMaker, ScoreRows
from .sinks import Sink, check_settings, open_sink, settings_path, write_settings
from .version import __version__
from .windows import WindowSpec, decode

FILES_PER_WORKER = 2  # in flight per worker: one decoding, one queued so it never idles
WORKER_PRELOAD = ("ast_cli.batch", "soundfile", "torchaudio.functional", "torchaudio.compliance.kaldi")
MAX_AHEAD = 256  # files taken past the one the in-order output waits on: bounds what a slow file holds back
POLL_SECONDS = 0.5  # how often a waiting main process checks its workers and the progress line


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
        head = f"{self.stopped}: " if self.stopped else ""
        return f"{head}{', '.join(parts)}; {speed}"


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
    if (
        tagger.spec.frontend != FeatureFrontend.transformers
    ):  # recorded only when not the default: a settings file without the key means the default
        settings["frontend"] = tagger.spec.frontend
    return settings


def run_batch(tagger: Tagger, inputs: InputSpec, tag_options: TagOptions, options: BatchOptions, log=None) -> Summary:
    """Tag every input into ``options.out``; returns the summary (also printed through ``log``)."""
    if options.fmt == BatchFormat.audacity and not tag_options.merge:  # a label track holds events
        tag_options = dataclasses.replace(tag_options, merge=True)
    maker = tagger.record_maker(tag_options)  # unknown labels fail before any work
    spec = tagger.window_spec(tag_options)
    if options.out != "-":  # before anything is opened for writing: never write over an input
        if options.fmt == BatchFormat.audacity and inputs.overlaps(options.out):
            raise UsageError(
                f"{options.out}: the label folder is, holds or lies in an input folder",
                hint="write the labels outside the folders being tagged",
            )
        if options.fmt != BatchFormat.audacity and inputs.would_read(options.out):
            raise UsageError(
                f"{options.out}: the output would be one of the inputs",
                hint="write it outside the files and folders being tagged",
            )
    source = None
    if options.engine == Engine.ray:  # joins the cluster first: a cluster that cannot be reached leaves no output
        from .distributed import RaySource

        source = RaySource(tagger, spec, tag_options, options)
    try:
        settings = run_settings(
            tagger, tag_options, inputs, options.fmt, precision=source.precision if source else None
        )
        side = settings_path(options.out, options.fmt)
        if options.resume and (side.exists() or os.path.exists(options.out)):
            check_settings(side, settings)
        writer_options = dict(
            columns=tag_options.top or len(tagger.labels),
            timeline=tag_options.timeline,
            merge=tag_options.merge,
            score_columns=maker.score_columns,
        )
        summary = Summary()
        items = inputs.iter(summary.counts)
        first = next(items, None)
        if first is None and not summary.counts.other_shard:
            raise UsageError(
                "no audio files to tag", hint=f"looked for {', '.join(sorted(inputs.extensions)[:8])}, ... (--ext)"
            )
        sink = open_sink(options.out, options.fmt, writer_options, resume=options.resume, force=options.force)
        if options.out != "-":
            write_settings(side, settings, __version__)
    except BaseException:
        if source is not None:
            source.close()
        raise

    workers = default_workers(tagger.device) if options.workers is None else options.workers
    threads.for_model(workers=workers)  # one thread a decode worker, the rest for the model
    source = source or (WorkerPool(spec, workers) if workers > 0 else InlineSource(spec))
    progress = Progress(enabled=options.progress)
    log = log or (lambda line: progress.write(f"ast: {line}"))
    if inputs.countable():
        _count_in_background(inputs, progress, sink)
    start = time.monotonic()
    # SIGTERM -> Terminated, so the output is closed; the ast process has its own (import-safe) handler already
    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL,
        None,
    ):
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    records = _pipeline(
        tagger, tag_options, maker, _chain(first, items), source, sink, summary, options.unordered, progress.tick
    )
    follow_load = (
        options.engine != Engine.ray
    )  # Ray's processes here are this run's own: the load says nothing of other work
    try:
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
                raise write_error(
                    exc, options.out, summary.tagged + summary.failed, resumable=options.out != "-"
                ) from None
            summary.failed += failed  # counted once written: the summary says what the output holds
            summary.tagged += not failed
            summary.audio_s += record["duration_s"] or 0.0
            progress.update(record["duration_s"] or 0.0, failed)
    except KeyboardInterrupt:
        summary.stopped = "interrupted"
        raise
    except Terminated:
        summary.stopped = "terminated"
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        source.close()
        progress.close()
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
            log(summary.line() + (" (continue with --resume)" if summary.stopped and options.out != "-" else ""))
    return summary


def write_error(exc: OSError, out: str, written: int, resumable: bool) -> OutputError:
    """What the environment did to the output (a full disk, a read-only or vanished folder), as one line."""
    what = exc.strerror or type(exc).__name__
    where = exc.filename or out
    if written == 0:
        return OutputError(
            f"{where}: {what} (nothing was written)", hint="free space or choose another -o", exit_code=EXIT_USAGE
        )
    again = "; run the same command with --resume when there is room" if resumable else ""
    return OutputError(f"{where}: {what} after {written} record(s){again}", hint="what was written stays valid")


def _chain(first: Input | None, rest: Iterator[Input]) -> Iterator[Input]:
    if first is not None:
        yield first
    yield from rest


def _raise_terminated(signum, frame):
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


@dataclass
class _FileState:
    item: Input
    starts: list[int] = field(default_factory=list)
    scores: ScoreRows = field(default_factory=ScoreRows)
    expected: int | None = None  # windows, known once the worker is done with the file
    duration_s: float = 0.0
    error: str | None = None


def _pipeline(
    tagger: Tagger,
    options: TagOptions,
    maker: RecordMaker,
    items: Iterator[Input],
    source,
    sink: Sink,
    summary: Summary,
    unordered: bool,
    tick,
) -> Iterator[dict]:
    """Records of the inputs (skipping what the sink already has), batching windows across files."""
    states: dict[int, _FileState] = {}
    pending: deque[tuple[int, int, np.ndarray]] = deque()  # (seq, start frame, (T, F) features)
    finished: dict[int, dict] = {}
    next_seq = next_out = 0
    exhausted = False
    batch_size = tagger.windows_per_batch(options)

    def finish(seq: int) -> None:
        state = states.pop(seq)
        result = FileResult(
            path=state.item.name,
            duration_s=state.duration_s,
            starts=state.starts,
            scores=state.scores,
            error=state.error,
        )
        finished[seq] = maker.record(result)

    def ready(seq: int) -> bool:
        state = states[seq]
        return state.error is not None or (state.expected is not None and len(state.scores) == state.expected)

    while True:
        while (
            not exhausted and source.has_room() and (unordered or next_seq - next_out < source.max_ahead)
        ):  # keep the workers fed
            item = next(items, None)
            if item is None:
                exhausted = True
            elif sink.done(item.name):
                summary.resumed += 1
            elif sink.holds(item.path):  # a --files-from line naming the output itself
                finished[next_seq] = {
                    "path": item.name,
                    "duration_s": None,
                    "labels": [],
                    "error": f"{item.name}: is this run's output, not read",
                }
                next_seq += 1
            else:
                states[next_seq] = _FileState(item)
                source.submit(next_seq, item.path)
                next_seq += 1
        if exhausted and not states and not finished:
            break
        message = None if len(pending) >= batch_size else source.get(block=not pending and bool(states))
        if message is None:
            if not pending:
                tick()  # waiting on a long file: the status line still comes
            else:  # a full batch, or nothing else is ready: keep the model busy
                batch = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
                scores = tagger.scores(torch.from_numpy(np.stack([w[2] for w in batch])), options.activation)
                for (seq, start, _), row in zip(batch, scores, strict=True):
                    state = states.get(seq)
                    if state is not None and state.error is None:
                        state.starts.append(start)
                        state.scores.append(row)
                        if ready(seq):
                            finish(seq)
        else:
            kind, seq = message[0], message[1]
            state = states.get(seq)
            if state is None or state.error is not None:
                continue
            if kind == "w":
                pending.extend((seq, start, feats) for start, feats in zip(message[2], message[3], strict=True))
            elif kind == "s":  # windows scored elsewhere (a Ray actor), in order
                state.starts.extend(message[2])
                state.scores.extend(message[3])
            elif kind == "d":
                state.expected, state.duration_s = message[2], message[3]
            else:
                state.error = message[2]
                pending = deque(w for w in pending if w[0] != seq)  # its windows need no model time
            if ready(seq):
                finish(seq)
        if unordered:
            for seq in list(finished):
                yield finished.pop(seq)
        else:
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1


# -- decoding: in the main process, or in workers ---------------------------------------------------
class InlineSource:
    """Decoding in the main process, one file at a time (``--workers 0``)."""

    max_ahead = MAX_AHEAD

    def __init__(self, spec: WindowSpec):
        self.spec = spec
        self._current: Iterator[tuple] | None = None
        self._queue: deque[tuple[int, str]] = deque()

    def has_room(self) -> bool:
        return not self._queue and self._current is None

    def submit(self, seq: int, path: str) -> None:
        self._queue.append((seq, path))

    def get(self, block: bool) -> tuple | None:
        while True:
            if self._current is None:
                if not self._queue:
                    return None
                self._current = decode(*self._queue.popleft(), self.spec)
            message = next(self._current, None)
            if message is not None:
                return message
            self._current = None

    def close(self) -> None:
        self._current = None


class WorkerPool:
    """Decode workers, each with a pipe of its own each way. A worker that dies (killed, out of
    memory) fails only its own files and is replaced; a message it tore is never read as data.

    Workers are forked from a server process that imported torch once (``forkserver``): they start
    at once, hold no copy of the model, and inherit none of this process's threads or pipes, so
    the end of a worker's pipe closes with it. Messages go synchronously (no feeder thread), one in
    flight per worker, which bounds memory.
    """

    max_ahead = MAX_AHEAD

    def __init__(self, spec: WindowSpec, workers: int):
        self.spec = spec
        methods = mp.get_all_start_methods()
        self.ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        if "forkserver" in methods:
            self.ctx.set_forkserver_preload(list(WORKER_PRELOAD))
        self.workers: list[_Worker] = [self._start() for _ in range(workers)]
        self.lost: deque[tuple] = deque()

    def _start(self) -> _Worker:
        tasks_r, tasks_w = self.ctx.Pipe(duplex=False)
        results_r, results_w = self.ctx.Pipe(duplex=False)
        process = self.ctx.Process(
            target=_worker_main, args=(self.spec, tasks_r, results_w), daemon=True, name="ast-decode"
        )
        process.start()
        tasks_r.close()  # the worker's ends live in the worker only: its death closes them
        results_w.close()
        return _Worker(process, tasks_w, results_r)

    def has_room(self) -> bool:
        return any(len(w.seqs) < FILES_PER_WORKER for w in self.workers)

    def submit(self, seq: int, path: str) -> None:
        worker = min(self.workers, key=lambda w: len(w.seqs))
        worker.seqs.add(seq)
        try:
            worker.tasks.send((seq, path))
        except OSError:  # it died a moment ago: the next get() reports its files
            pass

    def get(self, block: bool) -> tuple | None:
        """The next message; None when there is none now (or, with ``block``, within POLL_SECONDS)."""
        if self.lost:
            return self.lost.popleft()
        ready = mp_connection.wait([w.results for w in self.workers], timeout=POLL_SECONDS if block else 0)
        # the worker holding the oldest file first: records go out in input order, and a worker that
        # is always ready must not starve the one the next record waits on
        ready.sort(key=lambda conn: min(next(w for w in self.workers if w.results is conn).seqs, default=float("inf")))
        for conn in ready:
            worker = next(w for w in self.workers if w.results is conn)
            try:
                message = conn.recv()
            except (EOFError, OSError):
                self._replace(worker)
                continue
            if message[0] in ("d", "e"):
                worker.seqs.discard(message[1])
            return message
        return self.lost.popleft() if self.lost else None

    def _replace(self, worker: _Worker) -> None:
        worker.process.join(timeout=5.0)
        code = worker.process.exitcode
        for seq in sorted(worker.seqs):
            self.lost.append(("e", seq, f"decoder process died (exit status {code}) while reading this file"))
        worker.close()
        self.workers[self.workers.index(worker)] = self._start()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()  # a worker sees the end of its task pipe and exits
        for worker in self.workers:
            worker.process.join(timeout=2.0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    tasks: mp_connection.Connection
    results: mp_connection.Connection
    seqs: set[int] = field(default_factory=set)

    def close(self) -> None:
        for conn in (self.tasks, self.results):
            try:
                conn.close()
            except OSError:
                pass


def _worker_main(spec: WindowSpec, tasks, results) -> None:
    """A decode worker: one thread for torch (the model has the cores), Ctrl-C left to the parent;
    it ends when its task pipe closes (the parent finished, or was killed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threads.worker()
    try:
        while True:
            task = tasks.recv()
            for message in decode(task[0], task[1], spec):
                results.send(message)
    except (EOFError, OSError):  # the parent is gone or done
        return
