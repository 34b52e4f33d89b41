"""Dataset statistics of the log-mel fbank: the mean and std that normalise a model's input.

Two methods:

- ``authors``: what the authors' ``src/get_norm_stats.py`` computes. Their training dataloader
  (``src/dataloader.py``) with normalisation off but augmentation on -- mixup of waveforms, then
  SpecAugment frequency and time masks writing 0 into the raw log-mel -- padded or cut to
  ``target_length`` frames; batches of 1000 clips in file order; per batch ``torch.mean`` and the
  unbiased ``torch.std`` of all values; the result is the plain mean of the batch means and of the
  batch stds (so a small last batch weighs as much as a full one, and the std is not a pooled std).
- ``exact``: the pooled mean and (unbiased) std of every value of the padded features the model
  is fed, with no augmentation. Deterministic.

Memory stays bounded: clips are streamed one at a time and only running moments (float64, combined
with Chan's parallel formula) are kept, never a batch of features.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from . import threads
from .augment import MIXUP_BETA, mix, spec_augment
from .clipreader import ClipReader, ProgressBar
from .errors import AudioError, Interrupted, UsageError
from .features import fbank
from .inputs import AUDIO_EXTENSIONS, read_path_list, walk
from .options import ReportFormat, StatsMethod, StatsOptions, as_choice
from .progress import bar as progress_bar
from .targets import refuse_overlap

# The authors' get_norm_stats.py settings (AudioSet): audio_conf and the DataLoader's batch size.
TARGET_LENGTH = 1024
BATCH_SIZE = 1000
FREQM = 24
TIMEM = 192
MIXUP = 0.5
DEFAULT_SEED = 0  # of the authors' method's augmentation when none is given (exact draws nothing)


@dataclass
class Stats:
    mean: float
    std: float
    files: int  # clips that went into the numbers
    method: str
    skipped: int = 0  # files that could not be read
    batches: int = 0  # batches of the authors' method (1 for exact)
    seed: int | None = None
    target_length: int = TARGET_LENGTH  # frames each clip was padded or cut to
    padded: float = 0.0  # share of those frames that are padding

    def to_json(self) -> dict[str, object]:
        return {
            "mean": self.mean,
            "std": self.std,
            "files": self.files,
            "method": self.method,
            "seed": self.seed,
            "target_length": self.target_length,
            "padded": round(self.padded, 4),
        }


class Moments:
    """Running count, mean and sum of squared deviations, in float64 (Chan et al.'s pairwise update)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, values: torch.Tensor) -> None:
        x = values.detach().reshape(-1).double()
        n = x.numel()
        if n == 0:
            return
        mean = float(x.mean())
        m2 = float(((x - mean) ** 2).sum())
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    @property
    def std(self) -> float:
        """Unbiased (n - 1), as ``torch.std``."""
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else float("nan")


# -- inputs ------------------------------------------------------------------------------------
def collect_audio(inputs: Sequence[str], files_from: str | None = None) -> list[str]:
    """Audio paths: folders searched recursively by ``inputs.walk`` (sorted by name, depth first,
    hidden entries skipped, audio extensions only), files as given, and the lines of ``files_from``
    (``-``: standard input)."""
    paths: list[str] = []
    for item in inputs:
        p = Path(item)
        try:
            is_dir, found = p.is_dir(), p.exists() or p.is_symlink()
        except OSError:  # a name too long: reading it says why, and it is skipped like a bad file
            is_dir, found = False, True
        if is_dir:
            paths.extend(walk(item, AUDIO_EXTENSIONS))
        elif found:  # a broken link is read (and skipped with its reason) like a bad file
            paths.append(item)
        else:
            raise UsageError(f"{item}: no such file or directory")
    if files_from is not None:
        paths.extend(read_path_list(files_from))
    if not paths:
        where = ", ".join(list(inputs) + ([files_from] if files_from else [])) or "the arguments"
        known = ", ".join(sorted(AUDIO_EXTENSIONS)[:6])
        raise UsageError(f"no audio files in {where}", hint=f"folders are searched for {known}, ...")
    return paths


# -- the computation ---------------------------------------------------------------------------
def compute_stats(
    paths: Sequence[str | os.PathLike[str]],
    method: StatsMethod | str = "authors",
    *,
    target_length: int | None = None,
    batch_size: int = BATCH_SIZE,
    freqm: int = FREQM,
    timem: int = TIMEM,
    mixup: float = MIXUP,
    seed: int | None = None,
    num_mel_bins: int = 128,
    channel: str | int = "mean",
    progress: bool | None = False,
) -> Stats:
    """Mean and std of the log-mel fbank of ``paths`` (see the module's docstring for the methods).

    ``target_length`` None: the longest clip's frames, at most the AudioSet model's 1024, as
    ``ast finetune`` chooses its input length; padding then weighs no more than the data makes it.
    ``exact`` ignores the augmentation settings. Unreadable files are skipped with a warning and
    counted in ``Stats.skipped``; if none can be read, ``UsageError``. A warning when most frames
    are padding. ``progress`` None: a bar at a terminal only.
    """
    options = StatsOptions(
        method=as_choice(StatsMethod, method, "method"),
        target_length=target_length,
        batch_size=batch_size,
        freqm=freqm,
        timem=timem,
        mixup=mixup,
        seed=seed,
        channel=channel,
    )
    files = [os.fspath(p) for p in paths]
    if not files:
        raise UsageError("no audio files to compute statistics of")
    bar = progress_bar(total=len(files), enabled=progress)
    reader = ClipReader(num_mel_bins, options.channel, TARGET_LENGTH, bar)
    # all of it is per-file work: one thread
    with contextlib.nullcontext() if threads.explicit() else threads.per_file():
        try:
            reader.target_length = target_length or max(16, min(reader.longest(files), TARGET_LENGTH))
            stats = _measure(files, reader, bar, options)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted after {reader.done} of {len(files)} file(s); no statistics were written"
            ) from None
        finally:
            bar.close()
    stats.skipped = len(reader.bad)
    if stats.files == 0:
        raise UsageError(f"none of the {len(files)} files could be read", hint="see the warnings above")
    stats.target_length, stats.padded = reader.target_length, 1.0 - reader.real_frames / max(reader.all_frames, 1)
    if stats.padded > 0.5:
        warnings.warn(
            f"{stats.padded:.0%} of the frames are zero padding "
            f"(clips shorter than --target-length {reader.target_length}): "
            "the statistics describe the padding more than the audio; give a shorter --target-length",
            stacklevel=2,
        )
    return stats


