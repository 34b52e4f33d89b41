"""Which files a command reads: folders walked in sorted order (``walk``, the one folder walker),
files, glob patterns and path lists (``read_path_list``), streamed (no list of the whole collection is
built), filtered by extension; for ``ast batch`` also split into shards (``InputSpec``).

No torch here.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import logging
import os
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from .errors import UsageError

_log = logging.getLogger(__name__)  # warning: a folder that cannot be listed

# What libsndfile reads (soundfile.available_formats(): WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, AU,
# CAF, W64, RF64, ...) and, when an ffmpeg executable is on PATH, the containers it decodes too.
SNDFILE_EXTENSIONS = frozenset(
    (
        ".wav .wave .flac .ogg .oga .opus .mp3 .aif .aiff .aifc .au .snd .caf .w64 .rf64 .voc .sd2 .paf .svx .nist .sph"
    ).split()
)
FFMPEG_EXTENSIONS = frozenset(".wv .m4a .aac .wma .webm .mka .mp4 .mkv .mov .ac3 .amr .3gp".split())
AUDIO_EXTENSIONS = (
    SNDFILE_EXTENSIONS | FFMPEG_EXTENSIONS
)  # what datasets are searched for (a file ffmpeg would read is reported, not skipped)


def default_extensions() -> frozenset[str]:
    return SNDFILE_EXTENSIONS | FFMPEG_EXTENSIONS if shutil.which("ffmpeg") else SNDFILE_EXTENSIONS


def parse_extensions(values: Sequence[str]) -> frozenset[str]:
    """``--ext wav,flac --ext .mp3`` -> {'.wav', '.flac', '.mp3'}; nothing given -> the defaults."""
    found = {("." + e.strip().lstrip(".")).lower() for v in values for e in v.split(",") if e.strip().lstrip(".")}
    return frozenset(found) if found else default_extensions()


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``K/N`` (K from 0 to N-1, as SLURM_ARRAY_TASK_ID and JOB_COMPLETION_INDEX count) -> (K, N)."""
    if value is None:
        return None
    try:
        k, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise UsageError(f"--shard must be K/N, e.g. 0/4, got {value!r}") from None
    if n < 1 or not 0 <= k < n:
        raise UsageError(f"--shard {value}: K counts from 0 to N-1", hint=f"the {n} shards are 0/{n} ... {n - 1}/{n}")
    return k, n


def shard_of(name: str, shards: int) -> int:
    """A stable shard number for a path: a hash of its text, the same on every machine and run."""
    digest = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


@dataclass
class Counts:
    """Files passed over while walking folders (not errors: they are not audio)."""

    hidden: int = 0
    not_audio: int = 0
    other_shard: int = 0
    unmatched: list[str] = field(default_factory=list)  # glob patterns that matched nothing

    @property
    def skipped(self) -> int:
        return self.hidden + self.not_audio


def walk(
    folder: str, extensions: frozenset[str] = AUDIO_EXTENSIONS, *, recursive: bool = True, counts: Counts | None = None
) -> Iterator[str]:
    """Paths of the files below ``folder`` with one of ``extensions``, in sorted order (by name, depth
    first), one directory listing in memory at a time. Hidden entries are passed over; linked folders
    are followed, each real folder once (a link to a parent is no endless loop); a broken link or a
    link loop is yielded, so that reading it reports it."""
    yield from _walk(folder, extensions, recursive, counts if counts is not None else Counts(), set())


def _walk(folder: str, extensions: frozenset[str], recursive: bool, counts: Counts, visited: set) -> Iterator[str]:
    try:
        st = os.stat(folder)
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        _log.warning("%s: cannot list (%s)", folder, exc.strerror)
        return
    if (st.st_dev, st.st_ino) in visited:
        return
    visited.add((st.st_dev, st.st_ino))
    for entry in entries:
        if entry.name.startswith("."):
            counts.hidden += 1
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:  # a symlink loop, a vanished entry: reading it reports the reason
            is_dir = False
        if is_dir:
            if recursive:
                yield from _walk(entry.path, extensions, recursive, counts, visited)
        elif os.path.splitext(entry.name)[1].lower() in extensions:
            yield entry.path
        else:
            counts.not_audio += 1


def with_folders(items: Sequence[str], extensions: frozenset[str] | None = None) -> list[str]:
    """``ast tag``/``ast embed`` inputs: each folder replaced by its audio files, found as ``ast batch``
    finds them (``walk``: recursive, sorted, hidden and non-audio files passed over); files and ``-``
    as given. A UsageError when folders were given and none holds audio."""
    extensions = default_extensions() if extensions is None else extensions
    found: list[str] = []
    for item in items:
        if item != "-" and os.path.isdir(item):
            found.extend(walk(item, extensions))
        else:
            found.append(item)
    if not found:
        known = ", ".join(sorted(extensions)[:6])
        raise UsageError(f"no audio files in {', '.join(items)}", hint=f"folders are searched for {known}, ...")
    return found


