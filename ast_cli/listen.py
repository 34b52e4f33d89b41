"""``ast listen``: tag live audio as it arrives, from a source of ``livesources`` (standard input or a
microphone).

A reader thread turns the source into 16 kHz mono blocks and keeps the last window of them in a
bounded buffer; the tagger wakes every ``hop`` seconds of audio and tags the newest window. When
tagging falls behind the audio, or a stalled source sends a burst, it skips to the newest window
instead of queueing (the skipped hops are counted, the cause said once), so memory stays at one
window however long it runs. Every hop gives a record ``{"start_s", "end_s", "labels"}``; with
``events`` only changes are reported, with hysteresis.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import torch

from .audio import SAMPLE_RATE, StreamResampler
from .errors import UsageError
from .features import FRAME_LENGTH, FRAMES_PER_SECOND, fbank
from .inference import Tagger
from .livesources import open_source
from .options import ListenOptions, TagOptions

_log = logging.getLogger(__name__)  # warnings: tagging falls behind the audio, the source stalls (once a run)


# -- the rolling window ---------------------------------------------------------------------------
class Recent:
    """The last ``size`` samples at 16 kHz and how many have arrived, filled by the reader thread."""

    def __init__(self, size: int, ahead: int | None = None):
        self.size = size
        self.ahead = ahead  # a file, not a live source: the reader waits while this many samples are untagged
        self.tagged_to = 0
        self.buf = np.zeros(0, dtype=np.float32)
        self.total = 0  # samples received so far
        self.arrived = time.monotonic()  # when the newest samples came
        self.ended = False
        self.error: BaseException | None = None
        self.changed = threading.Condition()

    def add(self, samples: np.ndarray) -> None:
        with self.changed:
            while self.ahead is not None and self.total - self.tagged_to >= self.ahead:
                self.changed.wait(0.5)
            self.buf = np.concatenate([self.buf, samples])[-self.size :]
            self.total += len(samples)
            self.arrived = time.monotonic()
            self.changed.notify_all()

    def tagged(self, end: int) -> None:
        """The listener has tagged up to ``end``: a file's reader may go on."""
        with self.changed:
            self.tagged_to = end
            self.changed.notify_all()

    def end(self, error: BaseException | None = None) -> None:
        with self.changed:
            self.ended, self.error = True, error
            self.changed.notify_all()

    def wait_for(self, total: int) -> tuple[np.ndarray, int, float, bool]:
        """Once ``total`` samples have arrived, or the source ended: the newest window, the sample
        count it ends at, when that audio arrived, and whether the source has ended."""
        with self.changed:
            while self.total < total and not self.ended:
                self.changed.wait(0.5)
            if self.error is not None:
                raise self.error
            return self.buf.copy(), self.total, self.arrived, self.ended


def read_into(blocks: Iterator[np.ndarray], rate: int, recent: Recent, piece: int) -> None:
    """The reader thread: resample to 16 kHz and keep the newest window, ``piece`` samples at a time."""
    try:
        resampler = StreamResampler(rate)
        for block in blocks:
            out = resampler.feed(block)
            for i in range(0, len(out), piece):
                recent.add(out[i : i + piece])
        tail = resampler.flush()
        for i in range(0, len(tail), piece):
            recent.add(tail[i : i + piece])
        recent.end()
    except BaseException as exc:
        recent.end(exc)


# -- events ---------------------------------------------------------------------------------------
@dataclass
class Active:
    start_s: float
    peak: float
    below_since: float | None = None
    last_above_s: float = 0.0


@dataclass
class Events:
    """Hysteresis over the hop scores: a label starts when it reaches its threshold (one for all, or
    (C,): each label's own from --thresholds, else --threshold; -inf labels take no part) and ends once it
    has stayed below it for ``hold`` seconds, so one bark is one event, not one a hop."""

    labels: list[str]
    mask: torch.Tensor
    threshold: float | torch.Tensor
    hold: float
    active: dict[int, Active] = field(default_factory=dict)

    def update(self, scores: torch.Tensor, end_s: float) -> list[dict]:
        out = []
        cut = torch.as_tensor(self.threshold, dtype=torch.float64).expand(len(self.labels))
        for i in torch.nonzero(self.mask & torch.isfinite(cut)).flatten().tolist():
            score = float(scores[i])
            state = self.active.get(i)
            if score >= float(cut[i]):
                if state is None:
                    self.active[i] = Active(end_s, score, last_above_s=end_s)
                    out.append(
                        {
                            "event": "start",
                            "label": self.labels[i],
                            "index": i,
                            "time_s": round(end_s, 3),
                            "score": round(score, 6),
                        }
                    )
                else:
                    state.peak, state.below_since, state.last_above_s = max(state.peak, score), None, end_s
            elif state is not None:
                state.below_since = end_s if state.below_since is None else state.below_since
                if end_s - state.below_since >= self.hold:
                    out.append(self.ended(i, state))
        return out

    def ended(self, index: int, state: Active) -> dict:
        del self.active[index]
        return {
            "event": "end",
            "label": self.labels[index],
            "index": index,
            "start_s": round(state.start_s, 3),
            "end_s": round(state.last_above_s, 3),
            "duration_s": round(state.last_above_s - state.start_s, 3),
            "peak": round(state.peak, 6),
        }

    def close(self) -> list[dict]:
        return [self.ended(i, state) for i, state in list(self.active.items())]


