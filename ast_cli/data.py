"""Labelled clips for fine-tuning and evaluation: discovery, splitting, and a torch Dataset of features.

A dataset is a folder with one sub-folder per class (sorted names -> class ids), or, for multi-label
data, a CSV of ``path,label;label`` rows. Features follow the authors' training dataloader
(``src/dataloader.py``): optional mixup of two waveforms (lambda ~ Beta(10, 10)), kaldi fbank, pad
or cut to ``target_length``, SpecAugment frequency and time masks on the raw log-mel, normalisation,
and, with ``noise`` (their Speech Commands run only), uniform noise and a random roll of -10..9 frames.

Every random draw of an item comes from a generator seeded with (seed, epoch, index), so a run is
the same whatever the number of loader workers or processes, and a resumed run repeats exactly.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import audio
from .augment import MIXUP_BETA, center, mix, spec_augment
from .errors import AudioError, UsageError
from .features import fbank, normalize, pad_or_cut
from .inputs import walk
from .progress import bar as progress_bar
from .recipes import RecipeValues

MAX_SHIFT = 10  # frames: the authors' random roll with noise (dataloader.py, np.random.randint(-10, 10): -10..9)
_log = logging.getLogger(__name__)
CACHE_BYTES = 2 << 30  # fbank cache budget: above it features are recomputed per item


@dataclass
class LabelledClip:
    path: str
    target: tuple[int, ...]  # class ids: exactly one for single-label data


@dataclass
class LabelledSet:
    root: str
    labels: list[str]
    clips: list[LabelledClip]
    multi_label: bool = False
    skipped: list[str] = field(default_factory=list)  # messages of unreadable files

    def counts(self) -> dict[str, int]:
        n: defaultdict[str, int] = defaultdict(int)
        for clip in self.clips:
            for k in clip.target:
                n[self.labels[k]] += 1
        return {label: n[label] for label in self.labels}


# -- discovery ---------------------------------------------------------------------------------
def folder_classes(data_dir: str | os.PathLike) -> LabelledSet:
    """One sub-folder per class, audio files anywhere below it (``inputs.walk``: sorted by name, depth
    first); hidden entries are ignored. A broken link is kept, so that loading reports it (and skips
    it) instead of ignoring it silently."""
    root = _existing_dir(data_dir)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        loose = next(walk(str(root), recursive=False), None) is not None
        raise UsageError(
            f"{root}: no class folders" + (" (the audio files are directly in it)" if loose else ""),
            hint="put each class's clips in a sub-folder named after it, e.g. dog/ and rain/, or give --labels CSV",
        )
    clips = []
    for k, name in enumerate(classes):
        files = list(walk(str(root / name)))
        if not files:
            raise UsageError(f"{root / name}: class folder holds no audio files", hint="add clips or remove the folder")
        clips += [LabelledClip(path, (k,)) for path in files]
    return LabelledSet(str(root), classes, clips)


def csv_labels(labels_csv: str | os.PathLike, data_dir: str | os.PathLike) -> LabelledSet:
    """Multi-label data: rows ``path,label;label`` (paths relative to DATA_DIR); an optional header row."""
    root = _existing_dir(data_dir)
    try:
        with open(labels_csv, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    except OSError as exc:
        raise UsageError(f"{labels_csv}: cannot read ({exc.strerror})") from None
    if rows and rows[0][0].strip().lower() in ("path", "file", "filename"):
        rows = rows[1:]
    entries = []
    for line, row in enumerate(rows, 1):
        if len(row) < 2 or not row[1].strip():
            raise UsageError(f"{labels_csv}: row {line} is not 'path,label;label'", hint=f"got {','.join(row)!r}")
        names = sorted({name.strip() for name in row[1].split(";") if name.strip()})
        entries.append((str(root / row[0].strip()), names))
    if not entries:
        raise UsageError(f"{labels_csv}: no rows", hint="one 'path,label;label' row per clip")
    labels = sorted({name for _, names in entries for name in names})
    index = {name: i for i, name in enumerate(labels)}
    clips = [LabelledClip(path, tuple(index[n] for n in names)) for path, names in entries]
    return LabelledSet(str(root), labels, clips, multi_label=True)


def discover(data_dir: str | os.PathLike, labels_csv: str | os.PathLike | None = None) -> LabelledSet:
    data = csv_labels(labels_csv, data_dir) if labels_csv else folder_classes(data_dir)
    if len(data.labels) < 2:
        raise UsageError(
            f"{data.root}: only one class ({data.labels[0]!r}); a classifier needs at least two",
            hint="add a folder of clips of another class, e.g. background sounds",
        )
    return data


def relabel(data: LabelledSet, labels: list[str], what: str) -> LabelledSet:
    """``data`` with class ids of ``labels`` (a validation set in the training set's ids, or a model's)."""
    index = {name.lower(): i for i, name in reversed(list(enumerate(labels)))}  # folder 'dog' is label 'Dog'
    index.update({name: i for i, name in enumerate(labels)})  # an exact match wins
    lookup = {name: index.get(name, index.get(name.lower())) for name in data.labels}
    unknown = [name for name, i in lookup.items() if i is None]
    if unknown:
        raise UsageError(
            f"{data.root}: {what} has no class {', '.join(map(repr, unknown[:5]))}",
            hint=f"known: {', '.join(labels[:10])}",
        )
    ids = {name: i for name, i in lookup.items() if i is not None}  # every name, once none is unknown
    clips = [LabelledClip(c.path, tuple(ids[data.labels[k]] for k in c.target)) for c in data.clips]
    return LabelledSet(data.root, list(labels), clips, data.multi_label, data.skipped)


def _existing_dir(path: str | os.PathLike) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder" if not root.exists() else f"{root}: not a folder")
    return root


# -- splitting ---------------------------------------------------------------------------------
def stratified_split(data: LabelledSet, fraction: float, seed: int) -> tuple[LabelledSet, LabelledSet]:
    """Hold out ``fraction`` of each class (at least one clip), chosen with ``seed``. Multi-label clips
    are grouped by their first label. Each class keeps at least one clip for training."""
    if not 0 < fraction < 1:
        raise UsageError(f"--val-split must be between 0 and 1, got {fraction}")
    groups: dict[int, list[int]] = defaultdict(list)
    for i, clip in enumerate(data.clips):
        groups[clip.target[0]].append(i)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for k in sorted(groups):
        members = groups[k]
        if len(members) < 2:
            raise UsageError(
                f"class {data.labels[k]!r} has {len(members)} readable clip: "
                "too few to split into training and validation",
                hint="add clips to it, or give a separate validation folder with --val DIR",
            )
        n_val = min(max(1, round(len(members) * fraction)), len(members) - 1)
        val += [members[j] for j in rng.permutation(len(members))[:n_val]]
    held = set(val)

    def pick(idx):
        return LabelledSet(data.root, data.labels, [data.clips[i] for i in idx], data.multi_label)

    return pick([i for i in range(len(data.clips)) if i not in held]), pick(sorted(val))


# -- reading -----------------------------------------------------------------------------------
def scan(
    data: LabelledSet, num_mel_bins: int = 128, keep: bool = True, progress: bool | None = False, known: Any = None
) -> tuple[LabelledSet, list[torch.Tensor | None], list[int]]:
    """Decode every clip once: unreadable ones are warned about and dropped (``skipped`` counts them).

    Returns the readable set, each clip's fbank (un-normalised, unpadded; None unless ``keep`` and within
    the cache budget) and each clip's frame count. ``progress``: a bar (None: at a terminal only).
    ``known``: a cache of frame counts (``get(path)``, ``put(path, frames)``, e.g. ``probe.FrameCache``):
    a clip it knows is not decoded (its fbank is then None).
    """
    clips: list[LabelledClip] = []
    feats: list[torch.Tensor | None] = []
    frames: list[int] = []
    skipped = list(data.skipped)
    budget = CACHE_BYTES if keep else 0
    for clip in progress_bar(data.clips, unit="clip", desc="reading clips", enabled=progress):
        cached = known.get(clip.path) if known is not None else None
        if cached is not None:
            clips.append(clip)
            feats.append(None)
            frames.append(cached)
            continue
        try:
            wave, _ = audio.load(clip.path)
            if len(wave) < 400:
                raise AudioError(
                    f"{clip.path}: too short ({len(wave) / audio.SAMPLE_RATE * 1000:.0f} ms; "
                    "one 25 ms frame is the minimum)"
                )
        except AudioError as exc:
            _log.warning("skipped %s", exc)
            _log.debug("%s", exc, exc_info=True)
            skipped.append(str(exc))
            continue
        f = fbank(wave, num_mel_bins)
        budget -= f.numel() * 4
        clips.append(clip)
        feats.append(f if budget >= 0 else None)
        frames.append(f.shape[0])
        if known is not None:
            known.put(clip.path, f.shape[0])
    if not clips:
        raise UsageError(
            f"{data.root}: no readable audio ({len(skipped)} file(s) could not be decoded)",
            hint="see the warnings above",
        )
    return LabelledSet(data.root, data.labels, clips, data.multi_label, skipped), feats, frames


# -- the dataset -------------------------------------------------------------------------------
@dataclass
class Augment:
    """The authors' training augmentation; all off is evaluation."""

    freqm: int = 0  # max width of a frequency mask (mel bins)
    timem: int = 0  # max width of a time mask (frames)
    mixup: float = 0.0  # probability of mixing a clip with another one
    noise: bool = False  # dataloader.py's noise=True: uniform noise up to U/10, then a roll of -10..9 frames

    @classmethod
    def of(cls, values: RecipeValues, target_length: int) -> Augment:
        """A recipe's training augmentation (``timem`` None: 20 % of the target length)."""
        timem = values.timem if values.timem is not None else target_length // 5
        return cls(freqm=values.freqm, timem=timem, mixup=values.mixup, noise=values.noise)

    @property
    def needs_waveforms(self) -> bool:
        return self.mixup > 0


