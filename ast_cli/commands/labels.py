"""``ast labels``: a model's labels, one a line, for grep and scripts."""

from __future__ import annotations

import typer

from .. import process
from ..hub import DEFAULT_MODEL
from ..params.common import Debug, Quiet
from ..params.model import LabelNames, LabelPattern, Model
from .common import exit_with


def labels_command(
    pattern: LabelPattern = None,
    model: Model = DEFAULT_MODEL,
    labels: LabelNames = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """List a model's labels: index<TAB>label, one a line, for grep and scripts.

    Reads config.json only, never the weights (a .pth is read for its head size; name its outputs with --labels).
    Exit status 1 when PATTERN matches no label.

    Examples:

      ast labels dog

      ast labels -m MIT/ast-finetuned-speech-commands-v2 '^(yes|no)$'
    """
    from ..labels import label_lines, model_labels

    lines = label_lines(model_labels(model, labels=labels), pattern)
    for line in lines:
        typer.echo(line)
    if not lines and not quiet:
        process.status(f"no label of {model} matches {pattern!r}")
    exit_with(not lines)
