"""Progress on stderr, for every command: ``Progress`` for a batch run (a tqdm bar at a terminal, a
plain status line every 10 s otherwise), ``bar`` for a loop over known work (stats, an epoch).

No torch here.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
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
