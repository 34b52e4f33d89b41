"""How many threads torch uses, decided in one place.

1. Small per-file work (decoding, resampling, the fbank of one clip or block) runs on one thread
   (``per_file``): split over threads it gains little, and on a busy machine the threads wait for each
   other at every one of its many small parallel steps (10-30x slower, docs/performance.md).
2. The model uses the CPUs this process may use (its affinity mask and cgroup CPU quota), less the
   ones other processes keep busy when it starts (runnable tasks in /proc/loadavg; ``ast batch``
   looks again every 30 s: ``refresh``), less one for each decode worker beside it (``for_model``;
   DataLoader workers, which wait most of a training step, take none), never fewer than one.
3. ``--threads N`` sets the model's threads; without it, ``OMP_NUM_THREADS`` set by the user is kept.
4. Threads that wait for work sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``, unless the user
   set it or ``GOMP_SPINCOUNT``): on a busy machine a spinning thread takes the time slice the
   thread it waits for needs (a full window 2.9x slower, a small model's batch 8-18x; quiet, the
   same within noise: benchmarks/contention.py).

The command line calls ``openmp_environment`` before it imports torch and ``configure`` before a
command runs; the Python API leaves the thread count to the caller and only narrows it around
per-file work. No torch import at module level: ``openmp_environment`` runs before torch loads.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path

_log = logging.getLogger(__name__)  # debug: the threads chosen and why

_requested: int | None = None  # --threads, or OMP_NUM_THREADS as the user set it: the model's threads


def available_cpus() -> int:
    """CPUs this process may run on: the affinity mask, lowered by a cgroup CPU quota (containers,
    Kubernetes limits, SLURM), at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_quota()
    return max(1, min(cpus, math.ceil(quota)) if quota else cpus)


def cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time the cgroup may use per period (cgroup v2 ``cpu.max``, v1 ``cfs_quota_us``), or None."""
    try:
        max_quota, max_period = (root / "cpu.max").read_text().split()[:2]  # "max 100000" or "200000 100000"
        return None if max_quota == "max" else int(max_quota) / int(max_period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def busy_elsewhere(samples: int = 5, read=None, spacing_s: float = 0.002, own: int = 0, own_load: float = 0.0) -> float:
    """How many of this process's CPUs other work keeps busy now: runnable tasks besides this one
    (/proc/loadavg, the median of a few instant samples 2 ms apart, capped by the 1-minute average so that a
    task that just ran for a moment is not counted), scaled to the share of the machine's CPUs this
    process may use. 0 where /proc is not there. During a run, ``own`` worker processes and the
    ``own_load`` (CPUs) the run keeps busy are not counted as other work."""
    read = read or (lambda: Path("/proc/loadavg").read_text())
    try:
        counts = []
        for i in range(samples):
            if i:
                time.sleep(spacing_s)  # instants a few ms apart: a task that only passes is in one of them at most
            fields = read().split()
            counts.append(int(fields[3].split("/")[0]) - 1 - own)  # less this reading thread and our own workers
        minute = float(fields[0]) - own_load  # less what this run itself has been keeping busy
    except (OSError, ValueError, IndexError):
        return 0.0
    others = min(sorted(counts)[len(counts) // 2], minute)
    return max(0.0, others) * available_cpus() / max(os.cpu_count() or 1, available_cpus())


def user_threads(environ=os.environ) -> int | None:
    """OMP_NUM_THREADS as the user set it (its first number), or None."""
    try:
        value = int(environ.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        return None
    return value if value > 0 else None


def openmp_environment(environ=os.environ) -> None:
    """Before torch (and its OpenMP runtime) loads: waiting threads sleep, unless the user said otherwise."""
    if not any(name in environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")):
        environ["OMP_WAIT_POLICY"] = "PASSIVE"


def configure(requested: int | None) -> int:
    """The command line's setting: ``--threads`` (else OMP_NUM_THREADS, else the available CPUs) for
    the model. Returns the model's threads."""
    global _requested
    _requested = requested or user_threads()
    return for_model(workers=0)


def explicit() -> bool:
    """Whether the user chose the threads (``--threads`` or OMP_NUM_THREADS)."""
    return bool(_requested)


def model_threads(workers: int = 0, processes: int = 1) -> int:
    """Threads for the model beside ``workers`` single-threaded worker processes, in one of
    ``processes`` that share the CPUs (torchrun on a CPU)."""
    if _requested:
        return _requested
    cpus = available_cpus() // max(processes, 1)
    free = cpus - math.floor(
        busy_elsewhere() / max(processes, 1) + 0.25
    )  # a CPU that other work holds most of is not ours
    return max(1, min(cpus, free) - workers)


def for_model(workers: int = 0, processes: int = 1) -> int:
    """Set torch's threads for the model (see ``model_threads``); returns them."""
    import torch

    global _last_refresh
    _last_refresh = time.monotonic()  # refresh looks again from here on

    threads = model_threads(workers, processes)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    why = (
        "--threads or OMP_NUM_THREADS"
        if _requested
        else (
            f"{available_cpus()} usable CPU(s) / {processes} process(es), {busy_elsewhere():.1f} busy elsewhere, "
            f"less {workers} worker(s)"
        )
    )
    _log.debug(
        "model threads: %d (%s); OpenMP wait policy %s", threads, why, os.environ.get("OMP_WAIT_POLICY", "default")
    )
    return threads


_last_refresh = 0.0  # time.monotonic() of refresh's last look at the load


def refresh(workers: int = 0, interval_s: float = 30.0) -> int:
    """During a long run (``ast batch``): the model's threads again from the load now, at most every
    ``interval_s``, so that a job of hours follows other work as it comes and goes. Nothing when the
    user chose the threads. Returns the model's threads."""
    global _last_refresh
    import torch

    current = torch.get_num_threads()
    now = time.monotonic()
    if _requested or now - _last_refresh < interval_s:
        return current
    _last_refresh = now
    cpus = available_cpus()
    busy = busy_elsewhere(own=workers, own_load=current + workers)
    threads = max(1, min(cpus, cpus - math.floor(busy + 0.25)) - workers)
    if threads != current:
        torch.set_num_threads(threads)
        _log.debug("model threads: %d (was %d; %.1f CPU(s) busy elsewhere now)", threads, current, busy)
    return threads


def worker() -> None:
    """In a decode or DataLoader worker process: one thread."""
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def per_file():
    """One thread for the small steps of one file (decode, resample, fbank), then back."""
    import torch

    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
