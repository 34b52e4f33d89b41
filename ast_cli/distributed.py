"""``ast batch --engine ray``: the same job on a Ray cluster, in the shape of Ray Data's batch inference.

The driver (this process) walks the inputs lazily and skips what ``--resume`` finds done, exactly as the
local engine does (``pipeline.Pipeline``, which reads this as its source of results). It hands the paths
to Ray in waves of up to ``WAVE_FILES``, each a Ray Dataset of two stages: CPU tasks that decode
(``decode_rows``: read, resample, fbank, windows; the local engine's own ``windows.decode``) and model
actors (``ModelActor`` through ``map_batches``: the model loads once per actor and wave, and windows of
several files share a forward pass). The driver consumes the scored windows as a stream, puts each
file's windows back together and hands the file to the pipeline, records and sinks the local engine
uses: formats, input order or ``--unordered``, torn tails and ``--resume`` are one code path.

One row is one window, never a file: (T, F) float32 features (512 KB for the AudioSet model's
1024 x 128) with its file's number, window index and start. A decoding task yields its rows as it
reads, ``windows.CHUNK_WINDOWS`` (4) at a time, so an hour-long recording streams through the cluster
in small blocks instead of becoming one huge row, and its windows are scored while it is decoded.

Faults: Ray retries a task whose worker died and restarts a killed actor, re-running its calls. The
driver keeps each (file, window) once and hands a file on only when all its windows are in, so a
retried window never counts twice and every file reaches the output exactly once. Ctrl-C or SIGTERM
disconnect the driver, which ends the job's tasks and actors on the cluster.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from . import threads
from .devices import precision_name, resolve_precision
from .errors import ClusterError, UsageError
from .inference import Tagger, load_model
from .options import BatchOptions, TagOptions, ray_missing
from .spec import ModelSpec
from .windows import WindowSpec, decode

logger = logging.getLogger(__name__)

WAVE_FILES = 16384  # paths a Ray Dataset: ~2 MB of names on the driver; the actors' model loads once a wave
FILES_PER_BLOCK = 8  # input rows a decoding task: small enough to spread, large enough to amortise a task
DECODE_CPUS = 0.25  # logical CPUs a decoding task holds: the model actors leave this much of every node
ROWS_PER_CALL = 4  # window rows per call of a CPU actor (seconds of work at full size), 8x for a GPU (4 passes of 8)
CONNECT_SECONDS = 10  # for the cluster's address to answer at all
START_ONE = "start one with 'ray start --head', or leave --ray-address out to start a Ray for this run"
BLOCK_BYTES = 16 * 2**20  # Ray Data's largest block: a few dozen windows, not Ray's default 128 MB


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise ray_missing() from None
    return ray


@dataclass(frozen=True)
class Plan:
    """How the model actors are placed: their number, what each holds, and its torch threads."""

    actors: int
    gpus: float  # per actor
    cpus: float  # per actor (logical: Ray's accounting)
    threads: int
    precision: str  # what the actors compute in (recorded with the output, as the local engine's)

    def line(self) -> str:
        where = f"{self.gpus:g} GPU each" if self.gpus else f"{self.cpus:g} CPU, {self.threads} thread(s) each"
        return f"ray: {self.actors} model actor(s), {where}, {self.precision}"


def plan(ray, tagger: Tagger, options: BatchOptions) -> Plan:
    """Actors for the cluster: one per GPU (``--gpus-per-actor`` each), else one per node using its
    cores beside a decoding task's share (``--threads`` sets a CPU actor's torch threads); ``--actors``
    overrides the number."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) > 0]
    total_gpus = sum(n.get("GPU", 0) for n in nodes)
    gpus = options.gpus_per_actor if options.gpus_per_actor is not None else (1.0 if total_gpus else 0.0)
    if gpus > total_gpus:
        raise UsageError(
            f"--gpus-per-actor {gpus:g}: the cluster has {total_gpus:g} GPU(s)",
            hint="give --gpus-per-actor 0 for CPU actors",
        )
    requested = tagger.spec.precision
    if gpus:
        actors = options.actors or max(1, int(total_gpus // gpus))
        precision = precision_name(resolve_precision(requested, torch.device("cuda")))
        return Plan(actors=actors, gpus=gpus, cpus=1.0, threads=1, precision=precision)
    cores = [n["CPU"] for n in nodes] or [1.0]
    actors = options.actors or len(cores)
    room = (sum(cores) - DECODE_CPUS * len(cores)) / actors  # the cluster's CPUs less a decoding task a node, shared
    cpus = max(0.05, math.floor(min(min(cores) - DECODE_CPUS, room) * 20) / 20)  # fits on the smallest node
    # --threads, OMP_NUM_THREADS: the user's
    torch_threads = threads.model_threads() if threads.explicit() else max(1, round(cpus))
    return Plan(actors=actors, gpus=0.0, cpus=cpus, threads=torch_threads, precision=tagger.precision)


# -- on the cluster -----------------------------------------------------------------------------------
def decode_rows(batch: dict[str, np.ndarray], spec: WindowSpec, cwd: str):
    """A decoding task: input rows (seq, path) -> window rows, as ``windows.decode`` makes them (4 at a
    time, 2 MB at the AudioSet model's size). The last window of a file carries its window count and
    duration; a file that cannot be read is one row with ``error`` (index -1). Paths are read from the
    driver's folder ``cwd`` (a shared file system), so relative paths and the messages that name them
    are as on the driver."""
    threads.worker()  # the model actors have the cores
    with contextlib.suppress(OSError):
        os.chdir(cwd)  # this job's own worker process
    node = _node_id()
    blank = np.zeros((1, spec.max_length, spec.num_mel_bins), np.float32)
    for seq, path in zip(batch["seq"].tolist(), batch["path"].tolist(), strict=True):
        held: list[tuple] = []  # the latest chunk, until it is known whether the file ends with it
        index = 0
        for message in decode(seq, path, spec):
            if message[0] == "w":
                if held:
                    yield _rows(seq, held, node)
                held = [
                    (index + i, start, feats)
                    for i, (start, feats) in enumerate(zip(message[2], message[3], strict=True))
                ]
                index += len(held)
            elif message[0] == "d":
                yield _rows(seq, held, node, count=message[2], duration_s=message[3])
            else:
                yield _rows(seq, [(-1, 0, blank[0])], node, error=message[2])


def _rows(seq: int, windows: list[tuple], node: str, count: int = -1, duration_s: float = 0.0, error: str = "") -> dict:
    """Columns of ``windows`` (index, start, (T, F) features) of file ``seq``."""
    n = len(windows)
    last = np.full(n, -1, np.int32)
    last[-1] = count  # only the last window says how many there are
    return {
        "seq": np.full(n, seq, np.int64),
        "index": np.array([w[0] for w in windows], np.int32),
        "start": np.array([w[1] for w in windows], np.int64),
        "windows": last,
        "duration_s": np.full(n, duration_s, np.float64),
        "error": np.array([error] * n, dtype=object),
        "features": np.stack([w[2] for w in windows]),  # (n, T, F)
        "decoded_on": np.array([node] * n, dtype=object),
    }


class ModelActor:
    """A model replica: loads the model once (the driver's ``ModelSpec``, so every node reads the same
    model: a Hub id from its cache, a folder on a shared file system), then scores window rows,
    ``batch_size`` windows a forward pass, as the local engine does."""

    def __init__(self, model_spec: ModelSpec, threads: int, tag_options: TagOptions):
        torch.set_num_threads(threads)
        self.tagger = load_model(model_spec)
        self.batch_size = self.tagger.windows_per_batch(tag_options)  # for this actor's device: 1 on a CPU, 8 on a GPU
        self.activation = tag_options.activation
        self.node = _node_id()
        self.pid = os.getpid()

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(rows["seq"])
        scores = np.zeros((n, len(self.tagger.labels)), np.float32)
        good = np.flatnonzero(rows["index"] >= 0)  # error rows need no model time
        for i in range(0, len(good), self.batch_size):
            take = good[i : i + self.batch_size]
            features = torch.from_numpy(rows["features"][take])  # (B, T, F)
            scores[take] = self.tagger.scores(features, self.activation).numpy()  # (B, C)
        out = {key: rows[key] for key in ("seq", "index", "start", "windows", "duration_s", "error", "decoded_on")}
        out["scores"] = scores
        out["scored_on"] = np.array([self.node] * n, dtype=object)
        out["pid"] = np.full(n, self.pid, np.int64)
        return out


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()[:12]


# -- the driver ---------------------------------------------------------------------------------------
@dataclass
class _Parts:
    """The scored windows of one file as they come back, in any order, each once."""

    path: str
    starts: dict[int, int] = field(default_factory=dict)
    scores: dict[int, np.ndarray] = field(default_factory=dict)
    windows: int | None = None
    duration_s: float = 0.0
    nodes: set[str] = field(default_factory=set)

    def complete(self) -> bool:
        return self.windows is not None and len(self.scores) == self.windows


class RaySource:
    """The local engine's source (``workers.Source``: ``submit``/``has_room``/``get``/``close``) over a Ray
    cluster: ``get`` returns ("s", seq, starts, scores (n, C)) then ("d", seq, windows, duration_s) for
    a file whose windows are all scored, or ("e", seq, message)."""

    max_ahead = WAVE_FILES  # records held back for input order: the files of one wave at most

    def __init__(self, tagger: Tagger, spec: WindowSpec, tag_options: TagOptions, options: BatchOptions):
        self.ray = import_ray()
        self.tagger, self.spec, self.tag_options = tagger, spec, tag_options
        self.model_spec = tagger.spec.portable()  # every node loads the model the driver names
        _connect(self.ray, options.ray_address)
        try:
            self.plan = plan(self.ray, tagger, options)
        except BaseException:
            self.ray.shutdown()
            raise
        self.precision = self.plan.precision
        logger.info(self.plan.line())
        self.queue: list[tuple[int, str]] = []  # the next wave
        self.waiting: dict[int, _Parts] = {}  # files of the running wave not handed on yet
        self.ready: deque[tuple] = deque()
        self.blocks = None  # the running wave's scored rows, block by block, as Ray streams them

    def has_room(self) -> bool:
        return self.blocks is None and len(self.queue) < WAVE_FILES

    def submit(self, seq: int, path: str) -> None:
        self.queue.append((seq, path))

    def get(self, block: bool) -> tuple | None:
        """The next message; waits for Ray's next block of rows (blocks come often: a window is a row)."""
        if self.blocks is None and self.queue:
            self._start_wave()
        while not self.ready and self.blocks is not None:
            try:
                rows = next(self.blocks, None)
            except self.ray.exceptions.RayError as exc:  # past Ray's retries, or the cluster is gone
                self._stop_wave()
                raise ClusterError(
                    f"the Ray job failed: {_cause(exc)}",
                    hint="what was written stays valid; run the same command with --resume",
                ) from None
            if rows is None:
                self._end_wave()
            else:
                self._take(rows)
        return self.ready.popleft() if self.ready else None

    def close(self) -> None:
        self._stop_wave()
        with contextlib.suppress(Exception):  # closing after a failure: the failure is what gets reported
            # the driver leaves: Ray ends this job's tasks and actors (a Ray started for the run stops)
            self.ray.shutdown()

    # -- a wave -------------------------------------------------------------------------------------
    def _start_wave(self) -> None:
        ray, plan_ = self.ray, self.plan
        wave, self.queue = self.queue, []
        self.waiting = {seq: _Parts(path) for seq, path in wave}
        items = [{"seq": seq, "path": path} for seq, path in wave]
        ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / FILES_PER_BLOCK)))
        ds = ds.map_batches(
            decode_rows, fn_kwargs={"spec": self.spec, "cwd": os.getcwd()}, batch_size=1, num_cpus=DECODE_CPUS
        )
        ds = ds.map_batches(
            ModelActor,
            fn_constructor_kwargs=dict(
                model_spec=self.model_spec.replace(device="cuda" if plan_.gpus else "cpu", precision=plan_.precision),
                threads=plan_.threads,
                tag_options=self.tag_options,
            ),
            batch_size=ROWS_PER_CALL * (8 if plan_.gpus else 1),
            compute=ray.data.ActorPoolStrategy(size=plan_.actors),
            num_cpus=plan_.cpus,
            num_gpus=plan_.gpus or None,
        )
        self.blocks = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))

    def _take(self, rows: dict[str, np.ndarray]) -> None:
        for i, seq in enumerate(rows["seq"].tolist()):
            parts = self.waiting.get(seq)
            if parts is None:  # done already (a retried task's row, or a failed file's later rows)
                continue
            if rows["error"][i]:
                del self.waiting[seq]
                self.ready.append(("e", seq, rows["error"][i]))
                continue
            index = int(rows["index"][i])
            parts.starts[index] = int(rows["start"][i])
            parts.scores[index] = rows["scores"][i].copy()  # not a view that would keep the block
            parts.nodes.add(
                f"decoded on {rows['decoded_on'][i]}, scored on {rows['scored_on'][i]} by pid {rows['pid'][i]}"
            )
            if rows["windows"][i] >= 0:
                parts.windows, parts.duration_s = int(rows["windows"][i]), float(rows["duration_s"][i])
            if parts.complete():
                del self.waiting[seq]
                order = sorted(parts.scores)
                logger.debug("ray: %s: %s", parts.path, "; ".join(sorted(parts.nodes)))
                scores = torch.from_numpy(np.stack([parts.scores[k] for k in order]))  # (W, C)
                self.ready.append(("s", seq, [parts.starts[k] for k in order], scores))
                self.ready.append(("d", seq, parts.windows, parts.duration_s))

    def _end_wave(self) -> None:
        for seq, parts in self.waiting.items():  # Ray retries lost work, so this is a bug's trace, said as one
            self.ready.append(("e", seq, f"{parts.path}: the Ray job returned no result for this file"))
        self.waiting, self.blocks = {}, None

    def _stop_wave(self) -> None:
        """Close the stream while Ray is still connected (its clean-up calls Ray)."""
        blocks, self.blocks = self.blocks, None
        if blocks is not None and hasattr(blocks, "close"):
            with contextlib.suppress(Exception):
                blocks.close()