# -- the listener ---------------------------------------------------------------------------------
@dataclass
class Summary:
    audio_s: float = 0.0
    hops: int = 0
    skipped: int = 0
    latency_total_s: float = 0.0  # a sum, not a list: the summary of a run of days stays a few numbers

    def line(self) -> str:
        mean = f", mean latency {self.latency_total_s / self.hops:.2f} s" if self.hops else ""
        return f"listened to {self.audio_s:.1f} s of audio: {self.hops} hop(s) tagged, {self.skipped} skipped{mean}"


class Lag:
    """Why a live source got whole hops ahead of the tagger, said once for each cause: tagging slower
    than the audio (a hop takes longer to tag than it lasts), or, while tagging keeps up, a source that
    stalled (no new audio for a hop or more, then a burst) or sends faster than real time (a file piped in)."""

    def __init__(self, hop_s: float):
        self.hop_s = hop_s
        self.tag_s = 0.0  # how long the last hop took to tag
        self.said: set[str] = set()

    @contextlib.contextmanager
    def tagging(self) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.tag_s = time.monotonic() - start

    def skipped(self, came_s: float, waited_s: float) -> None:
        """Whole hops were skipped: ``came_s`` seconds of audio came since the last hop tagged, and the
        tagger waited ``waited_s`` for them."""
        slow = self.tag_s > self.hop_s
        if ("slow" if slow else "burst") in self.said:
            return
        self.said.add("slow" if slow else "burst")
        if slow:
            _log.warning(
                f"tagging falls behind the audio: a hop takes {self.tag_s:.2f} s to tag, longer than the "
                f"{self.hop_s} s hop; skipping to the newest (try a longer --hop)"
            )
            return
        keeps_up = f"tagging keeps up ({self.tag_s:.3f} s a {self.hop_s} s hop); skipping to the newest"
        if waited_s >= self.hop_s:
            _log.warning(
                f"the source stalled: no new audio for {waited_s:.1f} s, then {came_s:.1f} s at once; {keeps_up}"
            )
        else:
            _log.warning(
                f"the source sends audio faster than it plays ({came_s:.1f} s at once); {keeps_up} "
                "(to tag every hop of a file, redirect it: ast listen - < FILE)"
            )


def check_events(events: bool, options: TagOptions) -> bool:
    """``events``, once it is known to have thresholds (--threshold, or --thresholds FILE)."""
    if events and options.threshold is None and options.thresholds is None:
        raise UsageError("--events needs --threshold", hint="e.g. --events --threshold 0.5, or --thresholds FILE")
    return events