def _would_list(pattern: str, path: str) -> bool:
    """Whether ``glob.glob(pattern, recursive=True)`` lists ``path`` once it exists: its name matches
    the pattern's last part (a hidden name only a pattern starting with a dot) and its folder is one the
    other parts match, compared by identity (a ``**`` matching no folder, a linked folder)."""
    head, tail = os.path.split(pattern)
    if tail == "**":  # data/** lists every file below data, at any depth
        head, tail = pattern, "*"
    name = os.path.basename(path)
    if not fnmatch.fnmatchcase(name, tail) or (name.startswith(".") and not tail.startswith(".")):
        return False
    try:
        folder = os.stat(os.path.dirname(path) or os.curdir)
    except OSError:
        return False
    # a trailing separator makes glob list folders only
    heads = glob.iglob(os.path.join(head, ""), recursive=True) if glob.has_magic(head) else iter([head])
    for candidate in heads:
        try:
            st = os.stat(candidate or os.curdir)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (folder.st_dev, folder.st_ino):
            return True
    return False


def read_path_list(source: str, stdin: Iterable[str] | None = None) -> Iterator[str]:
    """The paths in a file, one a line (``-``: standard input, or ``stdin``), blank lines skipped. A
    name is kept as written but for its line ending (names may begin or end with spaces)."""
    if source == "-":
        lines: Iterable[str] = stdin if stdin is not None else sys.stdin
        yield from (line.rstrip("\r\n") for line in lines if line.strip())
        return
    try:
        with open(source, encoding="utf-8", errors="surrogateescape") as f:
            yield from (line.rstrip("\r\n") for line in f if line.strip())
    except OSError as exc:
        raise UsageError(f"--files-from {source}: cannot read ({exc.strerror})") from None


@dataclass(frozen=True)
class Input:
    path: str  # what to open
    name: str  # what the output calls it: as given, or relative to the folder it was found in


@dataclass(kw_only=True)
class InputSpec:
    """The inputs of ``ast batch``: what was given on the command line and how to expand it."""

    items: Sequence[str] = ()
    files_from: str | None = None  # a file of paths, one a line; '-' = standard input
    recursive: bool = True
    extensions: frozenset[str] = field(default_factory=default_extensions)
    relative: bool = False  # names of files found in a folder are relative to that folder
    shard: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not self.items and self.files_from is None:
            raise UsageError("no inputs", hint="give audio files, folders or glob patterns, or --files-from LIST")
        if "-" in self.items:
            raise UsageError(
                "ast batch reads paths, not audio, from standard input",
                hint="use 'ast tag -', or --files-from - for a list of paths",
            )

    def iter(self, counts: Counts | None = None, stdin: Iterable[str] | None = None) -> Iterator[Input]:
        """The inputs in a deterministic order: each argument in turn, a folder's files sorted by
        path; then the lines of ``--files-from``. Repeated names are tagged once."""
        counts = counts if counts is not None else Counts()
        seen: set[str] | None = set() if len(self.items) + (self.files_from is not None) > 1 else None
        for item in self._expand(counts, stdin):
            if seen is not None:
                if item.name in seen:
                    continue
                seen.add(item.name)
            if self.shard is not None and shard_of(item.name, self.shard[1]) != self.shard[0]:
                counts.other_shard += 1
                continue
            yield item

    def would_find(self, path: str) -> str | None:
        """The argument that would read ``path`` (existing or not), None if none would: a file given by
        name (the same file), a glob pattern that would list it, or a folder below which it would be
        found (with an audio extension). The paths of --files-from are not read here: an output that
        exists is compared with each (``targets.refuse_overlap``), one that does not is skipped by the
        run if a line names it."""
        target = os.path.realpath(path)
        for item in self.items:
            if os.path.isdir(item):
                root = os.path.realpath(item)
                inside = os.path.relpath(target, root)
                parts = inside.split(os.sep)
                if inside != os.curdir and parts[0] != os.pardir and not any(p.startswith(".") for p in parts):
                    if (self.recursive or len(parts) == 1) and os.path.splitext(target)[1].lower() in self.extensions:
                        return item
            elif glob.has_magic(item) and not os.path.lexists(item):
                if _would_list(item, path):
                    return item
            elif os.path.exists(item) and os.path.exists(path) and os.path.samefile(item, path):
                return item
        return None

    def overlaps(self, folder: str) -> bool:
        """Whether ``folder`` (an output folder) is an input folder, or holds one, or lies in one."""
        out = os.path.realpath(folder)
        for item in self.items:
            if os.path.isdir(item):
                root = os.path.realpath(item)
                if os.path.commonpath([out, root]) in (out, root):
                    return True
        return False

    def countable(self) -> bool:
        """Whether a second pass over the inputs (to count them for progress) reads the same thing."""
        return self.files_from != "-"

    def _expand(self, counts: Counts, stdin: Iterable[str] | None) -> Iterator[Input]:
        for item in self.items:
            if os.path.isdir(item):
                yield from self._found_in(item, counts)
            elif not os.path.lexists(item) and glob.has_magic(item):
                matches = sorted(glob.glob(item, recursive=True))
                if not matches:
                    counts.unmatched.append(item)
                for match in matches:
                    if os.path.isdir(match):
                        yield from self._found_in(match, counts)
                    elif self._wanted(os.path.basename(match), counts):
                        yield Input(match, match)
            else:  # a file given by name is tagged whatever its extension (a missing one fails as a file)
                yield Input(item, item)
        if self.files_from is not None:
            for line in read_path_list(self.files_from, stdin):
                yield Input(line, line)

    def _found_in(self, root: str, counts: Counts) -> Iterator[Input]:
        for path in walk(root, self.extensions, recursive=self.recursive, counts=counts):
            yield Input(path, os.path.relpath(path, root) if self.relative else path)

    def _wanted(self, name: str, counts: Counts) -> bool:
        if os.path.splitext(name)[1].lower() in self.extensions:
            return True
        counts.not_audio += 1
        return False
