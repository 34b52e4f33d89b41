"""What several commands share: loading the model a spec names, the exit status of a run, one read
of standard input, label lists and thresholds files."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn, TypedDict

import typer

from ..errors import EXIT_FAILED, EXIT_OK, UsageError
from ..spec import ModelSpec

if TYPE_CHECKING:
    from ..inference import Tagger
    from ..thresholds import Thresholds


def load(spec: ModelSpec) -> Tagger:
    """The ``Tagger`` of ``spec`` (imports torch)."""
    from ..inference import load_model

    return load_model(spec)


def exit_with(failed: int) -> NoReturn:
    """Exit 1 when an input failed (the others were still processed), else 0."""
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


class LabelLists(TypedDict):
    include: list[str]
    exclude: list[str]


def label_lists(
    include: list[str], include_from: str | None, exclude: list[str], exclude_from: str | None
) -> LabelLists:
    """``TagOptions``' include and exclude: --include/--exclude, plus the labels of --include-from/--exclude-from."""
    from ..thresholds import read_label_list

    return {
        "include": [*include, *(read_label_list(include_from) if include_from else [])],
        "exclude": [*exclude, *(read_label_list(exclude_from) if exclude_from else [])],
    }


def thresholds_of(path: str | None) -> Thresholds | None:
    """--thresholds FILE, read."""
    from ..thresholds import read_thresholds

    return read_thresholds(path) if path else None


def stdin_once(files: list[str]) -> None:
    """Standard input ('-') is one stream: it can be named once."""
    if files.count("-") > 1:
        raise UsageError("standard input ('-') can be read only once")