class HopTagger:
    """The tagging side of ``listen``: a hop's window in, its record (or the events it gives) out."""

    def __init__(self, tagger: Tagger, options: TagOptions, emit: Callable[[dict], None], events: bool, hold_s: float):
        window, _ = tagger.window_hop_frames(options)
        self.tagger, self.options, self.emit = tagger, options, emit
        self.maker = tagger.record_maker(options)
        self.spec = tagger.window_spec(options)
        cut = self.maker.cut
        self.events = Events(tagger.labels, self.maker.mask, cut, hold_s) if events and cut is not None else None
        self.window_samples = (window - 1) * (SAMPLE_RATE // FRAMES_PER_SECOND) + FRAME_LENGTH

    def tag(self, samples: np.ndarray, end: int) -> None:
        """Tag ``samples`` (at most a window, 16 kHz), the audio that ends ``end`` samples into the source."""
        features = self.spec.prepare(fbank(samples, self.spec.num_mel_bins))[None]  # (1, T, F)
        scores = self.tagger.scores(features, self.options.activation)[0]
        end_s = end / SAMPLE_RATE
        if self.events is None:
            start_s = end_s - len(samples) / SAMPLE_RATE
            self.emit({"start_s": round(start_s, 3), "end_s": round(end_s, 3), "labels": self.maker.select(scores)})
            return
        for event in self.events.update(scores, end_s):
            self.emit(event)

    def close(self) -> None:
        """The events still open end with the source."""
        for event in self.events.close() if self.events else ():
            self.emit(event)


def listen(
    tagger: Tagger,
    blocks: Iterator[np.ndarray],
    rate: int,
    options: TagOptions,
    *,
    emit: Callable[[dict], None],
    summary: Summary,
    hop_s: float = 1.0,
    events: bool = False,
    hold_s: float = 2.0,
    live: bool = True,
) -> Summary:
    """Tag the audio of ``blocks`` (mono, ``rate`` Hz) every ``hop_s`` seconds of it, over the last
    window (zero-padded while shorter, as ``ast tag`` pads a short clip), and ``emit`` each record, or
    each event with ``events``. A ``live`` source that outruns the tagger is skipped ahead; a file
    (not live) is read no faster than it is tagged, every hop. Returns ``summary`` when the source
    ends (its last audio tagged); a KeyboardInterrupt propagates with ``summary`` up to date."""
    if not (hop_s > 0 and hold_s >= 0):
        raise UsageError(f"--hop must be a positive number of seconds and --hold 0 or more, got {hop_s} and {hold_s}")
    hops = HopTagger(tagger, options, emit, check_events(events, options), hold_s)
    hop = max(1, round(hop_s * SAMPLE_RATE))
    recent = Recent(
        hops.window_samples + 2 * hop, ahead=None if live else 2 * hop
    )  # a window and what came after it was due
    threading.Thread(target=read_into, args=(blocks, rate, recent, hop), name="ast-listen-reader", daemon=True).start()
    due, tagged_to, lag = hop, 0, Lag(hop_s)
    while True:
        asked = time.monotonic()
        samples, total, arrived, ended = recent.wait_for(due)
        summary.audio_s = total / SAMPLE_RATE
        if total > tagged_to and len(samples) >= FRAME_LENGTH:
            behind = live and total - due >= hop  # whole hops came while the last one was tagged: go to the newest
            if behind:  # (a file or in-memory source is read no faster than it is tagged: never behind, every hop)
                summary.skipped += (total - due) // hop
                lag.skipped((total - tagged_to) / SAMPLE_RATE, waited_s=time.monotonic() - asked)
            end = total if behind or total < due else due  # on time: the window ends where the hop is due
            samples = samples[: len(samples) - (total - end)][-hops.window_samples :]
            with lag.tagging():
                hops.tag(samples, end)
            summary.hops += 1
            summary.latency_total_s += time.monotonic() - arrived
            tagged_to = end
            recent.tagged(end)
        if ended and (tagged_to >= total or len(samples) < FRAME_LENGTH):
            break
        due = (tagged_to // hop + 1) * hop
    hops.close()
    return summary


def run_listen(
    tagger: Tagger,
    options: TagOptions,
    how: ListenOptions,
    *,
    stream: IO[str],
    summary: Summary,
) -> Summary:
    """``ast listen``: open the source, then tag it until it ends; a live view at a terminal, else one
    JSON line a record (or an event), flushed at once."""
    from .output import isatty

    check_events(how.events, options)  # before the source is opened (a microphone, a pipe)
    with contextlib.ExitStack() as stack:
        source = open_source(how, options.channel, stack)
        _log.debug(f"listening to {how.source or 'the microphone'} at {source.rate} Hz, a hop every {how.hop} s")
        emit = stack.enter_context(LiveView(stream)) if isatty(stream) and not how.events else print_record(stream)
        return listen(
            tagger,
            source.blocks,
            source.rate,
            options,
            emit=emit,
            summary=summary,
            hop_s=how.hop,
            events=how.events,
            hold_s=how.hold,
            live=source.live,
        )


class LiveView:
    """The newest labels at a terminal, redrawn every hop: time, label, score and a bar."""

    def __init__(self, stream: IO[str]):
        from rich.live import Live

        from .output import console

        self.live = Live(console=console(stream), auto_refresh=False, transient=False)

    def __enter__(self) -> Callable[[dict], None]:
        self.live.start()
        return self.show

    def __exit__(self, *exc) -> None:
        self.live.stop()

    def show(self, record: dict) -> None:
        from rich.table import Table

        from .output import score_bar

        table = Table(title=f"{record['start_s']:.1f} - {record['end_s']:.1f} s", title_justify="left", show_edge=False)
        table.add_column("label")
        table.add_column("score", justify="right")
        table.add_column("", no_wrap=True)
        for item in record["labels"]:
            table.add_row(item["label"], f"{item['score']:.3f}", score_bar(item["score"]))
        self.live.update(table, refresh=True)


def print_record(stream: IO[str]) -> Callable[[dict], None]:
    from .output import to_json

    def emit(record: dict) -> None:
        stream.write(to_json(record) + "\n")
        stream.flush()

    return emit
