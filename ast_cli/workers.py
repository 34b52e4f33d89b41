"""``ast batch``'s sources of decoded windows: the main process (``--workers 0``) or a pool of decode
worker processes, and the message protocol they share with ``distributed.RaySource``.

A source takes (seq, path) pairs and hands back, per file, the messages ``windows.decode`` makes:
("w", seq, starts, features (n, T, F)) chunks, then ("d", seq, windows, duration_s), or ("e", seq,
message) when the file cannot be read. A source that scores windows itself (Ray's actors) sends
("s", seq, starts, scores (n, C)) in place of "w".
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import multiprocessing.util as mp_util
import os
import shutil
import signal
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext, SpawnContext
from typing import Protocol

from . import chatter, threads
from .windows import WindowSpec, decode

FILES_PER_WORKER = 2  # in flight per worker: one decoding, one queued so it never idles
WORKER_PRELOAD = ("ast_cli.workers", "soundfile", "torchaudio.functional", "torchaudio.compliance.kaldi")
MAX_AHEAD = 256  # files taken past the one the in-order output waits on: bounds what a slow file holds back
POLL_SECONDS = 0.5  # how often a waiting main process checks its workers and the progress line
# multiprocessing's folder of the process that starts the forkserver (it holds the server's socket):
# handed to the forkserver, which removes it when it ends, so a parent killed with SIGKILL leaves no
# pymp-* folder behind (the forkserver ends when its parent does)
TEMP_FOLDER_ENV = "AST_FORKSERVER_TEMP"


class Source(Protocol):
    """What ``pipeline.Pipeline`` reads decoded (or scored) windows from."""

    @property
    def max_ahead(self) -> int:
        """Files the in-order output may run ahead of the one it waits on."""
        ...

    def has_room(self) -> bool: ...

    def submit(self, seq: int, path: str) -> None: ...

    def get(self, block: bool) -> tuple | None:
        """The next message; None when there is none now."""
        ...

    def close(self) -> None: ...


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
        self.ctx: ForkServerContext | SpawnContext
        if "forkserver" in mp.get_all_start_methods():
            self.ctx = mp.get_context("forkserver")
            self.ctx.set_forkserver_preload(list(WORKER_PRELOAD))
        else:
            self.ctx = mp.get_context("spawn")
        self.workers: list[_Worker] = [self._start() for _ in range(workers)]
        self.lost: deque[tuple] = deque()

    def _start(self) -> _Worker:
        tasks_r, tasks_w = self.ctx.Pipe(duplex=False)
        results_r, results_w = self.ctx.Pipe(duplex=False)
        process = self.ctx.Process(
            target=_worker_main, args=(self.spec, tasks_r, results_w), daemon=True, name="ast-decode"
        )
        with _temp_folder_for_the_forkserver(self.ctx):
            process.start()  # the first start starts the forkserver
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
        for worker in sorted((w for w in self.workers if w.results in ready), key=_oldest):
            try:
                message = worker.results.recv()
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


@contextmanager
def _temp_folder_for_the_forkserver(ctx: ForkServerContext | SpawnContext) -> Iterator[None]:
    """Name this process's multiprocessing folder in the environment a forkserver started now inherits;
    only then: no other child of this process (ffmpeg, a nested ast) may take it for its own."""
    if not isinstance(ctx, ForkServerContext):
        yield
        return
    os.environ[TEMP_FOLDER_ENV] = mp_util.get_temp_dir()
    try:
        yield
    finally:
        os.environ.pop(TEMP_FOLDER_ENV, None)


def _remove_at_exit_what_the_parent_named() -> None:
    """In the forkserver (which imports this module first thing, ``WORKER_PRELOAD``): remove the
    parent's multiprocessing folder when the server ends. The name leaves the environment here, so the
    workers forked from the server do not carry it (they end with ``os._exit`` in any case)."""
    folder = os.environ.pop(TEMP_FOLDER_ENV, None)
    if folder:
        atexit.register(shutil.rmtree, folder, ignore_errors=True)


_remove_at_exit_what_the_parent_named()


def _oldest(worker: _Worker) -> float:
    """The lowest file number a worker holds (infinity when it holds none)."""
    return min(worker.seqs, default=float("inf"))


def _worker_main(spec: WindowSpec, tasks: mp_connection.Connection, results: mp_connection.Connection) -> None:
    """A decode worker: one thread for torch (the model has the cores), Ctrl-C left to the parent,
    warnings (a cut file) as one line as in the parent; it ends when its task pipe closes (the parent
    finished, or was killed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threads.worker()
    chatter.one_line_warnings()
    try:
        while True:
            task = tasks.recv()
            for message in decode(task[0], task[1], spec):
                results.send(message)
    except (EOFError, OSError):  # the parent is gone or done
        return
