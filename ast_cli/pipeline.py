"""``ast batch``'s pipeline: files go to a source (``workers``, or Ray's), windows of any files are
stacked into batches for the model, and each file's window scores become the record ``ast tag`` makes
(``RecordMaker.record``), in input order or, with ``unordered``, as files finish.

Memory is bounded: the source holds a few files, the in-order output runs at most ``source.max_ahead``
files ahead of the one it waits on, and windows wait for the model in batches of ``windows_per_batch``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .inference import Tagger
from .inputs import Input
from .options import TagOptions
from .records import FileResult, RecordMaker, ScoreRows
from .sinks import Sink
from .workers import Source


@dataclass
class _FileState:
    item: Input
    starts: list[int] = field(default_factory=list)
    scores: ScoreRows = field(default_factory=ScoreRows)
    expected: int | None = None  # windows, known once the worker is done with the file
    duration_s: float = 0.0
    error: str | None = None

    def ready(self) -> bool:
        return self.error is not None or (self.expected is not None and len(self.scores) == self.expected)


class Pipeline:
    """Records of the inputs, batching windows across files. ``sink`` says which input is the run's own
    output (never read); ``tick`` keeps the progress line going while a long file decodes."""

    def __init__(
        self,
        tagger: Tagger,
        options: TagOptions,
        maker: RecordMaker,
        source: Source,
        sink: Sink,
        unordered: bool,
        tick: Callable[[], None],
    ):
        self.tagger, self.options, self.maker = tagger, options, maker
        self.source, self.sink, self.unordered, self.tick = source, sink, unordered, tick
        self.batch_size = tagger.windows_per_batch(options)
        self.states: dict[int, _FileState] = {}
        self.pending: deque[tuple[int, int, np.ndarray]] = deque()  # (seq, start frame, (T, F) features)
        self.finished: dict[int, dict] = {}
        self.next_seq = self.next_out = 0
        self.exhausted = False

    def records(self, items: Iterator[Input]) -> Iterator[dict]:
        """One record an input of ``items``, each once its file is done."""
        while True:
            self._feed(items)
            if self.exhausted and not self.states and not self.finished:
                return
            message = self._next_message()
            if message is None:
                if not self.pending:
                    self.tick()  # waiting on a long file: the status line still comes
                else:  # a full batch, or nothing else is ready: keep the model busy
                    self._score_batch()
            elif not self._take(message):
                continue
            yield from self._out()

    def _next_message(self) -> tuple | None:
        """The source's next message, none while a full batch waits; blocking only when no window does."""
        if len(self.pending) >= self.batch_size:
            return None
        return self.source.get(block=not self.pending and bool(self.states))

    def _feed(self, items: Iterator[Input]) -> None:
        """Keep the source fed: files up to its room, and in order no further ahead than it allows."""
        while not self.exhausted and self.source.has_room() and (self.unordered or self._ahead()):
            item = next(items, None)
            if item is None:
                self.exhausted = True
            elif self.sink.holds(item.path):  # a --files-from line naming the output itself
                self.finished[self.next_seq] = {
                    "path": item.name,
                    "duration_s": None,
                    "labels": [],
                    "error": f"{item.name}: is this run's output, not read",
                }
                self.next_seq += 1
            else:
                self.states[self.next_seq] = _FileState(item)
                self.source.submit(self.next_seq, item.path)
                self.next_seq += 1

    def _ahead(self) -> bool:
        return self.next_seq - self.next_out < self.source.max_ahead

    def _score_batch(self) -> None:
        """One forward pass over up to ``batch_size`` waiting windows of one length, of any files."""
        shape = self.pending[0][2].shape  # --crop-short: windows of other lengths wait for the next batch
        batch: list[tuple[int, int, np.ndarray]] = []
        while self.pending and len(batch) < self.batch_size and self.pending[0][2].shape == shape:
            batch.append(self.pending.popleft())
        features = torch.from_numpy(np.stack([w[2] for w in batch]))  # (B, T, F)
        scores = self.tagger.scores(features, self.options.activation)  # (B, C)
        for (seq, start, _), row in zip(batch, scores, strict=True):
            state = self.states.get(seq)
            if state is not None and state.error is None:
                state.starts.append(start)
                state.scores.append(row)
                if state.ready():
                    self._finish(seq)

    def _take(self, message: tuple) -> bool:
        """Apply a source's message to its file; False when the file is gone or failed already."""
        kind, seq = message[0], message[1]
        state = self.states.get(seq)
        if state is None or state.error is not None:
            return False
        if kind == "w":
            self.pending.extend((seq, start, feats) for start, feats in zip(message[2], message[3], strict=True))
        elif kind == "s":  # windows scored elsewhere (a Ray actor), in order
            state.starts.extend(message[2])
            state.scores.extend(message[3])
        elif kind == "d":
            state.expected, state.duration_s = message[2], message[3]
        else:
            state.error = message[2]
            self.pending = deque(w for w in self.pending if w[0] != seq)  # its windows need no model time
        if state.ready():
            self._finish(seq)
        return True

    def _finish(self, seq: int) -> None:
        state = self.states.pop(seq)
        result = FileResult(
            path=state.item.name,
            duration_s=state.duration_s,
            starts=state.starts,
            scores=state.scores,
            error=state.error,
        )
        self.finished[seq] = self.maker.record(result)

    def _out(self) -> Iterator[dict]:
        """The finished records that may go out now: all of them, or in order up to the first gap."""
        if self.unordered:
            for seq in list(self.finished):
                yield self.finished.pop(seq)
        else:
            while self.next_out in self.finished:
                yield self.finished.pop(self.next_out)
                self.next_out += 1
