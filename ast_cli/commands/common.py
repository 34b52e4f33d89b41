"""What several commands share: loading the model a spec names, the exit status of a run, one read
of standard input."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer

from ..errors import EXIT_FAILED, EXIT_OK, UsageError
from ..spec import ModelSpec

if TYPE_CHECKING:
    from ..inference import Tagger


def load(spec: ModelSpec) -> Tagger:
    """The ``Tagger`` of ``spec`` (imports torch)."""
    from ..inference import load_model

    return load_model(spec)


def exit_with(failed: int) -> NoReturn:
    """Exit 1 when an input failed (the others were still processed), else 0."""
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def stdin_once(files: list[str]) -> None:
    """Standard input ('-') is one stream: it can be named once."""
    if files.count("-") > 1:
        raise UsageError("standard input ('-') can be read only once")
