"""``ast stats``: the log-mel mean and std of a dataset, for normalising its input."""

from __future__ import annotations

import sys

from ..options import ReportFormat, StatsMethod, StatsOptions
from ..params.batch import FilesFrom
from ..params.common import Debug, Quiet, Report, Threads
from ..params.tagging import Channel
from ..params.training import (
    Method,
    StatsBatch,
    StatsFreqm,
    StatsInputs,
    StatsLength,
    StatsMixup,
    StatsSeed,
    StatsTimem,
    WriteStats,
)


def stats(
    data: StatsInputs = [],
    files_from: FilesFrom = None,
    method: Method = StatsMethod.authors,
    target_length: StatsLength = None,
    batch_size: StatsBatch = 1000,
    freqm: StatsFreqm = 24,
    timem: StatsTimem = 192,
    mixup: StatsMixup = 0.5,
    seed: StatsSeed = None,
    channel: Channel = "mean",
    fmt: Report = ReportFormat.table,
    write: WriteStats = None,
    threads: Threads = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Log-mel mean and std of a dataset, for normalising its input (the authors' get_norm_stats.py).

    Example: ast stats data/train --format json       ast stats data/ --method exact --write my-model/
    """
    from ..stats import check_write, collect_audio, compute_stats, render_stats, write_stats

    options = StatsOptions(
        method=method,
        target_length=target_length,
        batch_size=batch_size,
        freqm=freqm,
        timem=timem,
        mixup=mixup,
        seed=seed,
        channel=channel,
    )
    paths = collect_audio(data, files_from)
    check_write(write, paths)
    result = compute_stats(
        paths,
        options.method,
        target_length=options.target_length,
        batch_size=options.batch_size,
        freqm=options.freqm,
        timem=options.timem,
        mixup=options.mixup,
        seed=options.seed,
        channel=options.channel,
        progress=not quiet,
    )
    if write:
        write_stats(result, write)
    render_stats(result, fmt, sys.stdout)
