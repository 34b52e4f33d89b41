"""``ast tag``: files in order, each read to its end, one record each, written as it is ready.

``ast batch`` (``batch.py``) is the same job for collections: folders, resume, workers, sinks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO

from .errors import AudioError, Interrupted
from .inference import Tagger
from .options import RecordFormat, TagOptions
from .records import FileResult
from .writers import get_writer

_log = logging.getLogger(__name__)  # --debug shows the traceback of each file that failed


def tag_files(tagger: Tagger, sources: Iterable[str], options: TagOptions) -> Iterator[dict]:
    """Records of several inputs in order; an input that cannot be decoded gets a record with ``error``.
    Bad --window/--hop and unknown --include/--exclude labels fail before any work."""
    maker = tagger.record_maker(options)
    for source in sources:
        try:
            result = tagger.run(source, options)
        except AudioError as exc:
            _log.debug("%s", exc, exc_info=True)
            result = FileResult(path=source, error=str(exc))
        yield maker.record(result)


def run_tag(
    tagger: Tagger,
    sources: Sequence[str],
    options: TagOptions,
    *,
    fmt: RecordFormat,
    stream: IO[str],
    on_error: Callable[[str], None],
) -> int:
    """Tag ``sources`` into ``stream`` in ``fmt``, telling ``on_error`` of each file that failed;
    returns how many failed. Ctrl-C still leaves a valid document (a JSON array is closed)."""
    maker = tagger.record_maker(options)  # unknown labels fail before the output is started
    columns = options.top or len(tagger.labels)
    writer = get_writer(fmt, stream, columns=columns, timeline=options.timeline, score_columns=maker.score_columns)
    failed = done = 0
    try:
        for record in tag_files(tagger, sources, options):
            if "error" in record:
                failed += 1
                on_error(record["error"])
            done += 1  # counted before the write: a record being written when Ctrl-C comes is done
            writer.write(record)
    except KeyboardInterrupt:
        writer.close()
        raise Interrupted(f"interrupted after {done} of {len(sources)} file(s)") from None
    writer.close()
    return failed