def _measure(paths: list[str], reader: ClipReader, bar: ProgressBar, options: StatsOptions) -> Stats:
    """The statistics of ``options.method`` over the readable ``paths``."""
    if options.method == StatsMethod.exact:
        return _exact(paths, reader, bar)
    # a fixed seed, reported with the result: the same files give the same numbers
    seed = DEFAULT_SEED if options.seed is None else options.seed
    rng = np.random.default_rng(seed)
    stats = _authors(paths, reader, bar, rng, options.batch_size, options.freqm, options.timem, options.mixup)
    stats.seed = seed
    return stats


def _exact(paths: list[str], reader: ClipReader, bar: ProgressBar) -> Stats:
    moments = Moments()
    files = 0
    for features in _clips(paths, reader, bar, lambda path: reader.features(path)):
        moments.add(features)
        files += 1
    return Stats(moments.mean, moments.std, files, "exact", batches=1)


def _authors(
    paths: list[str],
    reader: ClipReader,
    bar: ProgressBar,
    rng: np.random.Generator,
    batch_size: int,
    freqm: int,
    timem: int,
    mixup: float,
) -> Stats:
    def item(path: str) -> torch.Tensor:
        return augmented_item(path, paths, reader, rng, freqm, timem, mixup)

    means: list[float] = []
    stds: list[float] = []
    batch = Moments()
    in_batch = files = 0
    for features in _clips(paths, reader, bar, item):
        batch.add(features)
        in_batch += 1
        files += 1
        if in_batch == batch_size:
            means.append(batch.mean)
            stds.append(batch.std)
            batch, in_batch = Moments(), 0
    if in_batch:
        means.append(batch.mean)
        stds.append(batch.std)
    # get_norm_stats.py: print(np.mean(mean), np.mean(std)) -- unweighted over batches
    mean = float(np.mean(means)) if means else float("nan")
    std = float(np.mean(stds)) if stds else float("nan")
    return Stats(mean, std, files, "authors", batches=len(means))


