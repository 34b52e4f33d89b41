"""Other code's messages, kept to our one line an event on stderr.

- ``one_line`` escapes what would break a message over lines (a newline in a file name).
- ``one_line_warnings`` shows every Python warning (ours, torch's, torchaudio's) as ``ast: warning: ...``,
  in this process and in worker processes, where Python's own format takes two lines (file, then code).
- ``child_line`` is the useful last line of a child program's stderr (ffmpeg, ffprobe), without the
  names it was given for the input (a temporary file of standard input is ``-``).
- ``c_output_captured`` keeps what C code writes on file descriptor 2 off the user's terminal:
  libsndfile links libmpg123, which prints notes ("Warning: Xing stream size off by more than 1%")
  there, and libsndfile offers no switch to quiet it.
- ``die_with_parent`` is a DataLoader ``worker_init_fn``: a worker ends without a word when its parent
  is killed, instead of printing a ConnectionResetError traceback from its queue.

No torch here.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from typing import IO

MAX_CHILD_LINE = 200  # characters of a child program's line kept in ours
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when the thread that forked it ends
# "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55f6...] " before an ffmpeg line: which of its components spoke
_FFMPEG_CONTEXT = re.compile(r"^\[[^]]*@ 0x[0-9a-f]+\]\s*")


def one_line(text: str) -> str:
    """Control characters (a newline or an escape sequence in a file name) escaped, so every message
    stays one line and cannot drive the terminal; so are the lone surrogates of a file name that is not
    UTF-8, which a strict stderr could not encode."""
    return re.sub("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]", lambda m: repr(m.group())[1:-1], text)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` as one line, without the file and the code that warned."""
    print(f"ast: warning: {one_line(str(message))}", file=sys.stderr, flush=True)


def one_line_warnings() -> None:
    """Every Python warning of this process as one ``ast: warning:`` line."""
    warnings.showwarning = show_warning


# -- child programs ---------------------------------------------------------------------------------
def child_line(stderr: str | bytes, names: dict[str, str] | None = None) -> str:
    """The last non-empty line of a child program's stderr, trimmed: without ffmpeg's component tag or
    the input's name in front (our message names the file already); ``names`` maps a name the child was
    given (a temporary file, ``pipe:0``) to the one the user knows, ``-`` for standard input."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    line = _FFMPEG_CONTEXT.sub("", lines[-1])
    for given, shown in (names or {}).items():
        line = line.removeprefix(f"{given}: ").replace(given, shown)
    return one_line(line if len(line) <= MAX_CHILD_LINE else line[: MAX_CHILD_LINE - 3] + "...")


class ChildStderr:
    """A child's stderr read on a thread as it comes (a full pipe would stop the child), its last lines
    kept for ``child_line``."""

    KEEP = 16  # lines

    def __init__(self, pipe: IO[bytes]):
        self.lines: list[bytes] = []
        self._thread = threading.Thread(target=self._drain, args=(pipe,), name="ast-child-stderr", daemon=True)
        self._thread.start()

    def _drain(self, pipe: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in pipe:
                self.lines = [*self.lines[-(self.KEEP - 1) :], line]

    def text(self, timeout: float = 5.0) -> str:
        """What it said, once the child has closed its stderr (at most ``timeout`` s later)."""
        self._thread.join(timeout)
        return b"".join(self.lines).decode(errors="replace")


# -- C libraries ------------------------------------------------------------------------------------
_fd2_lock = threading.Lock()
_spill: IO[bytes] | None = None  # one unnamed temporary file a process, reused


@contextlib.contextmanager
def c_output_captured() -> Iterator[list[str]]:
    """File descriptor 2 points at a temporary file during the block; the list it gives is filled with
    the lines C code wrote there. A line of ours (``ast: ``) that another thread printed meanwhile is
    written on to stderr. Without a usable descriptor 2 (closed), nothing is captured."""
    global _spill
    lines: list[str] = []
    with _fd2_lock:
        try:
            _flush_stderr()
            saved = os.dup(2)
        except OSError:
            yield lines
            return
        try:
            if _spill is None:
                _spill = tempfile.TemporaryFile()
                atexit.register(_spill.close)
            _spill.seek(0)
            _spill.truncate()
            os.dup2(_spill.fileno(), 2)
        except OSError:
            os.close(saved)
            yield lines
            return
        try:
            yield lines
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            _spill.seek(0)
            lines.extend(_sorted_out(_spill.read().decode(errors="replace")))


def _sorted_out(text: str) -> list[str]:
    """The C library's lines; ours, printed by another thread into the capture, go on to stderr."""
    theirs = []
    for line in text.splitlines():
        if line.startswith("ast: "):
            print(line, file=sys.stderr, flush=True)
        elif line.strip():
            theirs.append(line.strip())
    return theirs


def _flush_stderr() -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()


# -- worker processes -------------------------------------------------------------------------------
def die_with_parent(parent: int, worker_id: int = 0) -> None:
    """In a worker process: warnings as one line, and on Linux a SIGKILL when the ``parent`` process
    goes (a SIGKILL to it gives a worker no chance to close its queue: without this, the worker's next
    put fails with a ConnectionResetError traceback). ``functools.partial(die_with_parent, os.getpid())``
    is a DataLoader's ``worker_init_fn``."""
    one_line_warnings()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() == parent:
        return
    try:  # started by a fork server, whose end says nothing; or the parent went before prctl
        os.kill(parent, 0)
    except ProcessLookupError:
        os._exit(0)
    except OSError:
        pass