def _connect(ray, address: str | None) -> None:
    """Join the cluster at ``address`` (None: RAY_ADDRESS, a running cluster, else a Ray started for this
    run), with Ray's own logs and progress bars off stderr."""
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # a failure reaches the user as one line (ClusterError)
    from ray._private import worker

    # Ray prints its workers' lines and the cluster's notices (a task retried) on stdout, which holds results
    worker._worker_logs_enabled = False
    # the C++ core of this driver logs to stderr, its own errors too
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    unreachable = _unreachable(address)
    if unreachable:  # Ray itself would try for minutes
        raise ClusterError(
            f"--ray-address {address}: no Ray cluster answers there ({unreachable})", hint=START_ONE, exit_code=2
        )
    handler = signal.getsignal(signal.SIGTERM)  # ray.init sets its own, which would skip closing the output
    try:
        try:
            with _stderr_closed():  # what the C++ core says as it starts (log level, authentication tokens)
                ray.init(
                    address=address,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                    configure_logging=False,
                    ignore_reinit_error=True,
                )
        finally:
            if threading.current_thread() is threading.main_thread() and handler is not None:
                signal.signal(signal.SIGTERM, handler)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(
            f"--ray-address {address or 'auto'}: cannot join a Ray cluster ({_cause(exc)})", hint=START_ONE, exit_code=2
        ) from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    context.target_max_block_size = BLOCK_BYTES


def _unreachable(address: str | None) -> str | None:
    """Why nothing listens at a HOST:PORT address (None: it answers, or the address is not HOST:PORT)."""
    text = address or ""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or "://" in text:
        return None
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


@contextlib.contextmanager
def _stderr_closed():
    """File descriptor 2 on /dev/null for a moment: C++ code and the processes it starts write there."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _cause(exc: BaseException) -> str:
    """One line of a Ray error: its last line, where Ray's text ends with the error in the task or actor
    (``ModelError: ...`` from a node without the model), without Ray's colours."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
