"""The ``ast`` command line: the app, its root options, and the registration of the commands.

Each command is a module of ``commands/`` (its flags from ``params/``, its options and ``ModelSpec``
built by keyword, one core call). Importing this module does not import torch: ``ast --help`` and
shell completion stay instant, and each command imports its core when it runs. The process around
the commands (the one exit point, --quiet/--debug, the message channel, the torch import, the fast
end) is ``process.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from . import process
from .commands import batch, clips, embed, export, finetune, labels, listen, models, stats, tag
from .commands import eval as evaluate
from .version import __version__

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="ast",
    help="Tag sounds with the Audio Spectrogram Transformer (AST).\n\nExample: ast tag song.wav --top 5",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: flags without '<bool>', choices as <a|b|c>, no rich import
    pretty_exceptions_enable=False,
    context_settings=HELP_OPTIONS,
)
models_app = typer.Typer(
    name="models", invoke_without_command=True, rich_markup_mode=None, context_settings=HELP_OPTIONS
)


def main(argv: list[str] | None = None) -> int:
    """The ``ast`` script and ``python -m ast_cli``; returns the exit status."""
    return process.main(app, argv)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ast {__version__}")
        raise typer.Exit()


VersionFlag = Annotated[
    bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version and exit.")
]


@app.callback()
def _root(version: VersionFlag = False) -> None:
    """Tag sounds with the Audio Spectrogram Transformer (AST).

    Example: ast tag song.wav --top 5
    """


def register(
    group: typer.Typer, name: str, fn: Callable[..., Any], *, needs_torch: bool = True, no_args_is_help: bool = True
) -> None:
    """Add ``fn`` as command ``name`` of ``group``; ``process.guard`` handles its --quiet/--debug, errors
    and torch import (``needs_torch``: it runs the model, so torch is imported before it)."""
    group.command(name, no_args_is_help=no_args_is_help)(process.guard(fn, needs_torch=needs_torch))


register(app, "tag", tag.tag)
register(app, "batch", batch.batch)
register(app, "stats", stats.stats)
register(app, "export", export.export)
register(app, "finetune", finetune.finetune)
register(app, "eval", evaluate.evaluate)
register(app, "embed", embed.embed)
register(app, "clips", clips.clips, needs_torch=False)
register(app, "listen", listen.listen, no_args_is_help=False)
register(app, "labels", labels.labels_command, needs_torch=False, no_args_is_help=False)
app.add_typer(models_app, name="models")
models_app.callback(invoke_without_command=True)(process.guard(models.models, needs_torch=False))
register(models_app, "list", models.models_list, needs_torch=False, no_args_is_help=False)
register(models_app, "download", models.models_download, needs_torch=False)
register(models_app, "rm", models.models_rm, needs_torch=False)