def _clips(
    paths: list[str], reader: ClipReader, bar: ProgressBar, make: Callable[[str], torch.Tensor]
) -> Iterator[torch.Tensor]:
    """``make(path)`` for each readable path in order; unreadable ones warned about and skipped."""
    for path in paths:
        if path in reader.bad:  # found unreadable already (while measuring the clips' lengths)
            bar.update(1)
            reader.done += 1
            continue
        try:
            features = make(path)
        except AudioError as exc:
            reader.mark_bad(path, exc)
            features = None
        bar.update(1)
        reader.done += 1
        if features is not None:
            yield features


def augmented_item(
    path: str,
    dataset: Sequence[str],
    reader: ClipReader,
    rng: np.random.Generator,
    freqm: int,
    timem: int,
    mixup: float,
) -> torch.Tensor:
    """One training item of the authors' ``AudiosetDataset.__getitem__`` with ``skip_norm``: (T, F).

    Mirrored from src/dataloader.py: with probability ``mixup`` the partner is drawn uniformly from
    the whole dataset (``random.randint(0, len(data) - 1)``, the clip itself included); each waveform
    has its DC removed, the partner is zero-padded or cut to the first clip's length, and they are
    mixed with lambda ~ Beta(10, 10); fbank; pad/cut to ``target_length``; then one frequency mask
    and one time mask (torchaudio's FrequencyMasking/TimeMasking on the (F, T) transpose) writing 0.
    The mix's final DC removal is left out: kaldi's per-frame DC removal takes a constant offset out
    of every frame again, up to float32 rounding (tests/test_authors.py measures that difference).
    A partner that cannot be read is replaced by another draw.
    """
    if rng.random() < mixup:
        first = reader.waveform(path)
        second = reader.partner(dataset, rng)
        wave = first if second is None else mix(first, second, rng.beta(MIXUP_BETA, MIXUP_BETA))
    else:
        wave = reader.waveform(path)
    return spec_augment(reader.fit(fbank(wave, reader.num_mel_bins)), freqm, timem, rng)


# -- output --------------------------------------------------------------------------------------
def check_write(directory: str | os.PathLike | None, paths: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse ``--write DIR`` whose preprocessor_config.json is one of the clips, before any is read."""
    if directory:
        refuse_overlap([Path(directory) / "preprocessor_config.json"], paths)


def write_stats(stats: Stats, directory: str | os.PathLike) -> Path:
    """Set mean/std in ``directory/preprocessor_config.json``, keeping its other keys (a new file
    gets the feature extractor's defaults with ``max_length`` the statistics' target length)."""
    from .config import PreprocessorConfig

    directory = Path(directory)
    path = directory / "preprocessor_config.json"
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--write {directory}: not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    config = (
        PreprocessorConfig.from_file(path) if path.is_file() else PreprocessorConfig(max_length=stats.target_length)
    )
    config.mean, config.std = stats.mean, stats.std
    return config.save(directory)


def render_stats(stats: Stats, fmt: str, stream: IO[str]) -> None:
    if fmt == ReportFormat.json:
        import json

        stream.write(json.dumps(stats.to_json()) + "\n")
        return
    from rich.table import Table

    from .output import console

    table = Table(show_header=False, box=None, pad_edge=False)
    rows = [
        ("mean", f"{stats.mean:.7g}"),
        ("std", f"{stats.std:.7g}"),
        ("files", str(stats.files)),
        ("target length", f"{stats.target_length} frames ({stats.padded:.0%} padding)"),
    ]
    if stats.skipped:
        rows.append(("skipped", str(stats.skipped)))
    batches = f" ({stats.batches} batch{'es' if stats.batches != 1 else ''})" if stats.method == "authors" else ""
    rows.append(("method", stats.method + batches))
    if stats.seed is not None:
        rows.append(("seed", str(stats.seed)))
    for name, value in rows:
        table.add_row(name, value)
    console(stream, soft_wrap=True).print(table)
