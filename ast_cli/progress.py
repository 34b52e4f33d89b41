"""Progress on stderr, for every command: ``Progress`` for a batch run (a tqdm bar at a terminal, a
plain status line every 10 s otherwise), ``bar`` for a loop over known work (stats, an epoch, clips),
``TagBars`` for ``ast tag`` (files, and seconds of a long file; at a terminal only), and ``cleared``
and ``logging_above`` to write lines while a bar is on the screen.

No torch here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from .output import isatty

STATUS_INTERVAL = 10.0  # seconds between status lines when stderr is not a terminal (logs, CI, SLURM)


class Progress:
    """Files done of ``total`` (None until known), files/s, audio hours per hour, ETA, failures."""

    def __init__(self, enabled: bool = True, stream: IO[str] | None = None, total: int | None = None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.total = total
        self.done = 0
        self.failed = 0
        self.audio_s = 0.0
        self.start = time.monotonic()
        self._last_line = self.start
        self._bar = None
        if enabled and isatty(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="file", file=self.stream, dynamic_ncols=True, smoothing=0.1)

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def update(self, audio_s: float = 0.0, failed: bool = False) -> None:
        self.done += 1
        self.failed += failed
        self.audio_s += audio_s
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(self._extras(), refresh=False)
            self._bar.update(1)
        else:
            self.tick()

    def write(self, line: str) -> None:
        """A message line on the same stream, above the bar while there is one."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def tick(self) -> None:
        """A status line when the interval has passed (also called while waiting on a long file)."""
        now = time.monotonic()
        if self.enabled and self._bar is None and now - self._last_line >= STATUS_INTERVAL:
            self._last_line = now
            print(f"ast: {self.status()}", file=self.stream, flush=True)

    def status(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        of = f"/{self.total}" if self.total is not None else ""
        parts = [f"{self.done}{of} files", f"{rate:.2f} files/s", self._extras()]
        if self.total is not None and rate > 0 and self.total > self.done:
            from tqdm import tqdm

            parts.append(f"ETA {tqdm.format_interval((self.total - self.done) / rate)}")
        return ", ".join(parts)

    def _extras(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        return f"{self.audio_s / elapsed:.0f}x real time, {self.failed} failed"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    unit: str = "file",
    desc: str | None = None,
    enabled: bool | None = True,
    stream: IO[str] | None = None,
) -> Any:
    """A transient tqdm bar on stderr for a loop over known work; ``enabled=None``: only at a terminal
    (tqdm's own test). The bar is cleared when done: results and summaries stay on screen alone."""
    from tqdm import tqdm

    return tqdm(
        iterable,
        total=total,
        unit=unit,
        desc=desc,
        file=stream or sys.stderr,
        disable=None if enabled is None else not enabled,
        dynamic_ncols=True,
        leave=False,
    )


class TagBars:
    """``ast tag``'s bars, at a terminal only: files done when there are several, and seconds of the
    current file's audio cut into windows. A bar shows after ``DELAY`` seconds, so a quick run shows
    none; both are cleared when done."""

    DELAY = 1.0  # seconds

    def __init__(self, files: int, enabled: bool = True, stream: IO[str] | None = None):
        self.stream = stream or sys.stderr
        self.shown = enabled and isatty(self.stream)
        self._files = self._bar(files, "file", None, 0) if self.shown and files > 1 else None
        self._seconds: Any = None

    def _bar(self, total: int | None, unit: str, desc: str | None, position: int) -> Any:
        from tqdm import tqdm

        return tqdm(
            total=total,
            unit=unit,
            desc=desc,
            file=self.stream,
            dynamic_ncols=True,
            leave=False,
            delay=self.DELAY,
            position=position,
        )

    def start(self, name: str, seconds: float | None) -> None:
        """A file begins: ``seconds`` of audio in it (None: not known before it is read)."""
        if self.shown:
            total = None if seconds is None else max(1, round(seconds))
            self._seconds = self._bar(total, "s", os.path.basename(name) or name, int(self._files is not None))

    def reached(self, seconds: float) -> None:
        """The file's audio is cut into windows up to ``seconds``."""
        if self._seconds is not None and int(seconds) > self._seconds.n:
            self._seconds.update(int(seconds) - self._seconds.n)

    def done(self) -> None:
        if self._seconds is not None:
            self._seconds.close()
            self._seconds = None
        if self._files is not None:
            self._files.update(1)

    def close(self) -> None:
        if self._seconds is not None:
            self._seconds.close()
            self._seconds = None
        if self._files is not None:
            self._files.close()
            self._files = None


@contextlib.contextmanager
def cleared() -> Iterator[None]:
    """Any bar on the terminal cleared for the block and drawn again after: for a result line on
    stdout or a message on stderr while bars are shown."""
    from tqdm import tqdm

    with tqdm.external_write_mode():
        yield


@contextlib.contextmanager
def logging_above(shown: bool) -> Iterator[None]:
    """While ``shown``, the package's log lines (warnings about a file) are written above the bars."""
    if not shown:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(loggers=[logging.getLogger("ast_cli")]):
        yield