class ClipDataset(torch.utils.data.Dataset):
    """Items ``(features (T, F) normalised, target (C,) float)``; keys are an index or ``(epoch, index)``.

    ``fbanks`` (from ``scan``) are used instead of decoding when no waveform augmentation is asked.
    """

    def __init__(
        self,
        data: LabelledSet,
        target_length: int,
        mean: float,
        std: float,
        augment: Augment | None = None,
        fbanks: list[torch.Tensor | None] | None = None,
        seed: int = 0,
        num_mel_bins: int = 128,
    ):
        self.data = data
        self.target_length = target_length
        self.mean, self.std = mean, std
        self.augment = augment or Augment()
        self.fbanks = fbanks if fbanks is not None and not self.augment.needs_waveforms else None
        self.seed = seed
        self.num_mel_bins = num_mel_bins
        self.num_labels = len(data.labels)

    def __len__(self) -> int:
        return len(self.data.clips)

    def target(self, index: int) -> torch.Tensor:
        t = torch.zeros(self.num_labels)
        t[list(self.data.clips[index].target)] = 1.0
        return t

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, epoch, index])
        aug = self.augment
        target = self.target(index)
        if aug.mixup > 0 and rng.random() < aug.mixup:
            other = int(rng.integers(len(self)))
            lam = float(rng.beta(MIXUP_BETA, MIXUP_BETA))
            # the authors' waveform mixup: both centred, the mix centred again
            wave = center(mix(center(self._wave(index)), center(self._wave(other)), lam))
            feats = fbank(wave, self.num_mel_bins)
            target = lam * target + (1 - lam) * self.target(other)
        else:
            feats = self._fbank(index)
        # masks write 0 into the raw log-mel (a copy: a cached fbank is never changed), before normalisation
        x = spec_augment(pad_or_cut(feats, self.target_length), aug.freqm, aug.timem, rng)  # (T, F)
        x = normalize(x, self.mean, self.std)
        # dataloader.py: fbank + torch.rand(T, F) * np.random.rand() / 10, then torch.roll(fbank, randint(-10, 10), 0)
        if aug.noise:
            x = x + torch.from_numpy(rng.random(x.shape, dtype=np.float32)) * float(rng.random()) / 10
            x = torch.roll(x, int(rng.integers(-MAX_SHIFT, MAX_SHIFT)), dims=0)
        return x, target

    def _wave(self, index: int) -> np.ndarray:
        return audio.load(self.data.clips[index].path)[0]

    def _fbank(self, index: int) -> torch.Tensor:
        cached = self.fbanks[index] if self.fbanks is not None else None
        if cached is not None:
            return cached
        return fbank(self._wave(index), self.num_mel_bins)


class EpochSampler(torch.utils.data.Sampler):
    """Keys ``(epoch, index)`` for ``ClipDataset`` from a ``DistributedSampler`` (also used with one process,
    where it is a seeded shuffle): the dataset sees the epoch without any state in worker processes."""

    def __init__(self, inner: torch.utils.data.DistributedSampler):
        self.inner = inner
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self):
        return ((self.epoch, i) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def default_target_length(frames: list[int], model_length: int) -> int:
    """The longest clip's frames, at most the model's input length and at least one 16-frame patch."""
    return max(16, min(max(frames), model_length))
