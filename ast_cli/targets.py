"""Where a command writes, and the one check that it never writes over one of its inputs.

Two names are the same file when ``os.stat`` (links followed) gives the same ``st_dev`` and
``st_ino``. Names are never compared as text: a symbolic link, a hard link, ``..``, a glob's ``**``
matching no folder, a linked folder or a relative path each name a file under another name, and only
its identity sees through all of them. Every command that writes a file asks ``refuse_overlap`` with
its outputs and every input it reads (audio, path lists, the model's files) before it writes; a match
is a usage error (exit 2) naming both paths, ``--force`` or not.

A special file (a character device such as a terminal or /dev/null, a pipe, a socket) and a name of a
file descriptor (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N) are written as streams: opened
for appending, never truncated, replaced, locked or given a settings file beside them. A block device
is refused. No torch here.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import UsageError

# The names through which a process writes to a descriptor it already holds (stdout into a pipe,
# a redirected file): the file behind them belongs to the shell, so it is written as a stream.
DESCRIPTOR_NAME = re.compile(r"/dev/(stdout|stderr|fd/\d+)|/proc/(self|thread-self|\d+)/(task/\d+/)?fd/\d+")
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")  # hub.WEIGHT_FILES: what a model folder is read from
MODEL_FOLDER_FILES = ("config.json", *WEIGHT_NAMES, "preprocessor_config.json")
SAVED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")  # what checkpoints.save writes

Identity = tuple[int, int]  # (st_dev, st_ino)


@dataclass(frozen=True)
class Target:
    """An output as the file system sees it before anything is written."""

    path: str
    identity: Identity | None  # the existing file's, links followed; None: nothing there yet
    stream: bool  # a special file or a descriptor's name: appended to, never replaced

    @property
    def exists(self) -> bool:
        return self.identity is not None


def target(path: str | os.PathLike[str]) -> Target:
    """What ``path`` is as an output. A UsageError for a block device (a stream onto a disk)."""
    name = os.fspath(path)
    descriptor = DESCRIPTOR_NAME.fullmatch(os.path.abspath(name)) is not None
    try:
        st = os.stat(name)
    except (OSError, ValueError):  # nothing there yet (or a broken link): a new file
        return Target(name, None, descriptor)
    if stat.S_ISBLK(st.st_mode):
        raise UsageError(f"{name}: is a block device, not a file", hint="write the output to a file")
    special = stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode)
    return Target(name, (st.st_dev, st.st_ino), descriptor or special)


def identity(path: str | os.PathLike[str]) -> Identity | None:
    """The file ``path`` names, links followed; None when there is none (it cannot be an output)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def refuse_overlap(
    outputs: Iterable[Target | str | os.PathLike[str]],
    inputs: Iterable[str | os.PathLike[str]],
    *,
    no_stream: str | None = None,
) -> None:
    """A UsageError naming both paths when one of ``inputs`` is one of the existing files ``outputs``
    would write (streams excepted: they are never replaced; with ``no_stream``, the reason a file is
    needed, a stream is refused). ``inputs`` is consumed once, one name at a time, so a generator over
    millions of files is checked without a list of them; ``-`` (standard input) is no file."""
    written: dict[Identity, str] = {}
    for out in outputs:
        found = out if isinstance(out, Target) else target(out)
        if found.stream and no_stream:
            raise UsageError(f"{found.path}: is a stream, not a file", hint=no_stream)
        if found.identity is not None and not found.stream:
            written[found.identity] = found.path
    if not written:
        return
    for path in inputs:
        same = None if os.fspath(path) == "-" else identity(path)
        if same is not None and same in written:
            raise same_file(written[same], os.fspath(path))


def same_file(out: str, path: str) -> UsageError:
    """The one message for an output that is an input (exit 2)."""
    return UsageError(
        f"{out}: the output is the input {path}; nothing was written",
        hint="write the output outside the files being read",
    )


def model_files(source: str | None, *also: str | None) -> list[str]:
    """The local files a model is read from: an authors' checkpoint and its ``X.pth.json`` sidecar
    (``authors.sidecar_path``), or a folder's config.json, weights and preprocessor_config.json; and
    ``also`` (a labels CSV, a statistics file). A Hub id adds nothing: its files live in the Hugging
    Face cache, where no output is meant to go, and finding them could need the network."""
    files: list[str] = [f for f in also if isinstance(f, str) and os.path.isfile(f)]
    if not source:
        return files
    path = os.path.expanduser(source)
    if os.path.isdir(path):
        files += [os.path.join(path, name) for name in MODEL_FOLDER_FILES]
    elif os.path.exists(path):
        files += [path, path + ".json"]
    return files


def open_stream(path: str):
    """A special file opened for writing as a stream: appended to (a redirected file keeps what the
    shell and earlier lines put there), never truncated or created beside."""
    return open(path, "ab", buffering=0)
